"""Our webhook's live registrations, and whether the API server would send it a workload's pods.

The API server calls a mutating webhook for a pod only when the entry's namespaceSelector
selects the pod's namespace, its objectSelector the pod's labels, and every matchCondition is
true. Audit reads the live MutatingWebhookConfigurations (one list call) and asks the same of
each workload's pod template, so a workload the webhook will never see (its namespace opted out,
or a resource the conditions do not match) is reported as such instead of as "rewritten".

The matchConditions are evaluated with cel-python on `object` (the pod) and `request` (a
CREATE). A condition that does not compile or fails on the pod counts as true: the API server
would then apply the failurePolicy rather than skip the webhook, and audit does not guess.
cel-python takes about 10 ms per pod, so a verdict is remembered per registration for each
distinct pod template (spec, labels and annotations, namespace): the replicas of workloads and
the bare pods of one shape cost one evaluation. A condition reading the pod's name is therefore
judged on the first pod of that shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import celpy
from celpy.adapter import json_to_cel

Obj = Mapping[str, Any]
WEBHOOK_SUFFIX: Final = "gpu-to-dra.kubectl-dra.io"
SERVICE_NAME: Final = "kubectl-dra-webhook"
IGNORE_LABEL: Final = "kubectl-dra.io/ignore"


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    program: Any  # a compiled celpy program; None when it does not compile


@dataclass(frozen=True, slots=True)
class Registration:
    name: str  # MutatingWebhookConfiguration/webhook
    failure_policy: str
    namespace_selector: Obj | None
    object_selector: Obj | None = None
    conditions: tuple[Condition, ...] = ()
    # pod shape -> the first condition that is false for it ("" when all hold)
    verdicts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def failed_condition(self, pod: Obj, namespace: str) -> str | None:
        """The first matchCondition false for a pod of this template in `namespace`, or None."""
        metadata = pod.get("metadata") or {}
        shape = {
            "labels": metadata.get("labels"),
            "annotations": metadata.get("annotations"),
            "spec": pod.get("spec"),
            "namespace": namespace,
        }
        key = json.dumps(shape, sort_keys=True, default=str)
        if key not in self.verdicts:
            activation = {
                "object": json_to_cel({**pod, "metadata": {**metadata, "namespace": namespace}}),
                "oldObject": json_to_cel(None),
                "request": json_to_cel({"operation": "CREATE", "namespace": namespace}),
            }
            failed = [c.name for c in self.conditions if not _condition_holds(c, activation)]
            self.verdicts[key] = failed[0] if failed else ""
        return self.verdicts[key] or None


def label_selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels (an empty or missing selector matches all)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator")
        values = set(expr.get("values") or [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _compile(environment: celpy.Environment, expression: Any) -> Any:
    try:
        return environment.program(environment.compile(str(expression)))
    except Exception:  # celpy raises several types; an uncompilable condition is not judged
        return None


def registrations(configs: Iterable[Obj]) -> list[Registration]:
    """Our webhooks among MutatingWebhookConfigurations (by webhook name or service)."""
    environment = celpy.Environment()
    found = []
    for config in configs:
        config_name = (config.get("metadata") or {}).get("name", "")
        for hook in config.get("webhooks") or []:
            service = ((hook.get("clientConfig") or {}).get("service") or {}).get("name")
            if not (str(hook.get("name", "")).endswith(WEBHOOK_SUFFIX) or service == SERVICE_NAME):
                continue
            conditions = tuple(
                Condition(str(c.get("name", "")), _compile(environment, c.get("expression", "")))
                for c in hook.get("matchConditions") or []
                if isinstance(c, Mapping)
            )
            found.append(
                Registration(
                    f"{config_name}/{hook.get('name', '')}",
                    str(hook.get("failurePolicy") or "Fail"),
                    hook.get("namespaceSelector"),
                    hook.get("objectSelector"),
                    conditions,
                )
            )
    return found


def _condition_holds(condition: Condition, activation: Mapping[str, Any]) -> bool:
    if condition.program is None:
        return True
    try:
        return bool(condition.program.evaluate(activation))
    except Exception:  # an error is not "false": the API server applies the failurePolicy
        return True


def unseen_reason(
    hooks: Sequence[Registration],
    *,
    pod: Obj,
    namespace: str,
    labels: Mapping[str, str],
    resources: Sequence[str],
) -> str | None:
    """Why none of `hooks` would be called for a pod of this template, or None if one would
    (or if there is no registration at all: then nothing can be said)."""
    if not hooks:
        return None
    selecting = [h for h in hooks if label_selector_matches(h.namespace_selector, labels)]
    if not selecting:
        how = f" (label {IGNORE_LABEL})" if IGNORE_LABEL in labels else ""
        return f"namespace {namespace} is opted out{how}: no kubectl-dra webhook registration selects it"
    metadata = pod.get("metadata") or {}
    pod_labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    reasons = []
    for hook in selecting:
        if not label_selector_matches(hook.object_selector, pod_labels):
            reasons.append(f"{hook.name}'s objectSelector does not select its pods")
            continue
        failed = hook.failed_condition(pod, namespace)
        if failed is None:
            return None
        reasons.append(
            f"{hook.name}'s matchCondition {failed} is false for pods asking for {', '.join(resources)}"
        )
    return "the webhook never sees its pods: " + "; ".join(reasons)
