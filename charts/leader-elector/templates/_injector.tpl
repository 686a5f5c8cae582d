{{/* Names of the injector's resources. */}}
{{- define "leader-elector.injectorName" -}}
{{- printf "%s-injector" (include "leader-elector.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The cluster-scoped webhook configuration: one per release and namespace. */}}
{{- define "leader-elector.injectorWebhookName" -}}
{{- printf "%s-%s" (include "leader-elector.injectorName" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
ClusterRoles a namespace owner binds to an opted-in pod's service account:
publishing on the pod, and (backend kubernetes) holding a Lease.
*/}}
{{- define "leader-elector.injectedLeaseRoleName" -}}
{{- printf "%s-lease-%s" (include "leader-elector.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "leader-elector.injectedRoleName" -}}
{{- printf "%s-sidecar-%s" (include "leader-elector.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the injector's pods. */}}
{{- define "leader-elector.injectorSelectorLabels" -}}
{{ include "leader-elector.selectorLabels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{/*
Backends the injector offers, comma-separated: every backend the values
configure (etcd with etcd.endpoints, redis with redis.addrs) and kubernetes,
which needs no configuration (a Lease named after the election in the pod's
namespace).
*/}}
{{- define "leader-elector.injectorBackends" -}}
{{- $out := list }}
{{- if .Values.etcd.endpoints }}{{ $out = append $out "etcd" }}{{ end }}
{{- if .Values.redis.addrs }}{{ $out = append $out "redis" }}{{ end }}
{{- $out = append $out "kubernetes" }}
{{- join "," $out }}
{{- end }}

{{/*
The injector's sidecar template (internal/injector.Template): the sidecar
rendered by "leader-elector.container" for each backend the injector offers,
with the per-pod settings left at the chart's values (the injector replaces
them) and restartPolicy Always (the injector drops it on a cluster without
native sidecars).
*/}}
{{- define "leader-elector.injectorSidecar" -}}
{{- $v := .Values }}
{{- $backends := include "leader-elector.injectorBackends" . -}}
defaultBackend: {{ $v.backend }}
gateConditionType: {{ $v.readiness.gateConditionType | quote }}
backends:
{{- range $b := splitList "," $backends }}
{{- $vals := deepCopy $.Values }}
{{- $_ := set $vals "backend" $b }}
{{- /* The injector replaces the election name with the pod's annotation. */}}
{{- $_ := set $vals.election "name" "injected" }}
{{- $_ := set $vals.readiness "mode" "none" }}
{{- $_ := set $vals.sidecar "native" true }}
{{- $ctx := dict "Values" $vals "Release" $.Release "Chart" $.Chart }}
  {{ $b }}:
    kube: {{ $vals.kube.enabled }}
    containers:
      {{- include "leader-elector.container" $ctx | nindent 6 }}
    {{- with include "leader-elector.volumes" $ctx | trim }}
    volumes:
      {{- . | nindent 6 }}
    {{- end }}
{{- end }}
{{- end }}
