"""The one count of devices (dracore/demand.py): against a timeline of the pod's life, against the
webhook's own claims, and where pods can go."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dracore import demand
from dracore.dra import ContainerKind
from dracore.translate import translate
from tests.builders import make_pod, make_policy

KINDS: list[ContainerKind] = ["init", "sidecar", "app"]
RESOURCES = ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]


def peak_on_timeline(containers: list[tuple[ContainerKind, int]]) -> int:
    """What the node sees, step by step: each init container runs alone beside the sidecars
    already started; then the app containers run beside every sidecar."""
    running_sidecars: list[int] = []
    moments: list[int] = []
    for kind, count in containers:
        if kind == "init":
            moments.append(count + sum(running_sidecars))
        elif kind == "sidecar":
            running_sidecars.append(count)
            moments.append(sum(running_sidecars))
    moments.append(sum(running_sidecars) + sum(c for k, c in containers if k == "app"))
    return max(moments)


def in_start_order(containers: list[tuple[ContainerKind, int]]) -> list[tuple[ContainerKind, int]]:
    return [c for c in containers if c[0] != "app"] + [c for c in containers if c[0] == "app"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 40)), max_size=12))
def test_pod_count_is_the_peak_of_the_pods_timeline(
    containers: list[tuple[ContainerKind, int]],
) -> None:
    ordered = in_start_order(containers)
    assert demand.pod_device_count(ordered) == peak_on_timeline(ordered)


def test_gpu_sidecar_before_a_plain_init_container_runs_beside_it() -> None:
    # 1 sidecar GPU + the init container's 2, while the app containers need 1 + 1.
    assert demand.pod_device_count([("sidecar", 1), ("init", 2), ("app", 1)]) == 3
    # Listed after the init container, the sidecar has not started when it runs.
    assert demand.pod_device_count([("init", 2), ("sidecar", 1), ("app", 1)]) == 2


def _container(name: str, resources: dict[str, int], *, sidecar: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "x"}
    if resources:
        c["resources"] = {"limits": resources}
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


@st.composite
def gpu_pods(draw: Any) -> dict[str, Any]:
    gpus = st.dictionaries(st.sampled_from(RESOURCES), st.integers(0, 3), max_size=2)
    inits = [
        _container(f"init-{i}", draw(gpus), sidecar=draw(st.booleans()))
        for i in range(draw(st.integers(0, 4)))
    ]
    apps = [_container(f"app-{i}", draw(gpus)) for i in range(draw(st.integers(1, 3)))]
    return make_pod(*apps, init=inits or None)


@settings(max_examples=80, deadline=None)
@given(gpu_pods(), st.booleans())
def test_audit_demand_is_the_webhooks_claim(pod: dict[str, Any], shared: bool) -> None:
    """What audit counts for a pod is what the webhook's claim asks for, request by request."""
    policy = make_policy(maxGPUsPerPod=32, podSharing="Always" if shared else "Disabled")
    result = translate(pod, policy=policy, namespace="ml")
    asked = sum(
        r["exactly"]["count"]
        for t in result.templates
        for r in t["spec"]["spec"]["devices"]["requests"]
    )
    per_resource = demand.pod_demand(pod["spec"], lambda name: name in RESOURCES)
    if not shared:
        assert asked == sum(per_resource.values())
    containers = [
        (resource, kind, count)
        for kind, c in [
            ("sidecar" if c.get("restartPolicy") else "init", c)
            for c in pod["spec"].get("initContainers", [])
        ]
        + [("app", c) for c in pod["spec"]["containers"]]
        for resource, count in ((c.get("resources") or {}).get("limits") or {}).items()
        if count
    ]
    assert asked == demand.claim_device_count(containers, shared=shared)


@pytest.mark.parametrize(
    ("value", "count"),
    [(2, 2), ("3", 3), (-1, 0), ("1.5", 0), (True, 0), ("٣", 0), ("9" * 30, 0), (None, 0)],
)
def test_only_whole_device_counts_are_counted(value: Any, count: int) -> None:
    assert demand.whole_count(value) == count


def test_a_shared_claim_is_counted_once_whatever_its_consumers() -> None:
    uses = [
        demand.ClaimUse(devices=2, consumers=5, shared=("ml", "team")),
        demand.ClaimUse(devices=2, consumers=3, shared=("ml", "team")),
        demand.ClaimUse(devices=1, consumers=4),
        demand.ClaimUse(devices=2, consumers=1, shared=("other", "team")),
        demand.ClaimUse(devices=9, consumers=0),
    ]
    assert demand.devices_taken(uses) == 2 + 4 + 2


def node(name: str, *, advertised: Any = None, **labels: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "labels": labels}}
    if advertised is not None:
        obj["status"] = {"allocatable": {"nvidia.com/gpu": advertised, "cpu": "8"}}
    return obj


def bound_pod(node_name: str, gpus: int, *, phase: str = "Running") -> dict[str, Any]:
    pod = make_pod(_container("main", {"nvidia.com/gpu": gpus}))
    pod["spec"]["nodeName"] = node_name
    pod["status"] = {"phase": phase}
    return pod


def test_device_plugin_holds_what_running_pods_on_advertising_nodes_ask_for() -> None:
    nodes = [
        node("a", advertised="4"),
        node("b", advertised="0"),
        node("c"),
        node("d", advertised=2),
    ]
    pods = [
        bound_pod("a", 1),
        bound_pod("a", 2),
        bound_pod("a", 3, phase="Succeeded"),
        bound_pod("b", 1),  # b no longer advertises GPUs: DRA owns them
        bound_pod("c", 1),
        bound_pod("d", 2),
        bound_pod("d", 2),  # more than advertised: at most what the node has
    ]
    assert demand.plugin_held_gpus(nodes, pods) == {"a": 3, "d": 2}


AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]},
            ]
        }
    }
}


@pytest.mark.parametrize(
    ("spec", "target", "accepted"),
    [
        ({}, node("n1"), True),
        ({"nodeSelector": {"pool": "gpu"}}, node("n1", pool="gpu"), True),
        ({"nodeSelector": {"pool": "gpu"}}, node("n1", pool="cpu"), False),
        ({"affinity": AFFINITY}, node("n1", zone="b"), True),
        ({"affinity": AFFINITY}, node("n1", zone="c"), False),
        ({"affinity": AFFINITY}, node("n9"), True),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "gpus", "operator": "Gt", "values": ["4"]},
                                        {"key": "old", "operator": "DoesNotExist"},
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            node("n1", gpus="8"),
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "gpus", "operator": "Lt", "values": ["4"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            node("n1", gpus="8"),
            False,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{}]
                        }
                    }
                }
            },
            node("n1"),
            False,
        ),
    ],
)
def test_node_accepts_pod_by_selector_and_required_affinity(
    spec: dict[str, Any], target: dict[str, Any], accepted: bool
) -> None:
    assert demand.node_accepts(spec, target) is accepted
    assert demand.node_accepts(demand.placement(spec), target) is accepted
