{{- define "query-gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "query-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "query-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "query-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "query-gateway.labels" -}}
{{ include "query-gateway.selectorLabels" . }}
app.kubernetes.io/part-of: query-gateway
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The pod's whole grace period: preStop, then the drain (server.shutdown_grace_seconds), then the
     clients' last fetch (server.shutdown_delivery_seconds), then a margin. */}}
{{- define "query-gateway.terminationGrace" -}}
{{- $server := .Values.config.server | default dict -}}
{{- add .Values.preStopSeconds (int (default 30 $server.shutdown_grace_seconds)) (int (default 5 $server.shutdown_delivery_seconds)) .Values.terminationSpareSeconds -}}
{{- end -}}
