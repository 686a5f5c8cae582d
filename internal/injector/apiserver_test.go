package injector_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	psapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/yaml"

	"github.com/leader-elector/leader-elector/internal/cli"
	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/injector"
	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
)

// running is an injector serving on 127.0.0.1 for a test.
type running struct {
	addr   string
	certs  *injector.Certs
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop ends the injector and waits for it; later calls do nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("injector: %v", err)
		}
	})
}

// startInjector runs the injector in-process with self-managed TLS (its
// certificate names 127.0.0.1), installs the chart's webhook configuration
// with the service replaced by a URL pointing at it, and waits until the API
// server trusts it.
func startInjector(t *testing.T, env *kubetest.Env, secretNS string) *running {
	t.Helper()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	wh := chartWebhook(t)
	url := "https://127.0.0.1:" + strconv.Itoa(port) + *wh.Webhooks[0].ClientConfig.Service.Path
	for i := range wh.Webhooks {
		wh.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), wh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), wh.Name, metav1.DeleteOptions{})
	})
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{addr: "127.0.0.1:" + strconv.Itoa(port), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan *injector.Certs, 1)
	logs := &testLog{t: t}
	t.Cleanup(logs.close) // registered first: runs after the injector stopped
	go func() {
		r.done <- injector.Run(ctx, injector.Options{
			Host: "127.0.0.1", Port: port, Template: chartTemplate(t), Native: "auto", Client: env.Client,
			Certs: injector.CertOptions{
				Namespace: secretNS, Secret: "injector-tls", WebhookConfig: wh.Name, Hosts: []string{"127.0.0.1"},
			},
			Ready: func(c *injector.Certs) { ready <- c },
		}, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	t.Cleanup(func() { r.stop(t) })
	select {
	case r.certs = <-ready:
	case err := <-r.done:
		r.done <- err
		t.Fatalf("injector stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("injector not serving after a minute")
	}
	return r
}

// testLog sends log lines to t.Log while the test runs.
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (l *testLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// optedInNamespace creates a namespace the chart's namespace selector
// matches (ci/injector-values.yaml asks for a label) that enforces Pod
// Security "restricted".
func optedInNamespace(t *testing.T, env *kubetest.Env) string {
	t.Helper()
	ns, err := env.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "apps-",
		Labels: map[string]string{
			"leader-elector.io/injection": "enabled",
			psapi.EnforceLevelLabel:       string(psapi.LevelRestricted),
			psapi.EnforceVersionLabel:     "latest",
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// TestWebhookOnAPIServer installs the chart's webhook configuration on a
// real kube-apiserver, which calls the injector over TLS.
func TestWebhookOnAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	inj := startInjector(t, env, env.Namespace(t))
	ns := optedInNamespace(t, env)
	pods := env.Client.CoreV1().Pods(ns)
	create := func(pod *corev1.Pod, opts metav1.CreateOptions) (*corev1.Pod, error) {
		return pods.Create(ctx, pod, opts)
	}
	gate := map[string]string{
		injector.AnnotationElection:  "orders",
		injector.AnnotationTTL:       "5s",
		injector.AnnotationReadiness: "gate",
	}
	// The application's health endpoint: the injected sidecar stands for
	// election only while it answers 2xx (--app-health-url).
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(app.Close)
	healthy := map[string]string{injector.AnnotationAppHealthURL: app.URL + "/healthz"}
	for k, v := range gate {
		healthy[k] = v
	}

	var injected *corev1.Pod
	t.Run("opted-in pod gets the sidecar in a restricted namespace", func(t *testing.T) {
		submitted := appPod("orders-0", optedIn(nil), healthy)
		got, err := create(submitted.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		injected = got
		side, native := sidecarOf(got)
		if side == nil || !native {
			t.Fatalf("want a native sidecar (API server 1.37), got init %+v containers %+v", got.Spec.InitContainers, got.Spec.Containers)
		}
		for flag, want := range map[string]string{"--election": "orders", "--ttl": "5s", "--backend": "etcd", "--readiness-gate": "leader-elector.io/leader", "--app-health-url": app.URL + "/healthz"} {
			if argValue(side, flag) != want {
				t.Errorf("%s: got %q want %q", flag, argValue(side, flag), want)
			}
		}
		if len(got.Spec.ReadinessGates) != 1 {
			t.Errorf("readiness gates %+v", got.Spec.ReadinessGates)
		}
		// What the API server stored is what Inject computes locally from
		// the submitted pod (so nothing else was added) after defaulting.
		want := submitted.DeepCopy()
		if _, err := chartTemplate(t).Inject(want, true); err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Containers) != 1 || got.Spec.Containers[0].Name != "app" || len(got.Spec.Containers[0].VolumeMounts) != 0 {
			t.Errorf("application containers changed: %+v", got.Spec.Containers)
		}
		if !reflect.DeepEqual(names(got.Spec.Volumes), names(want.Spec.Volumes)) || !reflect.DeepEqual(got.Spec.ReadinessGates, want.Spec.ReadinessGates) ||
			!reflect.DeepEqual(side.Args, want.Spec.InitContainers[0].Args) || !reflect.DeepEqual(got.Labels, submitted.Labels) || !reflect.DeepEqual(got.Annotations, submitted.Annotations) {
			t.Errorf("stored pod differs from the local injection:\n got %+v\nwant %+v", got.Spec, want.Spec)
		}
	})

	t.Run("pod not opted in is untouched", func(t *testing.T) {
		for i, labels := range []map[string]string{{"app": "web"}, {injector.LabelInject: "false"}} {
			got, err := create(appPod("web-"+strconv.Itoa(i), labels, gate), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers) != 1 || len(got.Spec.Volumes) != 0 || len(got.Spec.ReadinessGates) != 0 {
				t.Errorf("labels %v: pod changed: %+v", labels, got.Spec)
			}
		}
	})

	t.Run("bad annotation rejects the pod naming it", func(t *testing.T) {
		for key, value := range map[string]string{injector.AnnotationTTL: "ten seconds", injector.AnnotationBackend: "zookeeper", injector.AnnotationReadiness: "sometimes"} {
			ann := map[string]string{injector.AnnotationElection: "orders", key: value}
			_, err := create(appPod("bad", optedIn(nil), ann), metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), value) {
				t.Errorf("%s=%q: got %v; want a denial naming the annotation", key, value, err)
			}
		}
		_, err := create(appPod("bad", optedIn(nil), nil), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), injector.AnnotationElection) {
			t.Errorf("no election annotation: got %v", err)
		}
	})

	t.Run("re-admission is idempotent", func(t *testing.T) {
		if injected == nil {
			t.Skip("needs the first subtest's pod")
		}
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-again", Labels: injected.Labels, Annotations: injected.Annotations}, Spec: *injected.Spec.DeepCopy()}
		got, err := create(again, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Spec, injected.Spec) {
			t.Errorf("re-admitted pod changed:\n got %+v\nwant %+v", got.Spec, injected.Spec)
		}
	})

	t.Run("server-side dry-run", func(t *testing.T) {
		got, err := create(appPod("dry", optedIn(nil), gate), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if side, _ := sidecarOf(got); side == nil {
			t.Error("dry-run result has no sidecar")
		}
		if _, err := pods.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run stored the pod: %v", err)
		}
	})

	t.Run("sidecar with the injected arguments and environment joins the election", func(t *testing.T) {
		if injected == nil {
			t.Skip("needs the first subtest's pod")
		}
		runInjectedSidecar(t, env, injected, sidecarAccount(t, env, ns))
	})

	t.Run("backend kubernetes: the injected sidecar holds a Lease", func(t *testing.T) {
		ann := map[string]string{injector.AnnotationElection: "billing", injector.AnnotationBackend: "kubernetes", injector.AnnotationTTL: "3s"}
		got, err := create(appPod("billing-0", optedIn(nil), ann), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		side, _ := sidecarOf(got)
		if side == nil || argValue(side, "--backend") != "kubernetes" || argValue(side, "--etcd-endpoints") != "" {
			t.Fatalf("sidecar %+v", side)
		}
		// While it leads, the Lease named after the election names this pod.
		runInjectedSidecar(t, env, got, sidecarAccount(t, env, ns), func(ctx context.Context) bool {
			lease, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, "billing", metav1.GetOptions{})
			return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == "billing-0"
		})
	})

	t.Run("certificate rotation keeps admission working", func(t *testing.T) {
		wh := chartWebhook(t).Name
		bundle := func() []byte {
			cfg, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, wh, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return cfg.Webhooks[0].ClientConfig.CABundle
		}
		before, served := bundle(), servedCert(t, inj.addr)
		if err := inj.certs.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		after, rotated := bundle(), servedCert(t, inj.addr)
		if bytes.Equal(before, after) || bytes.Equal(served.Raw, rotated.Raw) {
			t.Fatal("rotation changed neither the caBundle nor the served certificate")
		}
		// The old CA stays trusted until it expires, so another replica
		// still serving the old certificate keeps working.
		for _, c := range []*x509.Certificate{served, rotated} {
			if err := verifies(after, c); err != nil {
				t.Errorf("caBundle after rotation does not verify %s: %v", c.Subject, err)
			}
		}
		// The API server reads the new caBundle through its own watch of
		// the webhook configuration, a moment after the injector already
		// serves the new certificate: until then admission fails with
		// "unknown authority" (a clean-clone CI run hit that window; the
		// injector does not stage the switch yet, see docs/install.md).
		var got *corev1.Pod
		kubetest.Eventually(t, time.Minute, "admission with the rotated certificate", func(context.Context) bool {
			var err error
			got, err = create(appPod("after-rotation", optedIn(nil), gate), metav1.CreateOptions{})
			return err == nil
		})
		if side, _ := sidecarOf(got); side == nil {
			t.Error("no sidecar after rotation")
		}

		// Age: a replica whose clock says two thirds of the lifetime have
		// passed renews the shared certificate on its own.
		aged, err := injector.NewCerts(env.Client, injector.CertOptions{
			Namespace: secretNamespace(t, env, inj), Secret: "injector-tls", WebhookConfig: wh, Hosts: []string{"127.0.0.1"},
			Clock: func() time.Time { return time.Now().Add(61 * 24 * time.Hour) },
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := aged.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(bundle(), after) {
			t.Error("an aged certificate was not renewed")
		}
		// The running injector picks the renewed certificate up at its
		// next check; admission keeps working in between (old CA still in
		// the bundle).
		if err := inj.certs.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := create(appPod("after-renewal", optedIn(nil), gate), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("injector down: other pods are admitted, opted-in pods wait", func(t *testing.T) {
		inj.stop(t)
		got, err := create(appPod("unrelated", map[string]string{"app": "web"}, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("unrelated pod rejected while the injector is down: %v", err)
		}
		if len(got.Spec.InitContainers) != 0 {
			t.Error("unrelated pod changed")
		}
		// failurePolicy Fail: an opted-in pod is not admitted without its
		// sidecar; its controller retries.
		if _, err := create(appPod("opted-in", optedIn(nil), gate), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "inject.leader-elector.io") {
			t.Errorf("opted-in pod while the injector is down: got %v; want failing the webhook", err)
		}
		// The injector's own namespace is never sent to the webhook (the
		// chart's release namespace, "default" in the golden render), so
		// its pods start even when labelled.
		own := appPod("injector-pod", optedIn(nil), nil)
		if _, err := env.Client.CoreV1().Pods("default").Create(ctx, own, metav1.CreateOptions{}); err != nil {
			t.Errorf("pod in the injector's namespace: %v", err)
		}
	})
}

// secretNamespace finds the namespace of the injector's Secret.
func secretNamespace(t *testing.T, env *kubetest.Env, _ *running) string {
	t.Helper()
	list, err := env.Client.CoreV1().Secrets("").List(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=injector-tls"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("finding the injector's Secret: %v (%d found)", err, len(list.Items))
	}
	return list.Items[0].Namespace
}

func names(vs []corev1.Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// servedCert returns the certificate the server at addr presents.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate only
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func verifies(bundle []byte, c *x509.Certificate) error {
	roots := x509.NewCertPool()
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return err
		}
		roots.AddCert(ca)
	}
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"})
	return err
}

// sidecarAccount creates a service account in ns with exactly the rights
// docs/install.md tells a namespace owner to grant (RoleBindings to the
// chart's ClusterRoles for injected sidecars) and returns its credentials.
func sidecarAccount(t *testing.T, env *kubetest.Env, ns string) *rest.Config {
	t.Helper()
	name := "sidecar"
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		name = "sidecar-2"
	}
	cfg := env.ServiceAccount(t, ns, name, "")
	for _, m := range chartGolden(t) {
		if m["kind"] != "ClusterRole" {
			continue
		}
		var role rbacv1.ClusterRole
		raw, _ := yaml.Marshal(m)
		if err := yaml.Unmarshal(raw, &role); err != nil {
			t.Fatal(err)
		}
		if role.Labels["app.kubernetes.io/component"] != "injector" || slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.Resources, "mutatingwebhookconfigurations")
		}) {
			continue // the injector's own
		}
		if _, err := env.Client.RbacV1().ClusterRoles().Create(t.Context(), &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		// kubectl -n NS create rolebinding ... --clusterrole=ROLE --serviceaccount=NS:SA
		_, err := env.Client.RbacV1().RoleBindings(ns).Create(t.Context(), &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// runInjectedSidecar runs the sidecar (cli.Run, in-process) with the
// injected container's arguments and environment, the downward API resolved
// for pod, a real etcd in place of the chart's endpoint, and the test's API
// server, with the account's credentials, through LEADER_ELECTOR_KUBECONFIG
// in place of the projected token. It must win the election (the only
// candidate) and publish it on its pod: the leader label and, when the pod
// has a readiness gate, its condition.
func runInjectedSidecar(t *testing.T, env *kubetest.Env, pod *corev1.Pod, account *rest.Config, also ...func(context.Context) bool) {
	side, _ := sidecarOf(pod)
	var etcd interface{ ClientURLs() []string }
	if argValue(side, "--etcd-endpoints") != "" {
		etcd = etcdtest.Single(t)
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	var args []string
	for _, a := range side.Args {
		switch {
		case strings.HasPrefix(a, "--etcd-endpoints="):
			a = "--etcd-endpoints=" + strings.Join(etcd.ClientURLs(), ",")
		case strings.HasPrefix(a, "--http="):
			a = "--http=" + httpAddr
		case strings.HasPrefix(a, "--incarnation-file="):
			// The pod's emptyDir, which this in-process sidecar lacks.
			a = "--incarnation-file=" + filepath.Join(t.TempDir(), "incarnation")
		}
		args = append(args, a)
	}
	envVars := map[string]string{"LEADER_ELECTOR_KUBECONFIG": kubetest.WriteKubeconfig(t, account)}
	for _, e := range side.Env {
		switch {
		case e.ValueFrom == nil:
			envVars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			envVars[e.Name] = pod.Name
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			envVars[e.Name] = pod.Namespace
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.uid":
			envVars[e.Name] = string(pod.UID)
		default:
			t.Fatalf("cannot resolve env %s", e.Name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() { done <- cli.Run(ctx, args, func(k string) string { return envVars[k] }, io.Discard, &stderr) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("sidecar exited %d:\n%s", code, stderr.String())
		}
	}()
	kubetest.Eventually(t, time.Minute, "the injected sidecar leads and publishes it on its pod", func(ctx context.Context) bool {
		select {
		case code := <-done:
			done <- code
			t.Errorf("sidecar exited %d early:\n%s", code, stderr.String())
			return true
		default:
		}
		resp, err := httpGet(ctx, "http://"+httpAddr+"/leader")
		if err != nil || resp != http.StatusOK {
			return false
		}
		p, err := env.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.Labels["leader-elector.io/role"] != "leader" || p.Labels["leader-elector.io/election"] != pod.Annotations[injector.AnnotationElection] {
			return false
		}
		for _, cond := range also {
			if !cond(ctx) {
				return false
			}
		}
		if len(p.Spec.ReadinessGates) == 0 {
			return true
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "leader-elector.io/leader" && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

func httpGet(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
