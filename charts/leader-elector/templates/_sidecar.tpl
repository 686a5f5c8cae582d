{{/*
Reusable pieces for putting the sidecar into any pod template. A parent chart
that depends on this chart includes them into its own pod spec:

  {{- $le := dict "Values" (index .Values "leader-elector") "Release" .Release "Chart" (dict "Name" "leader-elector" "Version" "" "AppVersion" "v0.1.0") "Capabilities" .Capabilities }}
  spec:
    serviceAccountName: {{ include "leader-elector.serviceAccountName" $le }}
    # The sidecar mounts its own projected token ("leader-elector.volumes");
    # no other container gets one.
    automountServiceAccountToken: false
    {{- if (index .Values "leader-elector").sidecar.native }}
    initContainers:
      {{- include "leader-elector.container" $le | nindent 6 }}
    {{- end }}
    containers:
      - name: app
        ...
      {{- if not (index .Values "leader-elector").sidecar.native }}
      {{- include "leader-elector.container" $le | nindent 6 }}
      {{- end }}
    {{- with include "leader-elector.volumes" $le | trim }}
    volumes:
      {{- . | nindent 6 }}
    {{- end }}
    {{- with include "leader-elector.readinessGates" $le | trim }}
    readinessGates:
      {{- . | nindent 6 }}
    {{- end }}

Give the parent's Chart dict this chart's appVersion (or set image.tag):
the image tag defaults to it, and an empty one fails the render. Passing
Capabilities lets the template refuse a native sidecar on a cluster older
than 1.29 (Helm does not check a subchart's kubeVersion).
*/}}

{{/*
leader-elector.container: the sidecar container as one list item. With
sidecar.native it carries restartPolicy: Always and belongs in
initContainers; otherwise it belongs in containers.
*/}}
{{- define "leader-elector.container" -}}
{{- $_ := include "leader-elector.validate" . }}
{{- $v := .Values -}}
- name: leader-elector
  image: {{ include "leader-elector.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $v.sidecar.native }}
  # A native sidecar: started before the application and stopped after it,
  # so leadership is released only once the application has exited.
  restartPolicy: Always
  {{- end }}
  args:
    - {{ printf "--election=%v" (include "leader-elector.electionName" .) | quote }}
    - {{ printf "--backend=%v" $v.backend | quote }}
    - {{ printf "--ttl=%v" $v.election.ttl | quote }}
    - {{ printf "--http=:%v" $v.sidecar.port | quote }}
    - {{ printf "--log-format=%v" $v.sidecar.logFormat | quote }}
    - {{ printf "--log-level=%v" $v.sidecar.logLevel | quote }}
    {{- if eq $v.backend "etcd" }}
    - {{ printf "--etcd-endpoints=%v" (join "," $v.etcd.endpoints) | quote }}
    {{- with $v.etcd.prefix }}
    - {{ printf "--etcd-prefix=%v" . | quote }}
    {{- end }}
    {{- with $v.etcd.dialTimeout }}
    - {{ printf "--etcd-dial-timeout=%v" . | quote }}
    {{- end }}
    {{- if $v.etcd.tls.enabled }}
    - {{ printf "--etcd-cacert=%v/%v" (include "leader-elector.etcdTLSDir" .) $v.etcd.tls.caKey | quote }}
    {{- if $v.etcd.tls.clientCert }}
    - {{ printf "--etcd-cert=%v/%v" (include "leader-elector.etcdTLSDir" .) $v.etcd.tls.certKey | quote }}
    - {{ printf "--etcd-key=%v/%v" (include "leader-elector.etcdTLSDir" .) $v.etcd.tls.keyKey | quote }}
    {{- end }}
    {{- end }}
    {{- with $v.etcd.auth.username }}
    - {{ printf "--etcd-username=%v" . | quote }}
    {{- end }}
    {{- if and $v.etcd.auth.existingSecret (eq $v.etcd.auth.passwordFrom "file") }}
    - {{ printf "--etcd-password-file=%v/%v" (include "leader-elector.etcdAuthDir" .) $v.etcd.auth.passwordKey | quote }}
    {{- end }}
    {{- if and $v.etcd.auth.username $v.etcd.auth.insecurePlaintext }}
    - "--etcd-insecure-plaintext-auth"
    {{- end }}
    {{- else if eq $v.backend "redis" }}
    - {{ printf "--redis-addr=%v" (join "," $v.redis.addrs) | quote }}
    {{- with $v.redis.db }}
    - {{ printf "--redis-db=%v" . | quote }}
    {{- end }}
    {{- with $v.redis.keyPrefix }}
    - {{ printf "--redis-key-prefix=%v" . | quote }}
    {{- end }}
    {{- if $v.redis.tls.enabled }}
    - "--redis-tls"
    {{- if and $v.redis.tls.secretName $v.redis.tls.caKey }}
    - {{ printf "--redis-cacert=%v/%v" (include "leader-elector.redisTLSDir" .) $v.redis.tls.caKey | quote }}
    {{- end }}
    {{- if $v.redis.tls.clientCert }}
    - {{ printf "--redis-cert=%v/%v" (include "leader-elector.redisTLSDir" .) $v.redis.tls.certKey | quote }}
    - {{ printf "--redis-key=%v/%v" (include "leader-elector.redisTLSDir" .) $v.redis.tls.keyKey | quote }}
    {{- end }}
    {{- end }}
    {{- with $v.redis.auth.username }}
    - {{ printf "--redis-username=%v" . | quote }}
    {{- end }}
    {{- if and $v.redis.auth.existingSecret (eq $v.redis.auth.passwordFrom "file") }}
    - {{ printf "--redis-password-file=%v/%v" (include "leader-elector.redisAuthDir" .) $v.redis.auth.passwordKey | quote }}
    {{- end }}
    {{- if and $v.redis.auth.existingSecret $v.redis.auth.insecurePlaintext }}
    - "--redis-insecure-plaintext-auth"
    {{- end }}
    {{- end }}
    {{- if $v.operations.incarnationFile }}
    - {{ printf "--incarnation-file=%v/incarnation" (include "leader-elector.stateDir" .) | quote }}
    {{- end }}
    {{- with include "leader-elector.generationArg" . }}
    - {{ printf "--generation=%v" . | quote }}
    {{- end }}
    {{- if $v.kube.enabled }}
    - {{ printf "--role-label=%v" $v.kube.roleLabel | quote }}
    - {{ printf "--leader-value=%v" $v.kube.leaderValue | quote }}
    - {{ printf "--follower-value=%v" $v.kube.followerValue | quote }}
    - {{ printf "--election-label=%v" $v.kube.electionLabel | quote }}
    - {{ printf "--kube-events=%v" $v.kube.events | quote }}
    - {{ printf "--kube-resync=%v" $v.kube.resync | quote }}
    {{- if eq $v.readiness.mode "gate" }}
    - {{ printf "--readiness-gate=%v" $v.readiness.gateConditionType | quote }}
    {{- end }}
    {{- end }}
    {{- range $v.sidecar.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    {{- if $v.kube.enabled }}
    # The pod's name is the candidate's identity and, with the namespace,
    # tells the sidecar which pod to publish leadership on.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- else }}
    # Identity only: without POD_NAME the sidecar leaves the pod alone.
    - name: LEADER_ELECTOR_ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- if eq $v.backend "kubernetes" }}
    # The Lease lives in the pod's namespace.
    - name: LEADER_ELECTOR_LEASE_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- end }}
    {{- end }}
    {{- if $v.operations.incarnationFile }}
    # The pod's UID: a record on the incarnation volume written by another
    # pod (a volume shared by mistake) is never acted on.
    - name: POD_UID
      valueFrom:
        fieldRef:
          fieldPath: metadata.uid
    {{- end }}
    {{- if and (eq $v.backend "etcd") $v.etcd.auth.existingSecret (eq $v.etcd.auth.passwordFrom "env") }}
    - name: LEADER_ELECTOR_ETCD_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $v.etcd.auth.existingSecret }}
          key: {{ $v.etcd.auth.passwordKey }}
    {{- end }}
    {{- if and (eq $v.backend "redis") $v.redis.auth.existingSecret (eq $v.redis.auth.passwordFrom "env") }}
    - name: LEADER_ELECTOR_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $v.redis.auth.existingSecret }}
          key: {{ $v.redis.auth.passwordKey }}
    {{- end }}
    {{- with $v.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: elector-http
      containerPort: {{ $v.sidecar.port }}
      protocol: TCP
  {{- with $v.sidecar.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.sidecar.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.sidecar.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $mounts := include "leader-elector.volumeMounts" . | trim }}
  {{- if $mounts }}
  volumeMounts:
    {{- $mounts | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
leader-elector.volumeMounts: the sidecar's mounts (possibly none): its
service-account token, Secrets, and sidecar.extraVolumeMounts.
*/}}
{{- define "leader-elector.volumeMounts" -}}
{{- $v := .Values }}
{{- if include "leader-elector.usesAPI" . }}
# The Kubernetes API token, at the path client-go's in-cluster
# configuration reads. Only this container mounts it.
- name: leader-elector-kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end }}
{{- if and (eq $v.backend "etcd") $v.etcd.tls.enabled }}
- name: leader-elector-etcd-tls
  mountPath: {{ include "leader-elector.etcdTLSDir" . }}
  readOnly: true
{{- end }}
{{- if and (eq $v.backend "etcd") $v.etcd.auth.existingSecret (eq $v.etcd.auth.passwordFrom "file") }}
- name: leader-elector-etcd-auth
  mountPath: {{ include "leader-elector.etcdAuthDir" . }}
  readOnly: true
{{- end }}
{{- if and (eq $v.backend "redis") $v.redis.tls.enabled $v.redis.tls.secretName }}
- name: leader-elector-redis-tls
  mountPath: {{ include "leader-elector.redisTLSDir" . }}
  readOnly: true
{{- end }}
{{- if and (eq $v.backend "redis") $v.redis.auth.existingSecret (eq $v.redis.auth.passwordFrom "file") }}
- name: leader-elector-redis-auth
  mountPath: {{ include "leader-elector.redisAuthDir" . }}
  readOnly: true
{{- end }}
{{- if $v.operations.incarnationFile }}
# The incarnation file: pod-scoped, so a restarted sidecar container finds
# its predecessor's record; no other container mounts it.
- name: leader-elector-state
  mountPath: {{ include "leader-elector.stateDir" . }}
{{- end }}
{{- with $v.sidecar.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
leader-elector.volumes: the pod volumes behind those mounts (possibly none).
Mode 0444 lets the sidecar's non-root user read them without an fsGroup;
only the sidecar container mounts them.
*/}}
{{- define "leader-elector.volumes" -}}
{{- $v := .Values }}
{{- if include "leader-elector.usesAPI" . }}
# What the kubelet would mount into every container with
# automountServiceAccountToken, as a volume only the sidecar mounts: a token
# bound to this pod (invalid once the pod is gone, renewed by the kubelet
# before it expires, carrying the pod's name for the admission policy), the
# cluster's CA bundle and the namespace.
- name: leader-elector-kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end }}
{{- if and (eq $v.backend "etcd") $v.etcd.tls.enabled }}
- name: leader-elector-etcd-tls
  secret:
    secretName: {{ $v.etcd.tls.secretName }}
    defaultMode: 0444
{{- end }}
{{- if and (eq $v.backend "etcd") $v.etcd.auth.existingSecret (eq $v.etcd.auth.passwordFrom "file") }}
- name: leader-elector-etcd-auth
  secret:
    secretName: {{ $v.etcd.auth.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ $v.etcd.auth.passwordKey }}
        path: {{ $v.etcd.auth.passwordKey }}
{{- end }}
{{- if and (eq $v.backend "redis") $v.redis.tls.enabled $v.redis.tls.secretName }}
- name: leader-elector-redis-tls
  secret:
    secretName: {{ $v.redis.tls.secretName }}
    defaultMode: 0444
{{- end }}
{{- if and (eq $v.backend "redis") $v.redis.auth.existingSecret (eq $v.redis.auth.passwordFrom "file") }}
- name: leader-elector-redis-auth
  secret:
    secretName: {{ $v.redis.auth.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ $v.redis.auth.passwordKey }}
        path: {{ $v.redis.auth.passwordKey }}
{{- end }}
{{- if $v.operations.incarnationFile }}
# An emptyDir lives as long as the pod, across restarts of its containers:
# the sidecar restarted after a crash reads what its predecessor recorded
# and releases that candidacy at once. In memory, so writing the record
# never waits on a disk; a few hundred bytes are used.
- name: leader-elector-state
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- with $v.sidecar.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* leader-elector.readinessGates: the pod's readiness gate in mode gate (else nothing). */}}
{{- define "leader-elector.readinessGates" -}}
{{- if eq .Values.readiness.mode "gate" }}
- conditionType: {{ .Values.readiness.gateConditionType }}
{{- end }}
{{- end }}

{{/*
leader-elector.leaderProbe: a readiness probe for the application container
in mode probe: the sidecar's /leader answers 200 only while this pod leads.
*/}}
{{- define "leader-elector.leaderProbe" -}}
httpGet:
  path: /leader
  port: {{ .Values.sidecar.port }}
periodSeconds: 2
timeoutSeconds: 1
failureThreshold: 1
successThreshold: 1
{{- end }}
