"""`kubectl dra convert`, the pure part: manifests in, manifests out, via the webhook's core.

Pod templates are found in Pods and in every workload kind that embeds one. Each generated
ResourceClaimTemplate (or shared ResourceClaim) is placed just before the first object that
needs it, so a Namespace earlier in the input still comes first for `kubectl apply -f`. A pod
the webhook would hand to the scheduler (dracore.paths, under what `offer` says the cluster
has) is renamed as the webhook renames it, and needs no template.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dracore.dra import describe_object
from dracore.errors import TranslationError
from dracore.paths import NOTHING, ClusterOffer, choose_path, rename_for_scheduler
from dracore.policy import Policy
from dracore.record import SCHEDULER
from dracore.translate import check_shared_claim_fits, translate
from dracore.workload_kinds import template_of, template_path
from kubectl_dra.documents import Document
from kubectl_dra.errors import InputError
from kubectl_dra.shapes import pod_template_problems, type_name


@dataclass(frozen=True, slots=True)
class Conversion:
    objects: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...]
    converted: int  # how many pod templates were rewritten
    paths: tuple[str, ...] = ()  # per rewritten pod template: its path and why, one line each


def template_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """Wrong types along the path to the pod template and inside it (see kubectl_dra.shapes)."""
    path = template_path(obj)
    if path is None:
        return []
    node: Any = obj
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            where = ".".join(path[:depth])
            return [(where, f"must be a mapping, not {type_name(node)}")]
        node = node.get(key)
        if node is None:
            return []  # no template: nothing to convert or check
    return pod_template_problems(node, "".join(f"{key}." for key in path))


def convert_documents(
    documents: Iterable[Document],
    *,
    policy: Policy,
    namespace: str | None = None,
    offer: ClusterOffer = NOTHING,
) -> Conversion:
    """Rewrite every pod template; raises InputError naming the object on a policy denial."""
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    paths: list[str] = []
    emitted: dict[tuple[str, str, str], dict[str, Any]] = {}
    converted = 0
    for document in documents:
        obj = document.object
        problems = template_problems(obj)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            field, message = problems[0]
            raise InputError(f"{document.where}: {field} {message}{more}")
        template = template_of(obj)
        if template is None:
            out.append(obj)
            continue
        own_namespace = (obj.get("metadata") or {}).get("namespace")
        subject = describe_object(obj)
        if obj.get("kind") != "Pod":
            subject += " (pod template)"
        pod = {"metadata": template.get("metadata") or {}, "spec": template.get("spec") or {}}
        where = own_namespace or namespace
        try:
            result = translate(pod, policy=policy, namespace=where, subject=subject)
        except TranslationError as exc:
            raise InputError(f"{document.position}: {exc}") from None
        warnings += [f"{subject}: {w}" for w in result.warnings]
        if not result.changed:
            out.append(obj)
            continue
        converted += 1
        choice = choose_path(pod, policy=policy, namespace=where, namespace_labels={}, offer=offer)
        paths.append(f"{subject}: {choice.path} path ({choice.reason})")
        warnings += [f"{subject}: {choice.warning}"] if choice.warning else []
        if choice.path == SCHEDULER:
            renamed = rename_for_scheduler(
                pod,
                classes=dict(choice.classes),
                policy=policy,
                rules=policy.rules_for(where or ""),
            )
            out.append(_with_pod(obj, renamed))
            continue
        for needed in (*result.templates, *result.shared_claims):
            if not own_namespace:
                # Stay namespace-less like the object, so `kubectl apply -n NS` places both.
                needed["metadata"].pop("namespace", None)
            key = (
                needed["kind"],
                needed["metadata"].get("namespace", ""),
                needed["metadata"]["name"],
            )
            if key in emitted:
                misfit = needed["kind"] == "ResourceClaim" and check_shared_claim_fits(
                    emitted[key], needed
                )
                if misfit:
                    raise InputError(f"{document.position}: {subject}: {misfit}")
                continue
            emitted[key] = needed
            out.append(needed)
        out.append(_with_pod(obj, result.pod))
    return Conversion(tuple(out), tuple(warnings), converted, tuple(paths))


def _with_pod(obj: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """`obj` with its pod (or pod template) replaced by `pod`; `obj` itself is not changed."""
    path = template_path(obj) or ()
    if not path:
        return {**obj, **pod}
    new_obj = dict(obj)
    _set_template(new_obj, path, pod)
    return new_obj


def _set_template(obj: dict[str, Any], path: tuple[str, ...], pod: dict[str, Any]) -> None:
    node = obj
    for key in path[:-1]:
        node[key] = dict(node[key])  # copy along the path so the input stays untouched
        node = node[key]
    node[path[-1]] = {**node[path[-1]], "metadata": pod["metadata"], "spec": pod["spec"]}
