"""Request planning: the legacy demands of a pod's containers, which claim requests the rewritten
pod gets, and which of them each container uses.

Device-plugin semantics: a sidecar and each app container have devices of their own; a plain
init container reuses the devices of the app containers and of the sidecars listed after it
(not yet started when it runs), and sees exactly as many as it asked for (requests are split
where needed).  Under pod sharing or a shared claim, each resource is one request sized for
its largest demand.  The limits (the policy's maxGPUsPerPod, DRA's 32 devices per request and
per claim) are checked here, before and after planning.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dracore import dra
from dracore.errors import TranslationError, shown
from dracore.names import to_dns_label, unique_label
from dracore.policy import MAX_DEVICES_PER_CLAIM, Policy, ResourceRule, SharingRules

ContainerKind = dra.ContainerKind
# (container kind, container index, resource) -> the names of the requests it uses
References = dict[tuple[ContainerKind, int, str], list[str]]


@dataclass(frozen=True, slots=True)
class Demand:
    """One legacy resource asked for by one container."""

    kind: ContainerKind
    index: int
    container: str
    resource: str
    count: int
    rule: ResourceRule
    profile: str


@dataclass(slots=True)
class PlannedRequest:
    name: str
    resource: str
    rule: ResourceRule
    profile: str
    count: int


# The largest count the API server accepts for an extended resource (a Quantity as int64).
MAX_COUNT: Final = 2**63 - 1
_ASCII_DIGITS: Final = re.compile(r"[0-9]{1,19}")


def parse_count(value: Any) -> int | None:
    """A whole number of devices: a JSON integer or a string of ASCII digits; -1: too large.

    `str.isdigit` would accept other scripts' digits ('٣'), which the API server refuses.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value < 0 else (value if value <= MAX_COUNT else -1)
    if isinstance(value, str):
        if _ASCII_DIGITS.fullmatch(value):
            count = int(value)
            return count if count <= MAX_COUNT else -1
        if value.isascii() and value.isdigit():
            return -1  # 20 digits or more
    return None


def collect_demands(spec: Mapping[str, Any], policy: Policy, who: str) -> list[Demand]:
    demands = []
    for ref in dra.pod_containers(spec):
        kind, index, container = ref.kind, ref.index, ref.container
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        name = container.get("name", f"#{index}")
        field_base = f"spec.{dra.LIST_OF_KIND[kind]}[{index}].resources"
        for resource in sorted(set(limits) | set(requests)):
            match = policy.resource_rule(resource)
            if match is None:
                continue
            section = "limits" if resource in limits else "requests"
            raw = limits.get(resource, requests.get(resource))
            count = parse_count(raw)
            if count is None:
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.{section}["{resource}"] is '
                    f"{shown(raw)}; it must be a whole number of devices (0 or more)"
                )
            if count < 0 or (resource in requests and parse_count(requests[resource]) == -1):
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.{section}["{resource}"] is '
                    f"{shown(raw)}; larger than the API server accepts (at most {MAX_COUNT})"
                )
            if (
                resource in limits
                and resource in requests
                and parse_count(requests[resource]) != count
            ):
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.requests["{resource}"] '
                    f"({shown(requests[resource])}) differs from the limit ({shown(limits[resource])}); "
                    "GPUs cannot be overcommitted, so set them equal or keep only the limit"
                )
            demands.append(Demand(kind, index, name, resource, count, *match))
    return demands


def plan_requests(
    demands: list[Demand], *, shared: bool
) -> tuple[list[PlannedRequest], References]:
    """Decide the claim's requests and which of them each container uses, per resource."""
    planned: list[PlannedRequest] = []
    references: References = {}
    taken: set[str] = set()

    def new_request(base: str, demand: Demand, count: int) -> PlannedRequest:
        request = PlannedRequest(
            unique_label(base, taken), demand.resource, demand.rule, demand.profile, count
        )
        taken.add(request.name)
        planned.append(request)
        return request

    def refer(demand: Demand, name: str) -> None:
        names = references.setdefault((demand.kind, demand.index, demand.resource), [])
        if name not in names:
            names.append(name)

    def split(
        segments: list[tuple[PlannedRequest, Demand]], cuts: set[int]
    ) -> list[tuple[str, int]]:
        """Lay the requests end to end, split any that a cut falls inside (the owner keeps
        every piece), and return each piece's name with the offset where it ends."""
        ends: list[tuple[str, int]] = []
        start = 0
        for request, owner in segments:
            end = start + request.count
            bounds = [start, *sorted(c for c in cuts if start < c < end), end]
            request.count = bounds[1] - bounds[0]
            ends.append((request.name, bounds[1]))
            previous = request
            for low, high in itertools.pairwise(bounds[1:]):
                piece = new_request(request.name, owner, high - low)
                planned.remove(piece)
                planned.insert(planned.index(previous) + 1, piece)
                refer(owner, piece.name)
                ends.append((piece.name, high))
                previous = piece
            start = end
        return ends

    by_resource: dict[str, list[Demand]] = {}
    for demand in demands:
        by_resource.setdefault(demand.resource, []).append(demand)
    # A container asking for several resources names each request after the resource too.
    resources_per_container = Counter((d.kind, d.index) for d in demands)

    for resource, group in by_resource.items():
        if shared:
            request = new_request(resource_label(resource), group[0], max(d.count for d in group))
            for demand in group:
                refer(demand, request.name)
            continue
        apps: list[tuple[PlannedRequest, Demand]] = []
        sidecars: list[tuple[PlannedRequest, Demand]] = []
        for demand in group:
            if demand.kind == "init":
                continue
            base = demand.container
            if resources_per_container[(demand.kind, demand.index)] > 1:
                base = f"{demand.container}-{resource_label(resource)}"
            request = new_request(to_dns_label(base), demand, demand.count)
            refer(demand, request.name)
            (apps if demand.kind == "app" else sidecars).append((request, demand))
        inits = [d for d in group if d.kind == "init"]
        if not inits:
            continue
        # A plain init container runs before the app containers and before the sidecars listed
        # after it start, so it reuses their devices; only what it needs beyond them gets a
        # request of its own (shared by all init containers: they run one at a time).  With the
        # sidecars latest-first after the apps, what an init container may reuse is a prefix.
        line = apps + sidecars[::-1]
        reusable = {
            d.index: sum(r.count for r, _ in apps)
            + sum(r.count for r, s in sidecars if s.index > d.index)
            for d in inits
        }
        excess = {d.index: max(0, d.count - reusable[d.index]) for d in inits}
        extra: list[tuple[PlannedRequest, Demand]] = []
        if any(excess.values()):
            largest = max(inits, key=lambda d: excess[d.index])
            extra = [
                (
                    new_request(to_dns_label(largest.container), largest, excess[largest.index]),
                    largest,
                )
            ]
        # Cut requests where an init container's share ends, so it sees exactly its count.
        line_ends = split(line, {min(d.count, reusable[d.index]) for d in inits})
        extra_ends = split(extra, set(excess.values()))
        for demand in inits:
            for name, end in line_ends:
                if end <= min(demand.count, reusable[demand.index]):
                    refer(demand, name)
            for name, end in extra_ends:
                if end <= excess[demand.index]:
                    refer(demand, name)
    return planned, references


def resource_label(resource: str) -> str:
    """`nvidia.com/gpu` -> `gpu`, `nvidia.com/mig-1g.10gb` -> `mig-1g-10gb`."""
    return to_dns_label(resource.split("/", 1)[-1])


def check_largest(demands: list[Demand], rules: SharingRules, who: str) -> None:
    """Before planning: no way of sharing gives a pod fewer devices than its largest demand.

    Denying here keeps planning proportional to the pod (counts are at most 32 past this).
    """
    largest = max(demands, key=lambda d: d.count, default=None)
    if largest is not None and largest.count > min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM):
        check_limits(
            [
                PlannedRequest(
                    to_dns_label(largest.container),
                    largest.resource,
                    largest.rule,
                    largest.profile,
                    largest.count,
                )
            ],
            rules,
            who,
            total=largest.count,
        )


def check_limits(
    planned: list[PlannedRequest], rules: SharingRules, who: str, *, total: int
) -> None:
    """The policy's maxGPUsPerPod first (it is what the pod's author can act on), then DRA's;
    `total` is the pod's count (dracore.demand), which the planned requests add up to."""
    too_big = [r for r in planned if r.count > MAX_DEVICES_PER_CLAIM]
    dra_limit = "".join(
        f"; request {r.name} asks for {r.count} {r.resource}, and DRA allocates at most "
        f"{MAX_DEVICES_PER_CLAIM} devices per request"
        for r in too_big[:1]
    )
    limit = min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM)
    if total > limit:
        source = (
            f"policy maxGPUsPerPod is {rules.max_gpus_per_pod}"
            if limit == rules.max_gpus_per_pod
            else f"DRA allocates at most {MAX_DEVICES_PER_CLAIM} devices per claim"
        )
        raise TranslationError(
            f"{who} needs {total} GPU devices in all; {source}{dra_limit}; ask for fewer, or "
            "split the work across pods"
        )
