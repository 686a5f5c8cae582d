package chartest

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

// renderedSets returns every rendered chart case and every file in
// manifests/, by name, as objects.
func renderedSets(t *testing.T) map[string][]*unstructured.Unstructured {
	t.Helper()
	sets := map[string][]*unstructured.Unstructured{}
	for name, file := range ciCases(t) {
		sets["chart/"+name] = splitDocs(t, render(t, file))
	}
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "manifests", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("manifests/ is empty")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sets["manifests/"+filepath.Base(f)] = splitDocs(t, string(raw))
	}
	return sets
}

func TestPodSecurityRestricted(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	pods := 0
	for name, objs := range renderedSets(t) {
		for key, pod := range podSpecs(t, objs) {
			pods++
			res := policy.AggregateCheckResults(eval.EvaluatePod(restricted, &pod.ObjectMeta, &pod.Spec))
			if !res.Allowed {
				t.Errorf("%s %s violates Pod Security restricted: %s", name, key, res.ForbiddenDetail())
			}
		}
	}
	if pods < 10 {
		t.Errorf("checked only %d pod specs", pods)
	}

	// The check itself rejects what it should.
	bad := &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}
	if policy.AggregateCheckResults(eval.EvaluatePod(restricted, &metav1.ObjectMeta{}, bad)).Allowed {
		t.Error("a pod without a security context passed the restricted profile")
	}
}

// warnings collects the API server's warning headers (Pod Security warnings
// for Deployment templates, deprecations).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// TestAgainstAPIServer applies everything the chart renders and every file
// in manifests/ to a real kube-apiserver with server-side dry-run, in a
// namespace that enforces Pod Security "restricted", and runs the sidecar
// binary with the rendered container's arguments.
func TestAgainstAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	warn := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandlerWithContext = warn
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sets := renderedSets(t)
	installPrometheusCRDs(t, env)

	t.Run("dry-run", func(t *testing.T) {
		ctx := t.Context()
		for _, name := range sortedKeys(sets) {
			t.Run(name, func(t *testing.T) {
				ns := restrictedNamespace(t, c)
				createPriorityClasses(t, c, podSpecs(t, sets[name]))
				for _, o := range sets[name] {
					o = o.DeepCopy()
					namespaced, err := c.IsObjectNamespaced(o)
					if err != nil {
						t.Errorf("%s/%s: %v", o.GetKind(), o.GetName(), err)
						continue
					}
					if namespaced {
						o.SetNamespace(ns)
					}
					if err := c.Create(ctx, o, client.DryRunAll); err != nil {
						t.Errorf("%s/%s: %v", o.GetKind(), o.GetName(), err)
					}
				}
				// Deployments only warn about Pod Security; their pods are
				// what the namespace enforces it on. Admission wants a pod's
				// service account to exist, so that one is created for real.
				pods := podSpecs(t, sets[name])
				accounts := map[string]bool{}
				for _, pod := range pods {
					sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
					if accounts[sa] {
						continue
					}
					accounts[sa] = true
					if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}}); err != nil {
						t.Fatal(err)
					}
				}
				for key, pod := range pods {
					pod = pod.DeepCopy()
					pod.Name = strings.ToLower(strings.ReplaceAll(key, "/", "-")) + "-pod"
					pod.Namespace = ns
					if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
						t.Errorf("pod of %s: %v", key, err)
					}
				}
				if w := warn.take(); len(w) > 0 {
					t.Errorf("API server warnings: %q", w)
				}
			})
		}
	})

	t.Run("restricted namespace rejects a privileged pod", func(t *testing.T) {
		ns := restrictedNamespace(t, c)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x", SecurityContext: &corev1.SecurityContext{Privileged: new(true)}}}},
		}
		if err := c.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
		err := c.Create(t.Context(), pod, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "restricted") {
			t.Errorf("want a Pod Security rejection, got %v", err)
		}
	})

	t.Run("sidecar accepts the rendered arguments", func(t *testing.T) {
		bin := buildSidecar(t)
		kubeconfig := kubetest.WriteKubeconfig(t, env.Config)
		ns := env.Namespace(t)
		uid := createWorkloadPod(t, env, ns, renderedPodName, renderedRevision)
		for _, name := range sortedKeys(sets) {
			for key, pod := range podSpecs(t, sets[name]) {
				if !hasSidecar(pod) {
					continue
				}
				t.Run(name+"/"+key, func(t *testing.T) {
					runRenderedSidecar(t, bin, kubeconfig, ns, string(uid), pod)
				})
			}
		}
	})
}

// installPrometheusCRDs installs the Prometheus Operator's ServiceMonitor
// and PodMonitor CRDs (make prometheus-crds, from its Go module), so that a
// dry-run validates the chart's monitors against their real schemas.
func installPrometheusCRDs(t *testing.T, env *kubetest.Env) {
	t.Helper()
	dir := t.TempDir()
	makePackaging(t, "prometheus-crds", "CRDS="+dir)
	crds, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != 2 {
		t.Fatalf("installed %d CRDs, want 2", len(crds))
	}
}

// createPriorityClasses creates the PriorityClasses the pods name: the
// Priority admission plugin rejects a pod whose class does not exist.
func createPriorityClasses(t *testing.T, c client.Client, pods map[string]*corev1.Pod) {
	t.Helper()
	for _, pod := range pods {
		name := pod.Spec.PriorityClassName
		if name == "" {
			continue
		}
		err := c.Create(t.Context(), &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: 1000})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func restrictedNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "chart-",
		Labels: map[string]string{
			psapi.EnforceLevelLabel:   string(psapi.LevelRestricted),
			psapi.EnforceVersionLabel: "latest",
			psapi.WarnLevelLabel:      string(psapi.LevelRestricted),
			psapi.WarnVersionLabel:    "latest",
		},
	}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func hasSidecar(pod *corev1.Pod) bool {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == "leader-elector" {
			return true
		}
	}
	return false
}

// buildSidecar compiles the sidecar once into the test's temporary folder.
func buildSidecar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sidecar")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/sidecar")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The pod the rendered sidecars run as, and its Deployment's revision,
// which --generation=auto must find.
const (
	renderedPodName  = "pod-0"
	renderedRevision = 2
)

// createWorkloadPod creates, as the Deployment controller would (envtest
// runs none), a Deployment, its ReplicaSet with the revision annotation and
// a pod of that ReplicaSet, and returns the pod's UID.
func createWorkloadPod(t *testing.T, env *kubetest.Env, ns, name string, revision int) types.UID {
	t.Helper()
	ctx := t.Context()
	labels := map[string]string{"app": "rendered"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	dep, err := env.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "rendered"},
		Spec:       appsv1.DeploymentSpec{Selector: sel, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := env.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "rendered-1", Labels: labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(revision)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec: tmpl.Spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod.UID
}

// runRenderedSidecar starts the sidecar binary with the container's rendered
// arguments and environment, and fails unless it gets past its flag parser
// and configuration checks (which exit with code 2 before contacting
// anything) and starts. Mounted Secrets become files in a temporary root
// holding a real certificate, key and password; --http moves to a free
// loopback port; the downward API and secretKeyRefs get test values. The
// backends are unreachable: the sidecar keeps retrying, which is fine. The
// Kubernetes client, when the binary has that flag, talks to the test's API
// server through LEADER_ELECTOR_KUBECONFIG.
func runRenderedSidecar(t *testing.T, bin, kubeconfig, ns, podUID string, pod *corev1.Pod) {
	t.Helper()
	side, _ := sidecarContainer(t, pod)
	root := t.TempDir()
	emptyDirs := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		emptyDirs[v.Name] = v.EmptyDir != nil
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := make([]string, 0, len(side.Args))
	for _, a := range side.Args {
		flag, value, ok := strings.Cut(a, "=")
		if flag == "--http" {
			a = "--http=" + addr
		}
		for _, m := range side.VolumeMounts {
			if !ok || !strings.HasPrefix(value, m.MountPath+"/") {
				continue
			}
			path := filepath.Join(root, value)
			if emptyDirs[m.Name] {
				// A scratch volume: the sidecar writes there.
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
			} else {
				writeSecretFile(t, flag, path)
			}
			a = flag + "=" + path
		}
		args = append(args, a)
	}
	if len(args) == 0 {
		t.Fatal("the container has no arguments")
	}

	env := []string{"LEADER_ELECTOR_KUBECONFIG=" + kubeconfig}
	for _, e := range side.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+renderedPodName)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.uid":
			env = append(env, e.Name+"="+podUID)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+ns)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"=s3cret")
		default:
			t.Fatalf("env %s: unsupported source %+v", e.Name, e.ValueFrom)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read stderr until the "starting" log line (config accepted, backend
	// built) or the end of the output (the process exited).
	started := make(chan bool, 1)
	var lines []string
	var readDone sync.WaitGroup
	readDone.Go(func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			lines = append(lines, line)
			if !sent && (strings.Contains(line, `"msg":"starting"`) || strings.Contains(line, "msg=starting")) {
				started <- true
				sent = true
			}
		}
		if !sent {
			started <- false
		}
	})
	ok := false
	select {
	case ok = <-started:
	case <-ctx.Done():
	}
	if ok {
		// The backend is unreachable: the rendered readiness probe must
		// still pass, or an outage of the lock service would take every
		// pod out of its Services (issue 11, item 6).
		if p := side.ReadinessProbe; p != nil && p.HTTPGet != nil {
			checkProbePasses(t, ctx, "http://"+addr+p.HTTPGet.Path)
		}
		// --generation=auto found the Deployment's revision through the
		// pod's ReplicaSet.
		if slices.Contains(args, "--generation=auto") {
			checkGeneration(t, ctx, "http://"+addr+"/status", renderedRevision)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
	}
	waitErr := cmd.Wait()
	readDone.Wait()
	output := strings.Join(lines, "\n")
	if !ok {
		var exit *exec.ExitError
		if errors.As(waitErr, &exit) && exit.ExitCode() == 2 {
			t.Fatalf("the sidecar rejected the rendered configuration (exit 2):\nargs: %q\n%s", args, output)
		}
		t.Fatalf("the sidecar did not start: %v\nargs: %q\n%s", waitErr, args, output)
	}
	if waitErr != nil {
		t.Errorf("after SIGTERM: %v\n%s", waitErr, output)
	}
}

// checkGeneration reads /status and fails the test unless its generation
// is want.
func checkGeneration(t *testing.T, ctx context.Context, url string, want int64) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	var st struct {
		Generation int64 `json:"generation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Errorf("GET %s: %v", url, err)
		return
	}
	if st.Generation != want {
		t.Errorf("/status generation %d, want %d (the rendered pod's Deployment revision)", st.Generation, want)
	}
}

// noKeepAlive is an HTTP client that leaves no idle connection (and no
// goroutine for goleak to find) behind once a request is done.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// checkProbePasses polls url until it answers 200, and fails the test if it
// does not within 20 seconds.
func checkProbePasses(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = resp.Status + " " + strings.TrimSpace(string(body))
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Errorf("readiness probe %s with the backend unreachable: %s", url, last)
	}
}

// writeSecretFile writes what a mounted Secret file would hold, chosen by
// the flag that names it: a certificate, a private key or a password.
func writeSecretFile(t *testing.T, flag, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := testCertificate(t)
	var data []byte
	switch {
	case strings.HasSuffix(flag, "-password-file"):
		data = []byte("s3cret")
	case strings.HasSuffix(flag, "-key"):
		data = keyPEM
	case strings.HasSuffix(flag, "-cert"), strings.HasSuffix(flag, "-cacert"):
		data = certPEM
	default:
		t.Fatalf("%s names a mounted file of unknown content", flag)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

var testCert struct {
	once      sync.Once
	cert, key []byte
	err       error
}

// testCertificate returns one self-signed certificate and its key, usable
// as a CA bundle and as a client certificate.
func testCertificate(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	testCert.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			testCert.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "chartest"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			testCert.err = err
			return
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			testCert.err = err
			return
		}
		testCert.cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		testCert.key = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	})
	if testCert.err != nil {
		t.Fatal(testCert.err)
	}
	return testCert.cert, testCert.key
}
