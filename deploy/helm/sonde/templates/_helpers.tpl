{{- define "sonde.fullname" -}}
{{- if contains "sonde" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-sonde" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sonde.selectorLabels" -}}
app.kubernetes.io/name: sonde
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sonde.labels" -}}
{{ include "sonde.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sonde.tokenSecret" -}}
{{- .Values.apiToken.existingSecret | default (printf "%s-api-token" (include "sonde.fullname" .)) -}}
{{- end -}}

{{- /* The fleet's pods must not match the DaemonSet's selector (nor the
sensors' headless Service, which the fleet resolves to find them). */ -}}
{{- define "sonde.fleetSelectorLabels" -}}
app.kubernetes.io/name: sonde-fleet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sonde.fleetLabels" -}}
{{ include "sonde.fleetSelectorLabels" . }}
app.kubernetes.io/component: fleet
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
