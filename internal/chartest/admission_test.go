package chartest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-elector/leader-elector/internal/freeport"
	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// TestLeastPrivilegeOnAPIServer installs what the chart renders (service
// account, Role, binding, ValidatingAdmissionPolicy and its binding) on a
// real kube-apiserver, creates two pods from the example's pod template and
// checks, with a token bound to the first pod as the sidecar's projected
// volume would hold: the pod may change its own role and election labels
// and its readiness-gate condition; another pod only to demote it; nothing
// else. Then the real sidecar, with that token, leads, labels its own pod,
// sets its gate condition and demotes the other pod's stale leader label.
func TestLeastPrivilegeOnAPIServer(t *testing.T) {
	env := startWithServiceAccountAdmission(t)
	ctx := t.Context()
	admin, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	values := writeValues(t, etcdBase+"readiness:\n  mode: gate\n")
	out, err := helm(t, "template", releaseName, chartDir(t), "-f", values, "--namespace", ns)
	if err != nil {
		t.Fatal(err)
	}
	objs := splitDocs(t, out)
	for _, kind := range []string{"ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		found := find(objs, kind)
		if len(found) != 1 {
			t.Fatalf("want one %s, got %d", kind, len(found))
		}
		o := found[0]
		if namespaced, err := admin.IsObjectNamespaced(o); err != nil {
			t.Fatal(err)
		} else if namespaced {
			o.SetNamespace(ns)
		}
		if err := admin.Create(ctx, o); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		t.Cleanup(func() {
			if o.GetNamespace() != "" {
				return
			}
			// Cluster-scoped: remove it, so no other test sees the policy.
			if err := admin.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
		})
	}
	tmpl := podSpecs(t, objs)["Deployment/"+releaseName+"-leader-elector"]
	if tmpl == nil {
		t.Fatal("no example Deployment")
	}
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"pod-a", "pod-b"} {
		pod := tmpl.DeepCopy()
		pod.Name, pod.Namespace = name, ns
		if err := admin.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[name] = pod
	}
	// After admission (which mounts the token into every container unless
	// the pod opts out), only the sidecar has it.
	checkTokenOnlyInSidecar(t, pods["pod-a"])
	// The control: the same pod without the opt-out gets the token in
	// every container, so the check above means something.
	control := tmpl.DeepCopy()
	control.Name, control.Namespace, control.Spec.AutomountServiceAccountToken = "control", ns, nil
	if err := admin.Create(ctx, control); err != nil {
		t.Fatal(err)
	}
	for _, c := range control.Spec.Containers {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
		}) {
			t.Errorf("control pod: admission did not mount the token into %s; the token check proves nothing", c.Name)
		}
	}
	if err := admin.Delete(ctx, control); err != nil {
		t.Fatal(err)
	}

	sa := tmpl.Spec.ServiceAccountName
	boundA := clientFor(t, env, tokenFor(t, env, ns, sa, pods["pod-a"]))
	unbound := clientFor(t, env, tokenFor(t, env, ns, sa, nil))
	const (
		role     = "leader-elector.io/role"
		election = "leader-elector.io/election"
		gate     = "leader-elector.io/leader"
	)
	labels := func(kv ...string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": m}})
		return string(b)
	}
	condition := func(typ, status string) string {
		b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
			"type": typ, "status": status, "lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339),
		}}}})
		return string(b)
	}
	patch := func(c kubernetes.Interface, pod, body, sub string) error {
		pt := types.MergePatchType
		var subs []string
		if sub != "" {
			pt, subs = types.StrategicMergePatchType, []string{sub}
		}
		_, err := c.CoreV1().Pods(ns).Patch(ctx, pod, pt, []byte(body), metav1.PatchOptions{}, subs...)
		return err
	}

	// The API server starts enforcing a new policy once it has compiled it:
	// wait until a patch it forbids is denied.
	attempt := 0
	kubetest.Eventually(t, time.Minute, "the admission policy denies a forbidden patch", func(context.Context) bool {
		attempt++
		err := patch(boundA, "pod-b", labels("probe", strconv.Itoa(attempt)), "")
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
	})

	for _, tc := range []struct {
		name string
		as   kubernetes.Interface
		pod  string
		body string
		sub  string
		deny string // substring of the denial, or "" if allowed
	}{
		{"own role label", boundA, "pod-a", labels(role, "leader"), "", ""},
		{"own election label", boundA, "pod-a", labels(election, "demo-leader-elector"), "", ""},
		{"own other label", boundA, "pod-a", labels("team", "x"), "", "may change only the labels"},
		{"own annotation", boundA, "pod-a", `{"metadata":{"annotations":{"x":"y"}}}`, "", "may change no annotation but"},
		{"own finalizer", boundA, "pod-a", `{"metadata":{"finalizers":["example.com/block"]}}`, "", "may change no annotation but"},
		{"other pod's superseded-by-term", boundA, "pod-b", `{"metadata":{"annotations":{"` + kube.SupersededAnnotation + `":"7"}}}`, "", ""},
		{"other pod's other annotation", boundA, "pod-b", `{"metadata":{"annotations":{"x":"y"}}}`, "", "may change no annotation but"},
		{"superseded-by-term not a token", boundA, "pod-b", `{"metadata":{"annotations":{"` + kube.SupersededAnnotation + `":"x"}}}`, "", "may change no annotation but"},
		{"own spec", boundA, "pod-a", `{"spec":{"activeDeadlineSeconds":60}}`, "", "may not change a pod's spec"},
		{"own gate condition", boundA, "pod-a", condition(gate, "True"), "status", ""},
		{"own Ready condition", boundA, "pod-a", condition("Ready", "True"), "status", "may change only the " + gate + " condition"},
		{"other pod's role label to leader", boundA, "pod-b", labels(role, "leader"), "", "only to demote it"},
		{"other pod's election label", boundA, "pod-b", labels(election, "x"), "", "only to demote it"},
		{"other pod's other label", boundA, "pod-b", labels("team", "x"), "", "may change only the labels"},
		{"demote another pod", boundA, "pod-b", labels(role, "follower"), "", ""},
		{"other pod's gate condition True", boundA, "pod-b", condition(gate, "True"), "status", "only to False"},
		{"other pod's gate condition False", boundA, "pod-b", condition(gate, "False"), "status", ""},
		{"token not bound to a pod", unbound, "pod-a", labels(election, "other"), "", "only to demote it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := patch(tc.as, tc.pod, tc.body, tc.sub)
			switch {
			case tc.deny == "" && err != nil:
				t.Errorf("denied: %v", err)
			case tc.deny != "" && err == nil:
				t.Errorf("allowed; want a denial mentioning %q", tc.deny)
			case tc.deny != "" && (!strings.Contains(err.Error(), tc.deny) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy")):
				t.Errorf("want the policy's denial mentioning %q, got %v", tc.deny, err)
			}
		})
	}
	// The policy binds only the sidecar's account: an administrator is not
	// affected.
	adminset, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := patch(adminset, "pod-b", labels("team", "x", role, "leader", election, "demo-leader-elector"), ""); err != nil {
		t.Errorf("admin patch: %v", err)
	}

	t.Run("the sidecar works under the policy", func(t *testing.T) {
		// pod-b still carries a stale leader label (set above by the
		// administrator); pod-a's sidecar must win, label itself, set its
		// gate condition, and demote pod-b.
		// pod-a starts as a follower with its gate False, so what follows
		// is the sidecar's doing.
		if err := patch(adminset, "pod-a", labels(role, "follower"), ""); err != nil {
			t.Fatal(err)
		}
		if err := patch(adminset, "pod-a", condition(gate, "False"), "status"); err != nil {
			t.Fatal(err)
		}
		// pod-b is a stale leader: its label says leader and its gate True.
		if err := patch(adminset, "pod-b", condition(gate, "True"), "status"); err != nil {
			t.Fatal(err)
		}
		etcdURL := startEtcd(t)
		side, _ := sidecarContainer(t, tmpl)
		incarnation := filepath.Join(t.TempDir(), "incarnation") // the emptyDir
		var args []string
		for _, a := range side.Args {
			flag, _, _ := strings.Cut(a, "=")
			switch flag {
			case "--http", "--log-format", "--log-level":
				continue
			case "--etcd-endpoints":
				a = "--etcd-endpoints=" + etcdURL
			case "--ttl":
				a = "--ttl=2s"
			case "--incarnation-file":
				a = "--incarnation-file=" + incarnation
			}
			args = append(args, a)
		}
		kubeconfig := kubetest.WriteKubeconfig(t, boundConfig(env, tokenFor(t, env, ns, sa, pods["pod-a"])))
		bin := buildSidecar(t)
		opts := sidecartest.Options{
			ID:   "pod-a",
			Args: args,
			Env:  []string{"POD_NAME=pod-a", "POD_NAMESPACE=" + ns, "POD_UID=" + string(pods["pod-a"].UID), "LEADER_ELECTOR_KUBECONFIG=" + kubeconfig},
		}
		p := sidecartest.Start(t, bin, opts)
		var state string
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("last seen: %s", state)
			}
		})
		kubetest.Eventually(t, time.Minute, "pod-a labelled leader with its gate True, pod-b demoted (label and gate)", func(ctx context.Context) bool {
			a, errA := adminset.CoreV1().Pods(ns).Get(ctx, "pod-a", metav1.GetOptions{})
			b, errB := adminset.CoreV1().Pods(ns).Get(ctx, "pod-b", metav1.GetOptions{})
			if errA != nil || errB != nil {
				return false
			}
			state = fmt.Sprintf("pod-a labels %v conditions %+v; pod-b labels %v", a.Labels, a.Status.Conditions, b.Labels)
			gateOf := func(p *corev1.Pod) corev1.ConditionStatus {
				for _, c := range p.Status.Conditions {
					if string(c.Type) == gate {
						return c.Status
					}
				}
				return ""
			}
			return a.Labels[role] == "leader" && a.Labels[election] == "demo-leader-elector" && gateOf(a) == corev1.ConditionTrue &&
				b.Labels[role] == "follower" && gateOf(b) == corev1.ConditionFalse
		})
		if strings.Contains(p.Log(), "ValidatingAdmissionPolicy") {
			t.Errorf("the policy denied one of the sidecar's requests:\n%s", p.Log())
		}
		// pod-a is a bare pod: --generation=auto read it (the Role's get on
		// pods, allowed by the policy) and found no workload.
		if !strings.Contains(p.Log(), "generations are off") {
			t.Errorf("--generation=auto did not report a bare pod:\n%s", p.Log())
		}

		// The sidecar container crashes and the kubelet restarts it with the
		// same emptyDir: the new process releases its predecessor's lease
		// from the incarnation file and leads again.
		p.Signal(syscall.SIGKILL)
		p.Wait(time.Minute)
		again := sidecartest.Start(t, bin, opts)
		again.WaitStatus("leading again", time.Minute, func(s sidecartest.Status) bool { return s.IsLeader })
		if !strings.Contains(again.Log(), "released the previous process's candidacy") {
			t.Errorf("the restarted sidecar did not release its predecessor's candidacy:\n%s", again.Log())
		}
	})
}

// startWithServiceAccountAdmission starts a control plane like
// kubetest.Start, but with the ServiceAccount admission plugin that envtest
// turns off: it is the plugin that mounts the service-account token into
// every container of a pod that does not opt out, which is what the test
// must show the chart's pods avoid.
func startWithServiceAccountAdmission(t *testing.T) *kubetest.Env {
	t.Helper()
	env := &envtest.Environment{
		BinaryAssetsDirectory:    filepath.Join(repoRoot(t), "bin"),
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatalf("starting control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping control plane: %v", err)
		}
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubetest.Env{Config: cfg, Client: cs}
}

// tokenFor requests a token for the service account, bound to pod when pod
// is not nil (as the kubelet does for a projected token volume).
func tokenFor(t *testing.T, env *kubetest.Env, ns, sa string, pod *corev1.Pod) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return tr.Status.Token
}

func boundConfig(env *kubetest.Env, token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = token
	return cfg
}

func clientFor(t *testing.T, env *kubetest.Env, token string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(boundConfig(env, token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startEtcd runs bin/etcd (built by make test-deps) as a one-member cluster
// on free loopback ports until the test ends, and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	ports, err := freeport.Ports(2)
	if err != nil {
		t.Fatal(err)
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "bin", "etcd"),
		"--name", "chartest", "--data-dir", t.TempDir(),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "chartest="+peerURL, "--unsafe-no-fsync", "--log-level", "error")
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
		if err != nil {
			return false, err
		}
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("etcd at %s did not become healthy: %v", clientURL, err)
	}
	return clientURL
}
