"""The in-process route as Python: which pods it renames, to what, and which it denies.

`InProcessRoute` is what `compile_route` (dracore.admission_policies.compile) returns: the
manifests, and the same decisions as the compiled CEL (`handles`, `apply`, `denial`), which the
unit tests compare with the webhook's rewrite and the e2e tests with the API server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dracore.classes import IMPLICIT_PREFIX
from dracore.paths import app_container_asks, rename_for_scheduler, scheduler_problem
from dracore.policy import Policy, SharingRules
from dracore.record import ADMISSION_POLICY_ROUTE

API_VERSION: Final = "admissionregistration.k8s.io/v1"
# Servers that serve MutatingAdmissionPolicy v1 without a feature gate.
IN_PROCESS_FROM: Final = (1, 36)
NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Namespaces labelled so are left alone by the webhook's registration; so they are here.
IGNORE_LABEL: Final = "kubectl-dra.io/ignore"
WEBHOOK_NAMESPACE: Final = "kubectl-dra"
# JSONPatch needs an index per container; CEL has no enumerate, so the indices are a literal
# list. A pod with more app containers than this goes to the webhook.
INDEXED_CONTAINERS: Final = 32
# A count the route handles: what the API server's canonical form of 1..99 looks like.
COUNT_PATTERN: Final = "^[1-9][0-9]?$"
_COUNT = re.compile(COUNT_PATTERN)
DNS_LABEL_PATTERN: Final = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
INT64_MAX: Final = 2**63 - 1


def serves_admission_policies(version: tuple[int, int]) -> bool:
    """Whether this release serves MutatingAdmissionPolicy v1, always on (GA in 1.36)."""
    return version >= IN_PROCESS_FROM


@dataclass(frozen=True, slots=True)
class Scope:
    """One namespace rule of the policy (or its defaults), as the route binds it."""

    key: str  # "defaults" or "namespaces-<i>"
    rules: SharingRules
    names: tuple[str, ...]  # namespaces selected by name (earlier rules' names removed)
    labels: tuple[tuple[str, str], ...]  # namespaces carrying all of these, unless named earlier
    left_out: tuple[str, ...]  # names a labels binding or the defaults binding must skip
    earlier_labels: tuple[tuple[tuple[str, str], ...], ...]  # label rules that win over it
    renames: tuple[tuple[str, str], ...]  # legacy resource -> implicit name, by resource


@dataclass(frozen=True, slots=True)
class Limits:
    """What the webhook needs of a pod in some namespaces, strictest over the rules that may
    apply there when only the namespace's name is known."""

    max_devices: int
    one_gpu_container: bool  # podSharing Always: containers share, which classes cannot
    no_gpu_node_labels: bool  # nodeSelectors Translate/Keep: labels become CEL on the request


@dataclass(frozen=True, slots=True)
class InProcessRoute:
    policy: Policy
    scopes: tuple[Scope, ...]
    names: tuple[str, ...]  # the legacy resources with a class in every scope
    guarded: tuple[str, ...]  # implicit names whose devices count against maxGPUsPerPod
    limits_by_name: tuple[tuple[tuple[str, ...], Limits], ...]
    limits_elsewhere: Limits
    excluded: tuple[str, ...]  # exempt namespaces and the webhook's own
    notes: tuple[str, ...]
    manifests: list[dict[str, Any]] = field(compare=False)

    # --- the same decisions in Python --------------------------------------------------------

    def scope_for(self, namespace: str, labels: Mapping[str, str]) -> Scope | None:
        """The scope whose policies apply in `namespace`; None where the route never applies."""
        if namespace in self.excluded or IGNORE_LABEL in labels:
            return None
        for scope in self.scopes:
            selected = (
                namespace in scope.names
                or (
                    bool(scope.labels)
                    and namespace not in scope.left_out
                    and _has_labels(labels, scope.labels)
                )
                or (scope.key == "defaults" and namespace not in scope.left_out)
            )
            if selected and not any(_has_labels(labels, e) for e in scope.earlier_labels):
                return scope
        return None

    def limits_for(self, namespace: str) -> Limits:
        for names, limits in self.limits_by_name:
            if namespace in names:
                return limits
        return self.limits_elsewhere

    def handles(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> bool:
        """Whether the compiled mutating policy renames this pod (else it reaches the webhook)."""
        if self.policy.mode != "Enforce" or self.scope_for(namespace, labels or {}) is None:
            return False
        return _handled_shape(self, pod, self.limits_for(namespace))

    def apply(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """The pod as the compiled mutating policy leaves it; None if it does not handle it."""
        scope = self.scope_for(namespace, labels or {})
        if scope is None or not self.handles(pod, namespace=namespace, labels=labels):
            return None
        classes = {
            resource: implicit.removeprefix(IMPLICIT_PREFIX) for resource, implicit in scope.renames
        }
        return rename_for_scheduler(
            pod,
            classes={a.resource: classes[a.resource] for a in app_container_asks(pod, self.policy)},
            policy=self.policy,
            rules=scope.rules,
            route=ADMISSION_POLICY_ROUTE,
        )

    def denial(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> str | None:
        """The message the compiled validating policy denies this pod with, or None."""
        scope = self.scope_for(namespace, labels or {})
        if scope is None or self.policy.mode != "Enforce":
            return None
        spec = pod.get("spec") or {}
        counts = [
            _quantity_count(limits[name])
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            for limits in [(container.get("resources") or {}).get("limits") or {}]
            for name in self.guarded
            if name in limits
        ]
        limit = scope.rules.max_gpus_per_pod
        if not counts or (max(counts) <= limit and sum(counts) <= limit):
            return None
        needed = max(counts) if max(counts) > limit else sum(counts)
        metadata = pod.get("metadata") or {}
        where = metadata.get("namespace") or namespace
        name = metadata.get("name") or (
            f"{metadata['generateName']}*" if metadata.get("generateName") else "(unnamed)"
        )
        return limit_message(f'pod "{where}/{name}"', str(needed), limit)


def limit_message(who: str, needed: str, limit: int) -> str:
    """dracore.translate's wording for a pod over maxGPUsPerPod."""
    return (
        f"{who} needs {needed} GPU devices in all; policy maxGPUsPerPod is {limit}; "
        "ask for fewer, or split the work across pods"
    )


def _has_labels(labels: Mapping[str, str], wanted: Iterable[tuple[str, str]]) -> bool:
    wanted = tuple(wanted)
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted)


def _quantity_count(value: Any) -> int:
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else INT64_MAX


def _handled_shape(route: InProcessRoute, pod: Mapping[str, Any], limits: Limits) -> bool:
    """The scheduler's path takes the pod (dracore.paths), and so can the compiled CEL: few
    enough indexed containers, canonical counts, container names it can compare."""
    problem = scheduler_problem(
        pod,
        route.policy,
        served=route.names,
        one_gpu_container=limits.one_gpu_container,
        no_gpu_node_labels=limits.no_gpu_node_labels,
    )
    if problem is not None:
        return False
    containers = (pod.get("spec") or {}).get("containers") or []
    if len(containers) > INDEXED_CONTAINERS:
        return False
    asks = list(app_container_asks(pod, route.policy))
    if any(not isinstance(a.value, str) or not _COUNT.match(a.value) for a in asks):
        return False
    if any(not _DNS_LABEL.match(a.container) for a in asks):
        return False
    return sum(int(a.value) for a in asks) <= limits.max_devices
