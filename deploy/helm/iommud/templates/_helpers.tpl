{{/* The chart's name, and the release's full name (63 characters at most, as DNS labels). */}}
{{- define "iommud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iommud.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "iommud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iommud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iommud.labels" -}}
{{ include "iommud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "iommud.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Paths inside the pod: fixed, whatever the host directories are. */}}
{{- define "iommud.socketDir" -}}/run/iommud{{- end -}}
{{- define "iommud.stateDir" -}}/var/lib/iommud{{- end -}}
{{- define "iommud.socketPath" -}}{{ include "iommud.socketDir" . }}/iommud.sock{{- end -}}

{{/* The probes: the gRPC health service through the UNIX socket, never TLS. */}}
{{- define "iommud.healthCommand" -}}
exec:
  command: ["iommuctl", "--endpoint", "unix:{{ include "iommud.socketPath" . }}", "--timeout", "2", "health"]
{{- end -}}

{{/* A list of ids or names as the daemon's comma-separated setting. */}}
{{- define "iommud.joined" -}}
{{- $out := list -}}
{{- range . }}{{ $out = append $out (toString .) }}{{ end -}}
{{- join "," $out | quote -}}
{{- end -}}

{{/* A setting's value in TOML: strings quoted, switches as 0/1, whole numbers
     as integers (values files give every number as a float64). */}}
{{- define "iommud.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- quote . -}}
{{- else if kindIs "bool" . -}}
{{- ternary 1 0 . -}}
{{- else if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
