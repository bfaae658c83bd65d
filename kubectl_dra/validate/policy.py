"""GPUPolicy documents and the ConfigMaps that hold them, checked by the webhook's own loader.

The webhook reads its policy from the `policy.yaml` key of a ConfigMap; an edit it cannot load
is refused at reload (the last good policy stays in force). Here every problem the loader finds
(dracore.policy.PolicyCheck) is one error finding, and everything it warns about one warning,
with the field path inside the GPUPolicy (for a ConfigMap, under `data[policy.yaml]`).

A ConfigMap is taken for a policy when it has a `policy.yaml` key or carries the shipped name
`kubectl-dra-policy`; other ConfigMaps are not ours to judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from dracore.policy import CONFIGMAP_KEY, KIND, PolicyCheck, PolicyProblem
from kubectl_dra.validate.findings import Report, Severity, as_dict, name_of

POLICY_CONFIGMAP_NAME: Final = "kubectl-dra-policy"


def is_policy(obj: Mapping[str, Any]) -> bool:
    """A GPUPolicy, or a ConfigMap that holds (or by its name should hold) one."""
    if obj.get("kind") == KIND:
        return True
    if obj.get("kind") != "ConfigMap":
        return False
    return CONFIGMAP_KEY in as_dict(obj.get("data")) or name_of(obj) == POLICY_CONFIGMAP_NAME


def check_policy(report: Report, obj: Mapping[str, Any]) -> None:
    """One error per problem of the loader, one warning per thing it warns about."""
    check = PolicyCheck.of(obj, source=name_of(obj) or KIND)
    in_configmap = obj.get("kind") == "ConfigMap"
    found: list[tuple[Severity, PolicyProblem]] = [
        *(("error", p) for p in check.errors),
        *(("warning", p) for p in check.warnings),
    ]
    for severity, problem in found:
        field = problem.field
        if in_configmap and not field.startswith("data."):
            field = f"data[{CONFIGMAP_KEY}]" + (f".{field}" if field else "")
        report.add(severity, field, problem.message)
