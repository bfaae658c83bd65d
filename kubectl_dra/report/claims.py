"""The claims view: each ResourceClaim with its devices and consumers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kubectl_dra.report.devices import (
    allocation_node,
    allocation_of,
    claim_origin,
    claim_requests,
    claim_state,
    index_class_configs,
    index_devices,
    index_holders,
    metadata_of,
    owner_pod,
    reserved_pods,
)
from kubectl_dra.report.rows import (
    ClaimReport,
    Obj,
)

# --- claims view -----------------------------------------------------------------------------


def build_claim_reports(
    claims: Sequence[Obj],
    slices: Iterable[Obj],
    *,
    names: Sequence[str] = (),
    device_classes: Iterable[Obj] | None = None,
) -> list[ClaimReport]:
    """Claims (all of `claims`, or those called `names`) with their devices and consumers.

    `claims` should hold every claim of the namespaces shown, so that other claims allocated
    the same device are found. With `device_classes`, a claim not allocated yet shows the
    sharing its class configures.
    """
    configs = None if device_classes is None else index_class_configs(device_classes)
    devices = index_devices(slices)
    holders = index_holders(claims)
    wanted = set(names)
    reports = []
    for claim in claims:
        meta = metadata_of(claim)
        if wanted and meta.get("name") not in wanted:
            continue
        owner = owner_pod(claim)
        reports.append(
            ClaimReport(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                origin=claim_origin(claim),
                state=claim_state(claim),
                node=allocation_node(allocation_of(claim)),
                owner=owner.get("name") if owner else None,
                reserved_for=reserved_pods(claim),
                requests=tuple(
                    claim_requests(claim, devices=devices, holders=holders, class_configs=configs)
                ),
            )
        )
    return sorted(reports, key=lambda r: (r.namespace, r.name))
