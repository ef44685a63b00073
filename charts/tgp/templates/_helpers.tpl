{{- define "tgp.labels" -}}
app.kubernetes.io/name: tgp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
