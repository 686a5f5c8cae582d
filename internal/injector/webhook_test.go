package injector_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/leader-elector/leader-elector/internal/injector"
)

func podRequest(t *testing.T, op admissionv1.Operation, pod any) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Operation: op, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "apps", Object: runtime.RawExtension{Raw: raw},
	}}
}

// The handler's answers (the API-server test covers them end to end): the
// warnings kubectl prints, and operations other than CREATE pass untouched.
func TestHandlerWarningsAndOperations(t *testing.T) {
	h := injector.NewHandler(chartTemplate(t), true, slog.New(slog.DiscardHandler))
	pod := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: "orders", injector.AnnotationReadiness: "probe"})
	pod.Spec.AutomountServiceAccountToken = nil
	resp := h.Handle(t.Context(), podRequest(t, admissionv1.Create, pod))
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("want an allowed patch, got %+v", resp)
	}
	joined := strings.Join(resp.Warnings, "\n")
	if !strings.Contains(joined, "automountServiceAccountToken") || !strings.Contains(joined, "readinessProbe") {
		t.Errorf("warnings %q", resp.Warnings)
	}

	quiet := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: "orders"})
	if resp := h.Handle(t.Context(), podRequest(t, admissionv1.Create, quiet)); !resp.Allowed || len(resp.Warnings) != 0 {
		t.Errorf("want no warnings, got %q", resp.Warnings)
	}
	if resp := h.Handle(t.Context(), podRequest(t, admissionv1.Update, quiet)); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("UPDATE: %+v", resp)
	}
	bad := appPod("p", optedIn(nil), map[string]string{injector.AnnotationElection: "orders", injector.AnnotationTTL: "x"})
	if resp := h.Handle(t.Context(), podRequest(t, admissionv1.Create, bad)); resp.Allowed || !strings.Contains(resp.Result.Message, injector.AnnotationTTL) {
		t.Errorf("bad ttl: %+v", resp.Result)
	}
	if resp := h.Handle(t.Context(), podRequest(t, admissionv1.Create, "not a pod")); resp.Allowed {
		t.Error("an undecodable object was allowed")
	}
}
