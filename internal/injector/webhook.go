package injector

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Handler is the admission handler: it injects the sidecar into opted-in
// pods at creation and allows everything else unchanged.
type Handler struct {
	template *Template
	native   bool
	log      *slog.Logger
	decoder  admission.Decoder
}

// NewHandler returns a handler injecting t's sidecars; native selects native
// sidecars (initContainers with restartPolicy Always, Kubernetes 1.29+).
func NewHandler(t *Template, native bool, log *slog.Logger) *Handler {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s) // only fails on a conflicting registration
	return &Handler{template: t, native: native, log: log, decoder: admission.NewDecoder(s)}
}

// Handle implements admission.Handler.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	// The webhook configuration sends only pod CREATE; anything else
	// (a misconfigured rule) passes untouched.
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("not a pod creation")
	}
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	log := h.log.With("namespace", req.Namespace, "pod", name)
	if pod.Labels[LabelInject] != "true" {
		return admission.Allowed("not opted in (label " + LabelInject + ` is not "true")`)
	}
	if hasSidecar(pod) {
		return admission.Allowed("the pod already has a container named " + ContainerName)
	}
	before, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if _, err := h.template.Inject(pod, h.native); err != nil {
		log.Info("rejected a pod", "err", err)
		return admission.Denied(err.Error())
	}
	after, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	log.Debug("injected the sidecar", "election", pod.Annotations[AnnotationElection], "native", h.native)
	// The patch is computed between two encodings of the same typed pod, so
	// it holds the injection and nothing else (no fields normalised by
	// decoding).
	resp := admission.PatchResponseFromRaw(before, after)
	if !resp.Allowed {
		return admission.Errored(http.StatusInternalServerError, errors.New(resp.Result.Message))
	}
	return resp.WithWarnings(warnings(pod)...)
}

// warnings are what the user should know about an injected pod that the
// injector deliberately does not change (kubectl prints them).
func warnings(pod *corev1.Pod) []string {
	var w []string
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		w = append(w, "leader-elector: every container of this pod gets the service-account token; set automountServiceAccountToken: false so that only the sidecar (its own projected token) has one")
	}
	if pod.Annotations[AnnotationReadiness] == "probe" {
		w = append(w, "leader-elector: readiness mode probe: give the application container a readinessProbe on GET /leader of the sidecar's port (the injector does not change the application)")
	}
	return w
}
