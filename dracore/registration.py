"""Which pods the API server sends to the webhook, generated from the policy (pure).

The MutatingWebhookConfiguration decides which pods the webhook ever sees: its
namespaceSelector (namespaces opted out with the `kubectl-dra.io/ignore` label, the policy's
exempt namespaces and the webhook's own) and its matchConditions (pods asking for a resource the
policy maps). Written by hand, the two drift from the policy: a resource the policy maps but the
conditions do not match is never rewritten, silently. Generated here from the Policy, they
match exactly the names the policy's `spec.resources` map (exact names and `*` prefixes), each
name written as a CEL string literal (`dracore.cel.string_literal`), never pasted raw.

`kubectl dra registration --policy FILE` prints them.
"""

from __future__ import annotations

from typing import Any, Final

from dracore import cel
from dracore.policy import Policy

CONFIGURATION_NAME: Final = "kubectl-dra"
WEBHOOK_NAME: Final = "gpu-to-dra.kubectl-dra.io"
SERVICE_NAME: Final = "kubectl-dra-webhook"
SERVICE_NAMESPACE: Final = "kubectl-dra"
IGNORE_LABEL: Final = "kubectl-dra.io/ignore"
NAME_LABEL: Final = "kubernetes.io/metadata.name"
RESOURCE_CONDITION: Final = "asks-for-legacy-gpu-resources"
OPERATION_CONDITION: Final = "created-or-rewritten"
REWRITTEN_ANNOTATION: Final = "kubectl-dra.io/rewritten"


def resource_predicate(policy: Policy, variable: str = "k") -> str:
    """CEL that is true when the resource name in `variable` is one the policy maps."""
    exact = sorted({r.name for r in policy.resources if not r.is_wildcard})
    prefixes = sorted({r.name[:-1] for r in policy.resources if r.is_wildcard})
    parts = []
    if exact:
        parts.append(f"{variable} in {cel.string_list(exact)}")
    for prefix in prefixes:
        # As the policy's rules match: the prefix and at least one more character.
        literal = cel.string_literal(prefix)
        parts.append(f"({variable}.startsWith({literal}) && {variable} != {literal})")
    return " || ".join(parts) or "false"


def _asks(containers: str, predicate: str) -> str:
    return (
        f"{containers}.exists(c, has(c.resources) && ("
        f"(has(c.resources.limits) && c.resources.limits.exists(k, {predicate})) || "
        f"(has(c.resources.requests) && c.resources.requests.exists(k, {predicate}))))"
    )


def match_conditions(policy: Policy) -> list[dict[str, str]]:
    """The matchConditions: CREATEs (and UPDATEs of pods we rewrote) asking for a mapped resource."""
    predicate = resource_predicate(policy)
    asks = (
        f"{_asks('object.spec.containers', predicate)} || "
        f"(has(object.spec.initContainers) && {_asks('object.spec.initContainers', predicate)})"
    )
    rewritten = cel.string_literal(REWRITTEN_ANNOTATION)
    return [
        {"name": RESOURCE_CONDITION, "expression": asks},
        {
            "name": OPERATION_CONDITION,
            "expression": (
                "request.operation == 'CREATE' || (has(oldObject.metadata.annotations) && "
                f"{rewritten} in oldObject.metadata.annotations)"
            ),
        },
    ]


def namespace_selector(policy: Policy, *, webhook_namespace: str) -> dict[str, Any]:
    """Every namespace but the webhook's own, the policy's exempt ones and those labelled
    `kubectl-dra.io/ignore` (the escape hatch: the webhook never sees their pods)."""
    left_out = sorted({*policy.exempt_namespaces, webhook_namespace})
    return {
        "matchExpressions": [
            {"key": NAME_LABEL, "operator": "NotIn", "values": left_out},
            {"key": IGNORE_LABEL, "operator": "DoesNotExist"},
        ]
    }


def webhook_entry(
    policy: Policy,
    *,
    service: str = SERVICE_NAME,
    namespace: str = SERVICE_NAMESPACE,
    ca_bundle: str | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """One `webhooks[]` entry of the MutatingWebhookConfiguration (`ca_bundle`: base64 PEM)."""
    client: dict[str, Any] = {
        "service": {"name": service, "namespace": namespace, "path": "/mutate", "port": 443}
    }
    if ca_bundle:
        client["caBundle"] = ca_bundle
    return {
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "clientConfig": client,
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "matchPolicy": "Equivalent",
        "namespaceSelector": namespace_selector(policy, webhook_namespace=namespace),
        "matchConditions": match_conditions(policy),
        "sideEffects": "NoneOnDryRun",
        "reinvocationPolicy": "IfNeeded",
        "timeoutSeconds": timeout_seconds,
        "failurePolicy": failure_policy,
    }


def webhook_configuration(entry: dict[str, Any]) -> dict[str, Any]:
    """The whole MutatingWebhookConfiguration around one entry made by `webhook_entry`."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": CONFIGURATION_NAME,
            "labels": {"app.kubernetes.io/managed-by": "kubectl-dra"},
        },
        "webhooks": [entry],
    }
