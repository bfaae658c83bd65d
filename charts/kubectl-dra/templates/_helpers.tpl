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

{{/*
The clientConfig.caBundle of both webhook configurations (nothing in certManager mode: cainjector
fills it). In selfSigned mode, the CA of the Secret the hook Job made (kept across upgrades);
the Job sets it itself on a first install.
*/}}
{{- define "kubectl-dra.caBundle" -}}
{{- if eq .Values.certificates.mode "secret" }}
caBundle: {{ .Values.certificates.caBundle }}
{{- else if eq .Values.certificates.mode "selfSigned" }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.certificates.secretName }}
{{- if and $secret (index ($secret.data | default dict) "ca.crt") }}
caBundle: {{ index $secret.data "ca.crt" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A CEL double-quoted string literal for a printable-ASCII string: backslash and double quote
escaped, so a resource name can never end the literal or the expression (as
dracore.cel.string_literal writes it; other characters are refused by kubectl-dra.resourceNames).
*/}}
{{- define "kubectl-dra.celString" -}}
"{{ . | replace "\\" "\\\\" | replace "\"" "\\\"" }}"
{{- end }}

{{/*
The names of .Values.policy.spec.resources, checked: a list of printable-ASCII strings. Returns
JSON {"exact": [...], "prefixes": [...]}, each sorted and without duplicates (a name ending in *
matches by prefix, as the policy's rules do).
*/}}
{{- define "kubectl-dra.resourceNames" -}}
{{- $spec := (.Values.policy | default dict).spec | default dict }}
{{- $resources := $spec.resources }}
{{- if not (kindIs "slice" $resources) }}
{{- fail "policy.spec.resources: required, a list of {name, deviceClassName}: the chart generates the webhook's matchConditions from it (values.yaml lists the built-in ones)" }}
{{- end }}
{{- if not $resources }}
{{- fail "policy.spec.resources: must be a non-empty list of {name, deviceClassName}" }}
{{- end }}
{{- $exact := list }}
{{- $prefixes := list }}
{{- range $i, $rule := $resources }}
{{- $name := "" }}
{{- if kindIs "map" $rule }}
{{- $name = get $rule "name" }}
{{- end }}
{{- if not (and (kindIs "string" $name) (regexMatch "^[ -~]+$" $name)) }}
{{- fail (printf "policy.spec.resources[%d].name: %s is not an extended resource name (e.g. nvidia.com/gpu; printable ASCII)" $i (toJson $name)) }}
{{- end }}
{{- if hasSuffix "*" $name }}
{{- $prefixes = append $prefixes (trimSuffix "*" $name) }}
{{- else }}
{{- $exact = append $exact $name }}
{{- end }}
{{- end }}
{{- toJson (dict "exact" ($exact | uniq | sortAlpha) "prefixes" ($prefixes | uniq | sortAlpha)) }}
{{- end }}

{{/*
The MutatingWebhookConfiguration's matchConditions, generated from the policy in values exactly as
dracore/registration.py generates them (tests/e2e/test_chart_registration.py compares the two):
pods whose containers or init containers ask for a resource the policy maps, and UPDATEs only of
pods we rewrote.
*/}}
{{- define "kubectl-dra.matchConditions" -}}
{{- $names := include "kubectl-dra.resourceNames" . | fromJson }}
{{- $parts := list }}
{{- if $names.exact }}
{{- $literals := list }}
{{- range $names.exact }}
{{- $literals = append $literals (include "kubectl-dra.celString" .) }}
{{- end }}
{{- $parts = append $parts (printf "k in [%s]" (join ", " $literals)) }}
{{- end }}
{{- range $names.prefixes }}
{{- $literal := include "kubectl-dra.celString" . }}
{{- $parts = append $parts (printf "(k.startsWith(%s) && k != %s)" $literal $literal) }}
{{- end }}
{{- $predicate := $parts | join " || " | default "false" }}
{{- $asks := "%s.exists(c, has(c.resources) && ((has(c.resources.limits) && c.resources.limits.exists(k, %s)) || (has(c.resources.requests) && c.resources.requests.exists(k, %s))))" }}
{{- $containers := printf $asks "object.spec.containers" $predicate $predicate }}
{{- $init := printf $asks "object.spec.initContainers" $predicate $predicate }}
{{- $rewritten := "request.operation == 'CREATE' || (has(oldObject.metadata.annotations) && \"kubectl-dra.io/rewritten\" in oldObject.metadata.annotations)" }}
- name: asks-for-legacy-gpu-resources
  expression: {{ include "kubectl-dra.yamlString" (printf "%s || (has(object.spec.initContainers) && %s)" $containers $init) }}
- name: created-or-rewritten
  expression: {{ include "kubectl-dra.yamlString" $rewritten }}
{{- end }}

{{/* A single-quoted YAML scalar for one line of printable ASCII (a quote is doubled). */}}
{{- define "kubectl-dra.yamlString" -}}
'{{ . | replace "'" "''" }}'
{{- end }}

{{/*
The namespaceSelector: webhook.namespaceSelector, with the release namespace and the policy's
exemptNamespaces (kube-system when the policy leaves it out, as the loader does) added to its
`kubernetes.io/metadata.name NotIn` expression (sorted, as dracore/registration.py writes it).
*/}}
{{- define "kubectl-dra.namespaceSelector" -}}
{{- $spec := (.Values.policy | default dict).spec | default dict }}
{{- $exempt := hasKey $spec "exemptNamespaces" | ternary ($spec.exemptNamespaces | default list) (list "kube-system") }}
{{- $selector := deepCopy (.Values.webhook.namespaceSelector | default dict) }}
{{- $exprs := list }}
{{- $added := false }}
{{- range ($selector.matchExpressions | default list) }}
{{- if and (not $added) (eq .key "kubernetes.io/metadata.name") (eq .operator "NotIn") }}
{{- $values := concat (.values | default list) $exempt (list $.Release.Namespace) | uniq | sortAlpha }}
{{- $exprs = append $exprs (dict "key" .key "operator" .operator "values" $values) }}
{{- $added = true }}
{{- else }}
{{- $exprs = append $exprs . }}
{{- end }}
{{- end }}
{{- if not $added }}
{{- $values := concat $exempt (list .Release.Namespace) | uniq | sortAlpha }}
{{- $exprs = prepend $exprs (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $values) }}
{{- end }}
{{- $_ := set $selector "matchExpressions" $exprs }}
{{- toYaml $selector }}
{{- end }}
