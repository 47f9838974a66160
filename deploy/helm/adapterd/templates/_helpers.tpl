{{- define "adapterd.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "adapterd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "adapterd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adapterd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "adapterd.labels" -}}
{{ include "adapterd.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "adapterd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "adapterd.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "adapterd.secretName" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-credentials" (include "adapterd.fullname" .)) -}}
{{- end -}}

{{/* The config file: the user's config plus the paths and listener the
pod layout fixes. */}}
{{- define "adapterd.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "drop_dir" "/var/lib/adapterd/drop" -}}
{{- $_ := set $cfg "state_dir" "/var/lib/adapterd/state" -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.port)) -}}
{{- $ollama := deepCopy (default (dict) $cfg.ollama) -}}
{{- if .Values.ollama.host -}}
{{- $_ := set $ollama "host" .Values.ollama.host -}}
{{- end -}}
{{- if .Values.ollama.modelsHostPath -}}
{{- $_ := set $ollama "models_dir" .Values.ollama.modelsHostPath -}}
{{- end -}}
{{- if $ollama -}}
{{- $_ := set $cfg "ollama" $ollama -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
