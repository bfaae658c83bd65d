"""The manifests: per scope a mutating and a validating policy, and their bindings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from dracore.admission_policies.expressions import (
    handled_conditions,
    mutation,
    validation,
    variables,
)
from dracore.admission_policies.guard import PARAM_KIND, PolicySource
from dracore.admission_policies.route import (
    API_VERSION,
    IGNORE_LABEL,
    NAME_LABEL,
    InProcessRoute,
    Scope,
)
from dracore.translate import MANAGED_BY, MANAGED_BY_LABEL

_POD_RULES: Final = [
    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
]


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}


def _selectors(route: InProcessRoute, scope: Scope) -> list[tuple[str, dict[str, Any]]]:
    """(suffix, namespaceSelector) of the bindings that put `scope` in force."""
    ignore = {"key": IGNORE_LABEL, "operator": "DoesNotExist"}

    def not_in(names: Iterable[str]) -> list[dict[str, Any]]:
        values = sorted(set(names))
        return [{"key": NAME_LABEL, "operator": "NotIn", "values": values}] if values else []

    found: list[tuple[str, dict[str, Any]]] = []
    if scope.names:
        found.append(
            (
                "names",
                {
                    "matchExpressions": [
                        {"key": NAME_LABEL, "operator": "In", "values": list(scope.names)},
                        ignore,
                    ]
                },
            )
        )
    if scope.labels:
        found.append(
            (
                "labels",
                {
                    "matchLabels": dict(scope.labels),
                    "matchExpressions": [*not_in([*route.excluded, *scope.left_out]), ignore],
                },
            )
        )
    if scope.key == "defaults":
        found.append(
            ("", {"matchExpressions": [*not_in([*route.excluded, *scope.left_out]), ignore]})
        )
    return found


def manifests(route: InProcessRoute, guard: PolicySource | None = None) -> list[dict[str, Any]]:
    """Per scope a mutating and a validating policy and their bindings; with `guard`, each
    policy reads the policy ConfigMap and acts only while it holds the text compiled from.

    The validating policies are guarded too: they run after the webhook, and a stale one would
    judge the pods the webhook admitted under the new policy by the old maxGPUsPerPod.
    """
    manifests: list[dict[str, Any]] = []
    handled = handled_conditions(route)
    param_kind: dict[str, Any] = {}
    current: list[dict[str, str]] = []
    bound: dict[str, Any] = {}
    if guard is not None:
        param_kind, current, bound = (
            {"paramKind": dict(PARAM_KIND)},
            [guard.condition()],
            {"paramRef": guard.param_ref()},
        )
    for scope in route.scopes:
        bindings = _selectors(route, scope)
        if not bindings:
            continue  # every namespace it names is exempt or named by an earlier rule
        checks = validation(route, scope)
        rename = f"kubectl-dra-rename-{scope.key}"
        limits = f"kubectl-dra-limits-{scope.key}"
        manifests.append(
            {
                "apiVersion": API_VERSION,
                "kind": "MutatingAdmissionPolicy",
                "metadata": _metadata(rename),
                "spec": {
                    **param_kind,
                    "matchConstraints": {"resourceRules": _POD_RULES},
                    "matchConditions": [*current, *handled],
                    "variables": variables(route, scope),
                    "mutations": [
                        {
                            "patchType": "JSONPatch",
                            "jsonPatch": {"expression": mutation(route, scope)},
                        }
                    ],
                    # A policy that fails leaves the pod as it was: the webhook then rewrites it.
                    "failurePolicy": "Ignore",
                    "reinvocationPolicy": "Never",
                },
            }
        )
        manifests.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ValidatingAdmissionPolicy",
                "metadata": _metadata(limits),
                "spec": {
                    **param_kind,
                    "matchConstraints": {"resourceRules": _POD_RULES},
                    "failurePolicy": "Fail",
                    **checks,
                    "matchConditions": [*current, *checks["matchConditions"]],
                },
            }
        )
        for suffix, selector in bindings:
            for kind, policy_name, extra in (
                ("MutatingAdmissionPolicyBinding", rename, {}),
                ("ValidatingAdmissionPolicyBinding", limits, {"validationActions": ["Deny"]}),
            ):
                manifests.append(
                    {
                        "apiVersion": API_VERSION,
                        "kind": kind,
                        "metadata": _metadata(f"{policy_name}-{suffix}" if suffix else policy_name),
                        "spec": {
                            "policyName": policy_name,
                            **bound,
                            "matchResources": {"namespaceSelector": selector},
                            **extra,
                        },
                    }
                )
    return manifests
