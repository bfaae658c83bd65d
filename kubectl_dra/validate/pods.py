"""Rules 3 and 6: claim references of pods and pod templates, and legacy nvidia.com/gpu requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from dracore.dra import legacy_resources, pod_containers
from dracore.names import is_dns_subdomain
from dracore.policy import Policy
from kubectl_dra.validate.claims import unique_label
from kubectl_dra.validate.findings import (
    Report,
    as_dict,
    as_list,
    metadata_of,
    name_of,
)
from kubectl_dra.validate.schema import check_structure, join_path

# --- rule 3 and 6: pods -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimSource:
    """A template or claim the input or the cluster has, by namespace and name."""

    kind: str
    namespace: str
    name: str
    requests: frozenset[str]
    from_cluster: bool


def _request_names(obj: Mapping[str, Any]) -> frozenset[str]:
    spec = as_dict(obj.get("spec"))
    if obj.get("kind") == "ResourceClaimTemplate":
        spec = as_dict(spec.get("spec"))
    return frozenset(
        str(as_dict(r).get("name")) for r in as_list(as_dict(spec.get("devices")).get("requests"))
    )


def claim_sources(
    objects: Iterable[Mapping[str, Any]], *, namespace: str, from_cluster: bool
) -> dict[tuple[str, str, str], ClaimSource]:
    found: dict[tuple[str, str, str], ClaimSource] = {}
    for obj in objects:
        kind = str(obj.get("kind"))
        if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
            continue
        ns = str(metadata_of(obj).get("namespace") or namespace)
        source = ClaimSource(kind, ns, name_of(obj), _request_names(obj), from_cluster)
        found[(kind, ns, source.name)] = source
    return found


# validate has no --policy: the built-in policy says which resources are the legacy ones.
LEGACY_POLICY: Final = Policy.default()


def _legacy_requests(container: Mapping[str, Any]) -> list[str]:
    """`2 nvidia.com/gpu` for each extended resource the (default) policy translates."""
    found = legacy_resources(container, LEGACY_POLICY)
    return [f"{value} {name}" for name, value in found.items()]


def pod_rules(
    report: Report,
    obj: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    prefix: str,
    namespace: str,
    sources: Mapping[tuple[str, str, str], ClaimSource],
    cluster: bool,
    where: str,
) -> None:
    spec = as_dict(template.get("spec"))
    base = join_path(prefix, "spec")
    pod_namespace = str(metadata_of(obj).get("namespace") or namespace)
    claims: dict[str, frozenset[str] | None] = {}
    pod_claim_names: set[str] = set()
    for i, raw in enumerate(as_list(spec.get("resourceClaims"))):
        path = f"{base}.resourceClaims[{i}]"
        if not check_structure(report, raw, "io.k8s.api.core.v1.PodResourceClaim", path):
            continue
        name = raw["name"]
        unique_label(report, name, f"{path}.name", pod_claim_names, "pod claim")
        by_claim, by_template = raw.get("resourceClaimName"), raw.get("resourceClaimTemplateName")
        if bool(by_claim) == bool(by_template):
            report.error(
                path, "must set exactly one of resourceClaimName or resourceClaimTemplateName"
            )
            claims[name] = None
            continue
        kind = "ResourceClaim" if by_claim else "ResourceClaimTemplate"
        field_name = "resourceClaimName" if by_claim else "resourceClaimTemplateName"
        target = str(by_claim or by_template)
        if not is_dns_subdomain(target):
            report.error(
                f"{path}.{field_name}", f"{target!r} is not a valid {kind} name (a DNS subdomain)"
            )
        claims[name] = _resolve(
            report,
            kind,
            target,
            f"{path}.{field_name}",
            pod_namespace=pod_namespace,
            sources=sources,
            cluster=cluster,
        )
    if as_dict(spec.get("resources")).get("claims"):
        report.error(
            f"{base}.resources.claims",
            "pod-level resources cannot carry claims; list them under each container's resources.claims",
        )
    for ref in pod_containers(spec, ephemeral=True):
        container, container_path = ref.container, ref.path
        resources_ = as_dict(container.get("resources"))
        path = f"{base}.{container_path}.resources"
        legacy = _legacy_requests(container)
        if legacy:
            source = "-" if where == "stdin" else where
            report.info(
                f"{path}.limits",
                f"container {container.get('name')!r} asks for {' and '.join(legacy)} through the device plugin; `kubectl dra convert -f {source}` shows the DRA equivalent (a ResourceClaimTemplate and resources.claims)",
            )
        container_claims = as_list(resources_.get("claims"))
        if container_claims and container_path.startswith("ephemeralContainers"):
            report.error(f"{path}.claims", "ephemeral containers cannot use resource claims")
            continue
        seen: set[tuple[str, str | None]] = set()
        for k, raw in enumerate(container_claims):
            claim_path = f"{path}.claims[{k}]"
            if not check_structure(report, raw, "io.k8s.api.core.v1.ResourceClaim", claim_path):
                continue
            name, request = raw["name"], raw.get("request") or None
            if name not in claims:
                choices = ", ".join(sorted(claims)) or "none are declared"
                report.error(
                    f"{claim_path}.name",
                    f"{name!r} must be one of the names in spec.resourceClaims ({choices}); add the claim to spec.resourceClaims or fix the name",
                )
                continue
            if (name, request) in seen:
                report.error(
                    claim_path,
                    f"claim {name!r}{f' request {request!r}' if request else ''} is listed twice for this container",
                )
            elif (request is None and any(n == name for n, _ in seen)) or (
                request is not None and (name, None) in seen
            ):
                report.error(
                    claim_path,
                    f"claim {name!r} is listed both whole and for one of its requests; keep one",
                )
            seen.add((name, request))
            known = claims[name]
            if request is not None and known is not None and request not in known:
                choices = ", ".join(sorted(known)) or "none"
                report.error(
                    f"{claim_path}.request",
                    f"names request {request!r}, which pod claim {name!r} does not have (requests: {choices})",
                )


def _resolve(
    report: Report,
    kind: str,
    target: str,
    path: str,
    *,
    pod_namespace: str,
    sources: Mapping[tuple[str, str, str], ClaimSource],
    cluster: bool,
) -> frozenset[str] | None:
    """The request names of the referenced template/claim, or None when it is not known."""
    source = sources.get((kind, pod_namespace, target))
    if source is not None:
        return source.requests
    elsewhere = sorted(
        ns for (k, ns, n), s in sources.items() if k == kind and n == target and not s.from_cluster
    )
    if elsewhere:
        report.error(
            path,
            f"{kind} {target!r} is in namespace {', '.join(elsewhere)}, but the pod is in {pod_namespace}; a pod can only use {kind}s of its own namespace",
        )
    elif cluster:
        report.error(
            path,
            f"{kind} {pod_namespace}/{target} is not in the input nor in the cluster; the pod would stay Pending until it exists",
        )
    return None
