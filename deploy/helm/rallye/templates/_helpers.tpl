{{/* Names and labels shared by the templates. */}}

{{- define "rallye.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rallye.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rallye.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rallye.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rallye.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rallye.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rallye.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "rallye.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rallye.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the server reads its secret settings from. */}}
{{- define "rallye.secretName" -}}
{{- default (include "rallye.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret and key holding the migration Job's DATABASE_URL. */}}
{{- define "rallye.migrationSecretName" -}}
{{- if .Values.migration.existingSecret -}}
{{- .Values.migration.existingSecret -}}
{{- else if and .Values.secrets.existingSecret (not .Values.migration.databaseUrl) -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-migration" (include "rallye.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "rallye.migrationSecretKey" -}}
{{- if .Values.migration.existingSecret -}}
{{- .Values.migration.existingSecretKey -}}
{{- else -}}
DATABASE_URL
{{- end -}}
{{- end -}}

{{- define "rallye.firebaseSecretName" -}}
{{- default (printf "%s-firebase" (include "rallye.fullname" .)) .Values.firebase.existingSecret -}}
{{- end -}}

{{/* Checks of the values, run by the Deployment. */}}
{{- define "rallye.validate" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if not .Values.secrets.databaseUrl -}}
{{- fail "secrets.databaseUrl (DATABASE_URL) is required, or name a Secret in secrets.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.secrets.jwtSecret) (not .Values.config.RALLYE_JWKS_URL) -}}
{{- fail "set secrets.jwtSecret (RALLYE_JWT_SECRET) or config.RALLYE_JWKS_URL so that tokens can be verified" -}}
{{- end -}}
{{- if and .Values.secrets.jwtSecret (lt (len .Values.secrets.jwtSecret) 32) -}}
{{- fail "secrets.jwtSecret (RALLYE_JWT_SECRET) must be at least 32 bytes long" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.firebase.enabled (not .Values.firebase.existingSecret) (not .Values.firebase.serviceAccountJson) -}}
{{- fail "firebase.enabled needs firebase.existingSecret or firebase.serviceAccountJson" -}}
{{- end -}}
{{- if and .Values.firebase.enabled (not .Values.firebase.projectId) -}}
{{- fail "firebase.enabled needs firebase.projectId (RALLYE_FCM_PROJECT_ID)" -}}
{{- end -}}
{{- end -}}
