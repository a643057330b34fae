{{/* Names and labels shared by every template. */}}

{{- define "eventcast.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eventcast.operatorName" -}}
{{- printf "%s-operator" (include "eventcast.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "eventcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "eventcast.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "eventcast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventcast
{{- end -}}

{{- define "eventcast.operatorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's config stream URL as sidecars in any namespace reach it. */}}
{{- define "eventcast.operatorURL" -}}
{{- printf "http://%s.%s.svc:%v" (include "eventcast.operatorName" .) .Release.Namespace .Values.operator.configStreamPort -}}
{{- end -}}

{{/*
The sidecar container, for application pod templates:
  containers:
    - name: app
      ...
    {{- include "eventcast.sidecar" (dict "root" $) | nindent 4 }}
and the volume it keeps its last good config in:
  volumes:
    {{- include "eventcast.sidecarVolume" (dict "root" $) | nindent 4 }}
Keys: root (the chart's top context, required), name (container name, default "eventcast").
*/}}
{{- define "eventcast.sidecar" -}}
{{- $root := .root -}}
{{- $s := $root.Values.sidecar -}}
- name: {{ .name | default "eventcast" }}
  image: "{{ $s.image.repository }}:{{ $s.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $s.image.pullPolicy }}
  args:
    - --operator={{ include "eventcast.operatorURL" $root }}
    - --state-dir=/var/lib/eventcast
    - --public=0.0.0.0:{{ $s.publicPort }}
    - --local=127.0.0.1:{{ $s.localPort }}
    - --metrics=0.0.0.0:{{ $s.metricsPort }}
    - --backend={{ $s.backend }}
    {{- if eq $s.backend "redis" }}
    - --redis-cluster={{ join "," $s.redisCluster }}
    {{- end }}
    - --log={{ $s.log }}
    - --log-format={{ $s.logFormat }}
    - --shutdown-timeout={{ $s.shutdownTimeout }}
    {{- range $s.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: EVENTCAST_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: EVENTCAST_POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
  ports:
    - {name: eventcast-ws, containerPort: {{ $s.publicPort }}, protocol: TCP}
    - {name: eventcast-mx, containerPort: {{ $s.metricsPort }}, protocol: TCP}
  readinessProbe:
    httpGet: {path: /readyz, port: eventcast-ws}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /healthz, port: eventcast-ws}
    periodSeconds: 10
    failureThreshold: 6
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: eventcast-state, mountPath: /var/lib/eventcast}
{{- end -}}

{{- define "eventcast.sidecarVolume" -}}
- name: eventcast-state
  emptyDir: {sizeLimit: 64Mi}
{{- end -}}
