package kube_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/testutil/kubetest"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*kube.Options)
		wantErr string // a substring naming the field; empty means valid
	}{
		{"defaults", func(*kube.Options) {}, ""},
		{"disabled is always valid", func(o *kube.Options) { o.PodName, o.RoleLabel = "", "not a key!" }, ""},
		{"bad pod name", func(o *kube.Options) { o.PodName = "Pod_1" }, "PodName"},
		{"missing namespace", func(o *kube.Options) { o.PodNamespace = "" }, "PodNamespace"},
		{"bad namespace", func(o *kube.Options) { o.PodNamespace = "a.b" }, "PodNamespace"},
		{"bad role key", func(o *kube.Options) { o.RoleLabel = "a/b/c" }, "RoleLabel"},
		{"bad leader value", func(o *kube.Options) { o.LeaderValue = "lead er" }, "LeaderValue"},
		{"empty follower value", func(o *kube.Options) { o.FollowerValue = "" }, "FollowerValue"},
		{"long follower value", func(o *kube.Options) { o.FollowerValue = strings.Repeat("f", 64) }, "FollowerValue"},
		{"same values", func(o *kube.Options) { o.FollowerValue = o.LeaderValue }, "LeaderValue"},
		{"bad election key", func(o *kube.Options) { o.ElectionLabel = "-x" }, "ElectionLabel"},
		{"same keys", func(o *kube.Options) { o.ElectionLabel = o.RoleLabel }, "ElectionLabel"},
		{"bad gate", func(o *kube.Options) { o.ReadinessGate = "x/y/z" }, "ReadinessGate"},
		{"good gate", func(o *kube.Options) { o.ReadinessGate = "example.com/leader" }, ""},
		{"short resync", func(o *kube.Options) { o.Resync = time.Millisecond }, "Resync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options("ns", "pod-1")
			tt.change(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestValidateElection(t *testing.T) {
	if err := kube.ValidateElection("orders-1"); err != nil {
		t.Errorf("valid name: %v", err)
	}
	for _, bad := range []string{"", "a/b", strings.Repeat("x", 64)} {
		if err := kube.ValidateElection(bad); err == nil {
			t.Errorf("%q: got nil, want an error", bad)
		}
	}
}

func TestFromEnvironment(t *testing.T) {
	env := map[string]string{"POD_NAME": "p"}
	readFile := func(path string) ([]byte, error) {
		if path != kube.NamespaceFile {
			return nil, errors.New("unexpected path " + path)
		}
		return []byte("from-file\n"), nil
	}
	o := kube.DefaultOptions()
	o.FromEnvironment(func(k string) string { return env[k] }, readFile)
	if o.PodName != "p" || o.PodNamespace != "from-file" {
		t.Errorf("got %q/%q, want p/from-file", o.PodNamespace, o.PodName)
	}

	env["POD_NAMESPACE"] = "from-env"
	o = kube.DefaultOptions()
	o.FromEnvironment(func(k string) string { return env[k] }, readFile)
	if o.PodNamespace != "from-env" {
		t.Errorf("got %q, want from-env", o.PodNamespace)
	}

	// Flags win over the environment.
	o = kube.DefaultOptions()
	o.PodName, o.PodNamespace = "flag", "flag-ns"
	o.FromEnvironment(func(k string) string { return env[k] }, readFile)
	if o.PodName != "flag" || o.PodNamespace != "flag-ns" {
		t.Errorf("got %q/%q, want flag-ns/flag", o.PodNamespace, o.PodName)
	}

	// Without a pod name nothing is read.
	o = kube.DefaultOptions()
	o.FromEnvironment(func(string) string { return "" }, func(string) ([]byte, error) {
		t.Error("namespace file read although publishing is off")
		return nil, errors.New("no")
	})
}

func TestNewRejects(t *testing.T) {
	client := fake.NewClientset()
	if _, err := kube.New(kube.DefaultOptions(), client, nil, nil); err == nil {
		t.Error("New without a pod name: got nil error")
	}
	o := options("ns", "p")
	o.LeaderValue = "bad value"
	if _, err := kube.New(o, client, nil, nil); err == nil {
		t.Error("New with invalid options: got nil error")
	}
	p, err := kube.New(options("ns", "p"), client, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := newSource("p")
	src.st.Election = "not/valid"
	if err := p.Publish(t.Context(), src); err == nil {
		t.Error("Run with an invalid election name: got nil error")
	}
}

// TestPatchesOnlyDifferences checks with a fake clientset that a resync
// which finds the pod as it should be sends no patch.
func TestPatchesOnlyDifferences(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	client := fake.NewClientset(pod)
	var patches []string
	var gets atomic.Int64
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pa := a.(k8stesting.PatchAction)
		patches = append(patches, pa.GetSubresource()+":"+string(pa.GetPatch()))
		return false, nil, nil
	})
	// The reactor runs on the publisher's goroutine; read patches only
	// after Run has returned.
	o := options("ns", "p")
	o.Resync = time.Second
	o.Events = false
	p := newPublisher(t, o, client, nil)
	src := newSource("p")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, src) }()

	kubetest.Eventually(t, 10*time.Second, "follower label", func(ctx context.Context) bool {
		got, err := podLabel(ctx, client, "ns", "p", roleKey)
		return err == nil && got == "follower"
	})
	// Each reconcile reads the pod; wait for two more reconciles (the
	// resyncs) after the label was set.
	seen := gets.Load()
	kubetest.Eventually(t, 10*time.Second, "two resyncs", func(context.Context) bool {
		return gets.Load() >= seen+2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The start and the shutdown both find follower already set.
	if len(patches) != 1 {
		t.Errorf("got %d patches, want 1: %q", len(patches), patches)
	}
	if len(patches) > 0 && !strings.Contains(patches[0], `"`+roleKey+`":"follower"`) {
		t.Errorf("patch %s does not set follower", patches[0])
	}
}
