"""The checker: which rule applies to which object, run over one input.

A rule is a function `(report, obj, run)` that adds findings for one object; `RULES` maps the
objects it applies to onto it. A new rule is one function and one line in `RULES`. Everything a
run learns on the way (claims and classes of the input, what to check against the cluster
afterwards) lives in its `Run`, never in module state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dracore.workload_kinds import template_of, template_path
from kubectl_dra import celcheck
from kubectl_dra.convert import template_problems
from kubectl_dra.documents import Document
from kubectl_dra.validate import deviceclasses
from kubectl_dra.validate.claims import Request, claim_spec_rules, device_class_rules
from kubectl_dra.validate.cluster import ClusterCheck, ClusterSnapshot
from kubectl_dra.validate.findings import RESOURCE_API, Finding, Report, as_dict, name_of
from kubectl_dra.validate.pods import ClaimSource, claim_sources, pod_rules
from kubectl_dra.validate.policy import check_policy, is_policy
from kubectl_dra.validate.schema import check_structure

DEFINITIONS: Final = {
    "ResourceClaim": "io.k8s.api.resource.v1.ResourceClaim",
    "ResourceClaimTemplate": "io.k8s.api.resource.v1.ResourceClaimTemplate",
    "DeviceClass": "io.k8s.api.resource.v1.DeviceClass",
}


@dataclass(slots=True)
class Run:
    """What one validation run knows: its scope, and the checks left for the cluster stage."""

    namespace: str
    sources: Mapping[tuple[str, str, str], ClaimSource]
    cluster: ClusterSnapshot | None
    source: str = ""  # the file of the object being checked, for hints
    input_classes: dict[str, list[celcheck.Checked]] = field(default_factory=dict)
    claim_requests: list[tuple[Report, list[list[Request]], str]] = field(default_factory=list)
    class_reports: list[tuple[Report, str]] = field(default_factory=list)
    claiming_classes: list[Mapping[str, Any]] = field(default_factory=list)  # extendedResourceName


RuleCheck = Callable[[Report, Mapping[str, Any], Run], None]


@dataclass(frozen=True, slots=True)
class Rule:
    applies: Callable[[Mapping[str, Any]], bool]
    check: RuleCheck


def _kind(kind: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: obj.get("kind") == kind


def _has_pod_template(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") not in DEFINITIONS and template_path(dict(obj)) is not None


def _sound_dra_object(report: Report, obj: Mapping[str, Any]) -> bool:
    """The apiVersion we check and the OpenAPI shape; False when the rules cannot go on."""
    api_version = obj.get("apiVersion")
    if api_version != RESOURCE_API:
        report.warning(
            "apiVersion",
            f"{api_version} is not checked; kubectl dra validate checks {RESOURCE_API} (Kubernetes 1.34+), whose request fields sit under exactly/firstAvailable",
        )
        return False
    return check_structure(report, obj, DEFINITIONS[str(obj.get("kind"))])


def check_device_class(report: Report, obj: Mapping[str, Any], run: Run) -> None:
    if not _sound_dra_object(report, obj):
        return
    run.input_classes[name_of(obj)] = device_class_rules(report, obj)
    run.class_reports.append((report, name_of(obj)))


def check_class_names(report: Report, obj: Mapping[str, Any], run: Run) -> None:
    cluster_classes = run.cluster.device_classes if run.cluster is not None else ()
    deviceclasses.check_extended_resource(
        report, obj, claiming=run.claiming_classes, cluster_classes=cluster_classes
    )


def check_claim(report: Report, obj: Mapping[str, Any], run: Run) -> None:
    if not _sound_dra_object(report, obj):
        return
    requests = claim_spec_rules(report, as_dict(obj.get("spec")), "spec")
    run.claim_requests.append((report, requests, "spec.devices.requests"))


def check_claim_template(report: Report, obj: Mapping[str, Any], run: Run) -> None:
    if not _sound_dra_object(report, obj):
        return
    spec = as_dict(obj.get("spec"))
    extra = sorted(set(as_dict(spec.get("metadata"))) - {"labels", "annotations"})
    if extra:
        report.error(
            f"spec.metadata.{extra[0]}",
            "only labels and annotations may be set in a template's metadata",
        )
    requests = claim_spec_rules(report, as_dict(spec.get("spec")), "spec.spec")
    run.claim_requests.append((report, requests, "spec.spec.devices.requests"))


def check_pod_template(report: Report, obj: Mapping[str, Any], run: Run) -> None:
    problems = template_problems(dict(obj))
    for field_path, message in problems:
        report.error(field_path, message)
    template = None if problems else template_of(dict(obj))
    if template is None:
        return
    pod_rules(
        report,
        obj,
        template,
        prefix="" if obj.get("kind") == "Pod" else template_prefix(obj),
        namespace=run.namespace,
        sources=run.sources,
        cluster=run.cluster is not None,
        where=run.source,
    )


RULES: Final[tuple[Rule, ...]] = (
    Rule(_kind("ResourceClaim"), check_claim),
    Rule(_kind("ResourceClaimTemplate"), check_claim_template),
    Rule(_kind("DeviceClass"), check_device_class),
    Rule(_kind("DeviceClass"), check_class_names),
    Rule(_has_pod_template, check_pod_template),
    Rule(is_policy, lambda report, obj, run: check_policy(report, obj)),
)


def validate_documents(
    documents: Sequence[Document],
    *,
    cluster: ClusterSnapshot | None = None,
    namespace: str = "default",
) -> list[Finding]:
    """Findings for every object of `documents`, in input order; `namespace` for objects without one."""
    objects = [d.object for d in documents]
    sources = claim_sources(objects, namespace=namespace, from_cluster=False)
    if cluster is not None:
        from_cluster = claim_sources(
            [*cluster.resource_claims, *cluster.resource_claim_templates],
            namespace=namespace,
            from_cluster=True,
        )
        sources = {**from_cluster, **sources}
    run = Run(namespace=namespace, sources=sources, cluster=cluster)
    reports: list[Report] = []
    for document in documents:
        report = Report(document.object)
        reports.append(report)
        run.source = document.source
        for rule in RULES:
            if rule.applies(document.object):
                rule.check(report, document.object, run)
    if cluster is not None:
        check = ClusterCheck(cluster, run.input_classes)
        for report, name in run.class_reports:
            check.device_class(report, name)
        for report, requests, path in run.claim_requests:
            fitting = [(alts[0], check.request(report, alts)) for alts in requests if alts]
            check.claim(report, path, [(r, d) for r, d in fitting if d is not None])
    return [finding for report in reports for finding in report.findings]


def template_prefix(obj: Mapping[str, Any]) -> str:
    return ".".join(template_path(dict(obj)) or ())


def is_checked(obj: Mapping[str, Any]) -> bool:
    """Whether validate has rules for this kind (DRA objects, pods and workloads)."""
    return any(rule.applies(obj) for rule in RULES)
