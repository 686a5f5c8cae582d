// Package injector is the mutating admission webhook behind `sidecar
// injector`: it adds the leader-elector sidecar to pods that opt in with the
// label leader-elector.io/inject: "true" and describe their election with
// annotations.
//
// What it guarantees: a pod without the label is never changed (the webhook
// configuration's object selector keeps such pods from reaching it at all,
// and the handler checks the label again); an opted-in pod gets the sidecar
// container (a native sidecar when the cluster supports it), the sidecar's
// volumes (its own projected service-account token among them), and the
// readiness gate when its annotations ask for one, and nothing else; a pod
// that already has a container named leader-elector is left as it is, so
// admitting an injected pod again changes nothing; a bad annotation rejects
// the pod with a message naming the annotation.
//
// What it does not do: it grants no RBAC (see docs/install.md for the one
// command a namespace owner runs), it does not touch the application's
// containers (readiness mode probe needs the application's own probe), and it
// does not re-inject pods that exist when it is installed.
//
// The sidecar container is not built here: the chart renders it with the
// same template it uses for its own pods ("leader-elector.container") into a
// ConfigMap, one entry per configured backend, and the injector reads that
// file (Template). The injector only sets the per-pod flags: --election,
// --ttl, --readiness-gate and --app-health-url.
package injector
