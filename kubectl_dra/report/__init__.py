"""What `kubectl dra describe` shows (pure): pods, claims and ResourceSlices joined in memory.

Every view is one `build_*` function from API object dicts (as `kube.py` hands them out) to
frozen dataclass rows; `render.py` decides how they look.
The package: `rows` (the dataclasses), `devices` (indexes of devices, holders and one claim's
rows), and one module per view: `claims`, `pods` (with the `kubectl-dra.io/rewritten` reading),
`nodes` (nodes, the cluster and namespaces). The join is done with dict indexes, so
a view costs the same few list calls and linear time however many objects exist:

- devices keyed by `(driver, pool, device)`, taken only from the slices that carry the newest
  `pool.generation` of their pool (older slices are being replaced by the driver);
- claims keyed by `(namespace, name)` and by the uid of the pod that owns them;
- holders (claims, and the pods in their `reservedFor`) keyed by device.

How a pod's claims are found: a `resourceClaimName` is used as written; a template-made claim
through `pod.status.resourceClaimStatuses` (written by the controller-manager), falling back to a
claim owned by the pod whose `resource.kubernetes.io/pod-claim-name` annotation names the pod
claim; the scheduler's KEP-5004 claim through `pod.status.extendedResourceClaimStatus`, falling
back to an owned claim annotated `resource.kubernetes.io/extended-resource-claim: "true"`.

Claim states: `pending` (no allocation yet, or a template claim not created yet), `allocated`
(devices chosen, nobody reserved them), `reserved` (`status.reservedFor` names consumers),
`missing` (a named claim that does not exist). A claim being deleted keeps its state.

Sharing is the `sharing.strategy` of the last opaque config in `status.allocation.devices.config`
that applies to the request (NVIDIA `GpuConfig`/`MigDeviceConfig` and the example driver's
`GpuConfig` all use that field), with its source (`FromClass` or `FromClaim`); None when no
config sets one, which means the driver's default (the device is still shared by every container
and pod that uses the same claim).
"""

from __future__ import annotations

from dracore.quantity import parse_quantity
from kubectl_dra.report.claims import build_claim_reports
from kubectl_dra.report.devices import attribute, claim_requests, format_bytes, index_devices
from kubectl_dra.report.nodes import (
    build_cluster_report,
    build_namespace_usage,
    build_node_reports,
)
from kubectl_dra.report.pods import build_pod_reports, uses_dra
from kubectl_dra.report.rewritten import read_rewritten
from kubectl_dra.report.rows import (
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    POD_CLAIM_NAME_ANNOTATION,
    ClaimReport,
    ClusterReport,
    Device,
    LegacyRequest,
    ModelCount,
    NamespaceUsage,
    NodeDevice,
    NodeReport,
    PodClaim,
    PodReport,
    RequestRow,
    Rewritten,
    Sharing,
)

__all__ = [
    "EXTENDED_RESOURCE_CLAIM_ANNOTATION",
    "POD_CLAIM_NAME_ANNOTATION",
    "ClaimReport",
    "ClusterReport",
    "Device",
    "LegacyRequest",
    "ModelCount",
    "NamespaceUsage",
    "NodeDevice",
    "NodeReport",
    "PodClaim",
    "PodReport",
    "RequestRow",
    "Rewritten",
    "Sharing",
    "attribute",
    "build_claim_reports",
    "build_cluster_report",
    "build_namespace_usage",
    "build_node_reports",
    "build_pod_reports",
    "claim_requests",
    "format_bytes",
    "index_devices",
    "parse_quantity",
    "read_rewritten",
    "uses_dra",
]
