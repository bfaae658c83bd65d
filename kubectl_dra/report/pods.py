"""The pods view: each pod's claims, devices, holders and the legacy request it replaced."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from dracore.dra import pod_containers
from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.report.devices import (
    ClassConfigs,
    annotations_of,
    claim_requests,
    claim_state,
    index_class_configs,
    index_devices,
    index_holders,
    metadata_of,
    owner_pod,
    reserved_pods,
)
from kubectl_dra.report.rewritten import read_rewritten, rewritten_originals, scheduler_originals
from kubectl_dra.report.rows import (
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    POD_CLAIM_NAME_ANNOTATION,
    LegacyRequest,
    Obj,
    Origin,
    PodClaim,
    PodReport,
    RequestRow,
    State,
    T,
)

# --- pods view -------------------------------------------------------------------------------


def _container_uses(pod: Obj, pod_claim: str) -> dict[str | None, list[str]]:
    """Request name (None: the whole claim) -> containers of the pod using it."""
    uses: dict[str | None, list[str]] = defaultdict(list)
    for ref in pod_containers(pod.get("spec") or {}):
        container = ref.container
        for ref in (container.get("resources") or {}).get("claims") or []:
            if ref.get("name") == pod_claim:
                uses[ref.get("request")].append(container.get("name", ""))
    return uses


def _for_request(table: Mapping[str | None, list[T]], request: str) -> tuple[T, ...]:
    top = request.split("/", 1)[0]
    return tuple(dict.fromkeys([*table.get(None, []), *table.get(top, [])]))


def _with_pod_context(
    rows: Iterable[RequestRow],
    *,
    pod_name: str,
    containers: Mapping[str | None, list[str]],
    originals: Mapping[str | None, list[LegacyRequest]],
    reserved_for: Sequence[str],
) -> tuple[RequestRow, ...]:
    other_pods = tuple(f"pod/{p}" for p in reserved_for if p != pod_name)
    out = []
    for row in rows:
        fields = {f: getattr(row, f) for f in RequestRow.__dataclass_fields__}
        fields["containers"] = _for_request(containers, row.request)
        fields["original"] = _for_request(originals, row.request)
        fields["shared_with"] = (*other_pods, *row.shared_with) if row.device else ()
        out.append(RequestRow(**fields))
    return tuple(out)


def _extended_context(
    status: Obj, claim: Obj | None, renamed: Mapping[tuple[str, str], LegacyRequest]
) -> tuple[dict[str | None, list[str]], dict[str | None, list[LegacyRequest]]]:
    """KEP-5004 request -> containers, and -> the extended resource each container asked for
    (the legacy one, where `renamed` says the webhook renamed it)."""
    counts = {}
    for request in (((claim or {}).get("spec") or {}).get("devices") or {}).get("requests") or []:
        counts[request.get("name")] = (request.get("exactly") or {}).get("count", 1)
    containers: dict[str | None, list[str]] = defaultdict(list)
    originals: dict[str | None, list[LegacyRequest]] = defaultdict(list)
    for mapping in status.get("requestMappings") or []:
        request = mapping.get("requestName")
        container = mapping.get("containerName", "")
        containers[request].append(container)
        resource = mapping.get("resourceName", "")
        originals[request].append(
            renamed.get((container, resource))
            or LegacyRequest(container, resource, counts.get(request))
        )
    return containers, originals


class _PodIndex:
    """Claims by name and by owning pod uid, for one pass over many pods."""

    def __init__(
        self, claims: Sequence[Obj], slices: Iterable[Obj], class_configs: ClassConfigs | None
    ) -> None:
        self.class_configs = class_configs
        self.devices = index_devices(slices)
        self.holders = index_holders(claims)
        self.by_name: dict[tuple[str, str], Obj] = {}
        self.by_owner: dict[str, list[Obj]] = defaultdict(list)
        for claim in claims:
            meta = metadata_of(claim)
            self.by_name[(meta.get("namespace", ""), meta.get("name", ""))] = claim
            owner = owner_pod(claim)
            if owner and owner.get("uid"):
                self.by_owner[owner["uid"]].append(claim)

    def owned(self, pod: Obj, annotation: str, value: str) -> Obj | None:
        for claim in self.by_owner.get(metadata_of(pod).get("uid", ""), []):
            if annotations_of(claim).get(annotation) == value:
                return claim
        return None

    def pod_claims(self, pod: Obj) -> list[PodClaim]:
        meta, status = metadata_of(pod), pod.get("status") or {}
        namespace = meta.get("namespace", "")
        generated = {
            s.get("name"): s.get("resourceClaimName")
            for s in status.get("resourceClaimStatuses") or []
        }
        found = []
        for ref in (pod.get("spec") or {}).get("resourceClaims") or []:
            pod_claim = ref.get("name", "")
            claim: Obj | None
            state: State | None = None
            if ref.get("resourceClaimName"):
                origin: Origin = "claim"
                source = claim_name = ref["resourceClaimName"]
                claim = self.by_name.get((namespace, claim_name))
                state = "missing" if claim is None else None
            else:
                origin, source = "template", ref.get("resourceClaimTemplateName")
                claim_name = generated.get(pod_claim)
                claim = (
                    self.by_name.get((namespace, claim_name))
                    if claim_name
                    else self.owned(pod, POD_CLAIM_NAME_ANNOTATION, pod_claim)
                )
                claim_name = metadata_of(claim).get("name") if claim else claim_name
            found.append(
                self._pod_claim(
                    pod,
                    claim,
                    name=pod_claim,
                    origin=origin,
                    source=source,
                    claim_name=claim_name,
                    state=state,
                    containers=_container_uses(pod, pod_claim),
                    originals=rewritten_originals(pod, pod_claim),
                )
            )
        extended = status.get("extendedResourceClaimStatus") or {}
        claim = (
            self.by_name.get((namespace, extended["resourceClaimName"]))
            if extended.get("resourceClaimName")
            else self.owned(pod, EXTENDED_RESOURCE_CLAIM_ANNOTATION, "true")
        )
        if extended or claim is not None:
            containers, originals = _extended_context(extended, claim, scheduler_originals(pod))
            found.append(
                self._pod_claim(
                    pod,
                    claim,
                    name=None,
                    origin="extended-resource",
                    source=None,
                    claim_name=extended.get("resourceClaimName")
                    or metadata_of(claim or {}).get("name"),
                    state=None,
                    containers=containers,
                    originals=originals,
                )
            )
        return found

    def _pod_claim(
        self,
        pod: Obj,
        claim: Obj | None,
        *,
        name: str | None,
        origin: Origin,
        source: str | None,
        claim_name: str | None,
        state: State | None,
        containers: Mapping[str | None, list[str]],
        originals: Mapping[str | None, list[LegacyRequest]],
    ) -> PodClaim:
        reserved = reserved_pods(claim) if claim else ()
        rows = (
            claim_requests(
                claim,
                devices=self.devices,
                holders=self.holders,
                class_configs=self.class_configs,
            )
            if claim
            else []
        )
        if claim is None and (containers or originals):
            # Not made yet: still say which containers wait for what.
            rows = [
                RequestRow(r or "*", None, None, None, None, None, None, None, None, None, None)
                for r in dict.fromkeys([*containers, *originals])
            ]
        return PodClaim(
            name=name,
            origin=origin,
            source=source,
            claim=claim_name,
            state=state or claim_state(claim),
            reserved_for=reserved,
            requests=_with_pod_context(
                rows,
                pod_name=metadata_of(pod).get("name", ""),
                containers=containers,
                originals=originals,
                reserved_for=reserved,
            ),
        )


def uses_dra(pod: Obj) -> bool:
    """Whether a pod has anything `describe pods` shows: claims, a KEP-5004 claim, a rewrite."""
    status = pod.get("status") or {}
    return bool(
        (pod.get("spec") or {}).get("resourceClaims")
        or status.get("extendedResourceClaimStatus")
        or REWRITTEN_ANNOTATION in annotations_of(pod)
    )


def unscheduled_reason(pod: Obj) -> str | None:
    """Why the scheduler has not placed the pod yet: its PodScheduled condition while False."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            parts = [str(condition.get(k)) for k in ("reason", "message") if condition.get(k)]
            return ": ".join(parts) or "not scheduled"
    return None


def build_pod_reports(
    pods: Iterable[Obj],
    claims: Sequence[Obj],
    slices: Iterable[Obj],
    *,
    only_dra: bool = True,
    device_classes: Iterable[Obj] | None = None,
) -> list[PodReport]:
    """Each pod's claims, devices and holders; pods without DRA are left out when `only_dra`.

    With `device_classes`, a claim not allocated yet shows the sharing its class configures.
    """
    configs = None if device_classes is None else index_class_configs(device_classes)
    index = _PodIndex(claims, slices, configs)
    reports = []
    for pod in pods:
        claims_of_pod = index.pod_claims(pod)
        if only_dra and not claims_of_pod and not uses_dra(pod):
            continue
        meta = metadata_of(pod)
        reports.append(
            PodReport(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                node=(pod.get("spec") or {}).get("nodeName"),
                phase=(pod.get("status") or {}).get("phase"),
                unscheduled=unscheduled_reason(pod),
                rewritten=read_rewritten(pod),
                claims=tuple(claims_of_pod),
            )
        )
    return sorted(reports, key=lambda r: (r.namespace, r.name))
