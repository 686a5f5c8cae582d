{{/*
Names and labels. Every template below takes a context with .Values, .Release
and .Chart: the chart's own root context, or, from a parent chart, a dict such
as (dict "Values" (index .Values "leader-elector") "Release" .Release "Chart" (dict "Name" "leader-elector" "Version" "" "AppVersion" "")).
*/}}

{{/* Chart name, truncated to a DNS label. */}}
{{- define "leader-elector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name alone when it already
contains the chart name. Truncated to 63 characters (DNS label).
*/}}
{{- define "leader-elector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: <name>-<version>. */}}
{{- define "leader-elector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select this release's pods. They never change on upgrade. */}}
{{- define "leader-elector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leader-elector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "leader-elector.labels" -}}
helm.sh/chart: {{ include "leader-elector.chart" . }}
{{ include "leader-elector.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* ServiceAccount the sidecar runs as. */}}
{{- define "leader-elector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leader-elector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Whether the sidecar talks to the Kubernetes API, and so mounts a token:
to publish on its pod (kube.enabled) or to hold the Lease (backend
kubernetes). Empty when not.
*/}}
{{- define "leader-elector.usesAPI" -}}
{{- if or .Values.kube.enabled (eq .Values.backend "kubernetes") }}true{{ end }}
{{- end }}

{{/* Election name: election.name, else the full name. */}}
{{- define "leader-elector.electionName" -}}
{{- default (include "leader-elector.fullname" .) .Values.election.name }}
{{- end }}

{{/*
Sidecar image reference: repository:tag, or repository@digest when a digest
is set. The tag defaults to the chart's appVersion; a parent chart that
passes an empty AppVersion and no image.tag would render "repository:", so
that fails here.
*/}}
{{- define "leader-elector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else if $tag }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- else }}
{{- fail "the sidecar image has no version: set image.tag (or image.digest), or pass this chart's appVersion as Chart.AppVersion when including its templates from a parent chart" }}
{{- end }}
{{- end }}

{{/*
Labels that find every pod running this chart's sidecar, for the metrics
Service and the PodMonitor: the election label the sidecar sets on its own
pod (so pods of a parent chart's workload are found too), or the example's
selector labels when Kubernetes publishing is off.
*/}}
{{- define "leader-elector.monitorSelector" -}}
{{- if .Values.kube.enabled }}
{{ .Values.kube.electionLabel }}: {{ include "leader-elector.electionName" . | quote }}
{{- else }}
{{- include "leader-elector.selectorLabels" . }}
{{- end }}
{{- end }}

{{/*
Whether to render the ValidatingAdmissionPolicy: asked for, publishing on,
and Kubernetes 1.30 or later, which serves the policy's v1 API and puts the
pod's name into service-account tokens bound to a pod (the policy compares
it with the pod being changed).
*/}}
{{- define "leader-elector.admissionPolicy" -}}
{{- if and .Values.admissionPolicy.enabled .Values.kube.enabled (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1") -}}
true
{{- end }}
{{- end }}

{{/* Where secrets are mounted in the sidecar container. */}}
{{- define "leader-elector.etcdTLSDir" -}}/etc/leader-elector/etcd-tls{{- end }}
{{- define "leader-elector.etcdAuthDir" -}}/etc/leader-elector/etcd-auth{{- end }}
{{- define "leader-elector.redisTLSDir" -}}/etc/leader-elector/redis-tls{{- end }}
{{- define "leader-elector.redisAuthDir" -}}/etc/leader-elector/redis-auth{{- end }}
{{- define "leader-elector.stateDir" -}}/var/run/leader-elector{{- end }}

{{/*
The sidecar's --generation value, empty for off: a number as given, or
auto, which reads the pod's own workload revision and so needs the pod's
name (kube.enabled); without kube.enabled, auto is off.
*/}}
{{- define "leader-elector.generationArg" -}}
{{- $g := .Values.operations.generation }}
{{- if kindIs "string" $g }}
{{- if and (eq $g "auto") .Values.kube.enabled }}auto{{ end }}
{{- else if $g }}
{{- int64 $g }}
{{- end }}
{{- end }}

{{/*
Combinations the schema cannot express. Each message names the values to
change. Called by every template that renders the sidecar, so a parent chart
that includes the container gets the same checks.
*/}}
{{- define "leader-elector.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.backend "etcd") (empty $v.etcd.endpoints) }}
{{- fail "backend etcd needs etcd.endpoints (for example --set etcd.endpoints={http://etcd:2379})" }}
{{- end }}
{{- if and (eq $v.backend "redis") (empty $v.redis.addrs) }}
{{- fail "backend redis needs redis.addrs (for example --set redis.addrs={redis:6379})" }}
{{- end }}
{{- if and (eq $v.backend "kubernetes") (not (regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" (include "leader-elector.electionName" .))) }}
{{- fail "backend kubernetes names the Lease after the election: election.name must be lower-case letters, digits, '-' and '.'" }}
{{- end }}
{{- if and $v.etcd.tls.enabled (not $v.etcd.tls.secretName) }}
{{- fail "etcd.tls.enabled needs etcd.tls.secretName: the Secret holding the CA bundle (and client certificate)" }}
{{- end }}
{{- if and $v.etcd.auth.username (not $v.etcd.auth.existingSecret) }}
{{- fail "etcd.auth.username needs etcd.auth.existingSecret: the Secret holding the password" }}
{{- end }}
{{- if and $v.redis.tls.clientCert (not $v.redis.tls.secretName) }}
{{- fail "redis.tls.clientCert needs redis.tls.secretName: the Secret holding the client certificate" }}
{{- end }}
{{- if and $v.redis.tls.secretName (not $v.redis.tls.enabled) }}
{{- fail "redis.tls.secretName is set but redis.tls.enabled is false" }}
{{- end }}
{{- if and $v.redis.auth.username (not $v.redis.auth.existingSecret) }}
{{- fail "redis.auth.username needs redis.auth.existingSecret: the Secret holding the ACL user's password" }}
{{- end }}
{{- /* Credentials never in plaintext (README "TLS and credentials"); the
  sidecar refuses the same combinations at start. Messages never print an
  endpoint that may hold a password. */}}
{{- if eq $v.backend "etcd" }}
{{- range $v.etcd.endpoints }}
{{- if contains "@" (toString .) }}
{{- fail "etcd.endpoints: an endpoint holds a user or password before '@'; use etcd.auth (the sidecar refuses it and never prints it)" }}
{{- end }}
{{- $plain := or (hasPrefix "http://" (toString .)) (and (not (contains "://" (toString .))) (not $v.etcd.tls.enabled)) }}
{{- if and $v.etcd.tls.enabled (hasPrefix "http://" (toString .)) }}
{{- fail (printf "etcd.tls.enabled with the plaintext endpoint %s: the TLS files would be ignored; use https:// (or host:port)" .) }}
{{- end }}
{{- if and $plain $v.etcd.auth.username (not $v.etcd.auth.insecurePlaintext) }}
{{- fail (printf "etcd.auth.username would send the password in plaintext to %s: set etcd.tls.enabled (with https:// or host:port endpoints), or etcd.auth.insecurePlaintext only where the network encrypts (a service mesh)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $v.backend "redis" }}
{{- range $v.redis.addrs }}
{{- if contains "@" (toString .) }}
{{- fail "redis.addrs: an address holds a user or password before '@'; use redis.auth (the sidecar refuses it and never prints it)" }}
{{- end }}
{{- end }}
{{- if and $v.redis.auth.existingSecret (not $v.redis.tls.enabled) (not $v.redis.auth.insecurePlaintext) }}
{{- fail "redis.auth.existingSecret without redis.tls.enabled would send the password in plaintext: set redis.tls.enabled, or redis.auth.insecurePlaintext only where the network encrypts (a service mesh)" }}
{{- end }}
{{- end }}
{{- if and (has $v.readiness.mode (list "label" "gate")) (not $v.kube.enabled) }}
{{- fail (printf "readiness.mode %s needs kube.enabled: the sidecar publishes leadership on its pod" $v.readiness.mode) }}
{{- end }}
{{- if eq $v.kube.leaderValue $v.kube.followerValue }}
{{- fail "kube.leaderValue and kube.followerValue must differ" }}
{{- end }}
{{- if eq $v.kube.roleLabel $v.kube.electionLabel }}
{{- fail "kube.roleLabel and kube.electionLabel must differ" }}
{{- end }}
{{- with .Capabilities }}
{{- if and $v.sidecar.native (not (semverCompare ">=1.29.0-0" .KubeVersion.Version)) }}
{{- fail (printf "sidecar.native needs Kubernetes 1.29 or later (native sidecar containers); this cluster is %s: set sidecar.native false" .KubeVersion.Version) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Deployment strategy of the example. probe and gate leave only the leader
Ready: a rolling update that waits for a new pod to become Ready before it
removes the old leader never proceeds, because the new pod cannot lead while
the old one holds the lease. Recreate, or RollingUpdate with maxUnavailable
100% (every old pod may go at once), lets the rollout through.
*/}}
{{- define "leader-elector.strategy" -}}
{{- $v := .Values }}
{{- $blocking := has $v.readiness.mode (list "probe" "gate") }}
{{- $s := $v.example.strategy }}
{{- if not $s }}
{{- if $blocking }}
{{- $s = dict "type" "Recreate" }}
{{- else }}
{{- $s = dict "type" "RollingUpdate" "rollingUpdate" (dict "maxSurge" 1 "maxUnavailable" 0) }}
{{- end }}
{{- end }}
{{- if and $blocking (eq (default "RollingUpdate" $s.type) "RollingUpdate") }}
{{- $mu := "25%" }}
{{- with $s.rollingUpdate }}{{ if hasKey . "maxUnavailable" }}{{ $mu = .maxUnavailable }}{{ end }}{{ end }}
{{- $ok := or (eq (toString $mu) "100%") (and (kindIs "float64" $mu) (ge (int $mu) (int $v.example.replicas))) (and (kindIs "int" $mu) (ge (int $mu) (int $v.example.replicas))) (and (kindIs "int64" $mu) (ge (int $mu) (int $v.example.replicas))) }}
{{- if not $ok }}
{{- fail (printf "readiness.mode %s keeps only the leader Ready, so a RollingUpdate with maxUnavailable %v never finishes: set example.strategy.type Recreate, or rollingUpdate.maxUnavailable 100%% (or at least example.replicas)" $v.readiness.mode $mu) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- end }}
