"""Which reviews the event loop may decide itself: those whose work is small and known.

A review decided on the loop holds up every other connection of the worker for as long as it
takes, so only reviews with a small bound qualify. Bytes alone are not that bound: 32 KiB of
JSON can be 1,000 environment variables or node-affinity values, each of which the rewrite and
the JSON Patch walk. `review_work` counts, in one cheap pass over the lists' lengths (it never
descends into values), the items the decision visits; above `INLINE_WORK_UNITS` the review goes
to a thread like a large one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from dracore.admission_review import AdmissionRequest

# 1-GPU reviews are about 1.5 KiB; a pod with many containers and its managedFields 10-20 KiB.
INLINE_REVIEW_BYTES: Final = 32 * 1024
# Measured with bench/inline_budget.py (2 shared cores under load): an environment variable,
# a node-affinity value or another list item adds about 3 us to the decision, a container about
# 25 us (it is copied and rewritten), so a container counts CONTAINER_UNITS. A one-container
# GPU pod counts about 15 units; a review at the budget holds the loop for 1-1.5 ms.
CONTAINER_UNITS: Final = 10
INLINE_WORK_UNITS: Final = 400

_CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")
_CONTAINER_ITEMS: Final = ("env", "envFrom", "ports", "volumeMounts", "volumeDevices", "args")
_POD_ITEMS: Final = (
    "volumes",
    "tolerations",
    "resourceClaims",
    "imagePullSecrets",
    "hostAliases",
    "topologySpreadConstraints",
    "nodeSelector",
)


def _size(value: object) -> int:
    return len(value) if isinstance(value, (list, dict)) else 0


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _selector_terms(terms: object) -> int:
    units = 0
    for term in _items(terms):
        units += 1
        if not isinstance(term, Mapping):
            continue
        for key in ("matchExpressions", "matchFields"):
            for expression in _items(term.get(key)):
                units += 1 + (
                    _size(expression.get("values")) if isinstance(expression, Mapping) else 0
                )
    return units


def _affinity(affinity: object) -> int:
    if not isinstance(affinity, Mapping):
        return 0
    units = 0
    node = affinity.get("nodeAffinity")
    if isinstance(node, Mapping):
        required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(required, Mapping):
            units += _selector_terms(required.get("nodeSelectorTerms"))
        preferred = _items(node.get("preferredDuringSchedulingIgnoredDuringExecution"))
        units += _selector_terms([p.get("preference") for p in preferred if isinstance(p, Mapping)])
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind)
        if isinstance(terms, Mapping):
            units += sum(_size(list_) for list_ in terms.values())
    return units


def _pod_work(pod: Mapping[str, Any] | None) -> int:
    if not isinstance(pod, Mapping):
        return 0
    metadata = pod.get("metadata")
    units = 1
    if isinstance(metadata, Mapping):
        units += _size(metadata.get("labels")) + _size(metadata.get("annotations"))
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return units
    for key in _CONTAINER_LISTS:
        for container in _items(spec.get(key)):
            units += CONTAINER_UNITS
            if not isinstance(container, Mapping):
                continue
            units += sum(_size(container.get(item)) for item in _CONTAINER_ITEMS)
            resources = container.get("resources")
            if isinstance(resources, Mapping):
                units += sum(_size(resources.get(k)) for k in ("limits", "requests", "claims"))
    units += sum(_size(spec.get(item)) for item in _POD_ITEMS)
    return units + _affinity(spec.get("affinity"))


def review_work(request: AdmissionRequest) -> int:
    """Units of work deciding `request` takes: the items of the pod (and its old copy) walked."""
    return _pod_work(request.object) + _pod_work(request.old_object)
