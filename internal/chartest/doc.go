// Package chartest holds the packaging tests: the Helm chart in
// charts/leader-elector (lint, golden renders, schema and guard errors, server
// side dry-run against a real kube-apiserver, Pod Security "restricted", the
// sidecar's flag parser), the manifests generated from it, and the static
// binary the image ships. It has no non-test code.
package chartest
