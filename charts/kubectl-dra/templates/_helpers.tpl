{{/* Labels on every object: the kustomize base's part-of label plus Helm's own. */}}
{{- define "kubectl-dra.labels" -}}
app.kubernetes.io/part-of: kubectl-dra
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "kubectl-dra.validate" -}}
{{- if not (has .Values.certificates.mode (list "selfSigned" "certManager" "secret")) }}
{{- fail (printf "certificates.mode: %q is not one of selfSigned, certManager, secret" .Values.certificates.mode) }}
{{- end }}
{{- if and (eq .Values.certificates.mode "secret") (not .Values.certificates.caBundle) }}
{{- fail "certificates.caBundle: required with certificates.mode=secret (base64 PEM of the CA that signed certificates.secretName)" }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) }}
{{- fail (printf "webhook.failurePolicy: %q is not one of Fail, Ignore" .Values.webhook.failurePolicy) }}
{{- end }}
{{- end }}
