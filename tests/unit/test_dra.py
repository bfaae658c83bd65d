"""The shared DRA readers (dracore/dra.py), table-driven on plain dicts."""

from __future__ import annotations

from typing import Any

import pytest

from dracore import dra
from dracore.policy import Policy


def _pod_spec() -> dict[str, Any]:
    return {
        "initContainers": [
            {"name": "setup"},
            {"name": "proxy", "restartPolicy": "Always"},
            "not an object",
        ],
        "containers": [{"name": "main"}, {}],
        "ephemeralContainers": [{"name": "debug"}],
    }


def test_containers_in_start_order_with_kind_and_path() -> None:
    found = [(c.kind, c.path, c.name) for c in dra.pod_containers(_pod_spec())]
    assert found == [
        ("init", "initContainers[0]", "setup"),
        ("sidecar", "initContainers[1]", "proxy"),
        ("app", "containers[0]", "main"),
        ("app", "containers[1]", "#1"),
    ]


def test_ephemeral_containers_only_when_asked() -> None:
    kinds = [c.kind for c in dra.pod_containers(_pod_spec(), ephemeral=True)]
    assert kinds[-1] == "ephemeral"
    assert len(kinds) == 5


def test_container_refs_are_the_live_dicts() -> None:
    spec = _pod_spec()
    next(iter(dra.pod_containers(spec))).container["image"] = "x"
    assert spec["initContainers"][0]["image"] == "x"


@pytest.mark.parametrize(
    ("spec", "containers"),
    [({"containers": "no"}, []), ({"initContainers": {"a": 1}}, []), ({}, [])],
)
def test_containers_of_malformed_specs_read_as_none(
    spec: dict[str, Any], containers: list[Any]
) -> None:
    assert list(dra.pod_containers(spec)) == containers


def test_legacy_resources_ask_the_policy() -> None:
    policy = Policy.from_mapping(
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {"resources": [{"name": "amd.com/gpu", "deviceClassName": "gpu.amd.com"}]},
        }
    )
    container = {
        "resources": {
            "limits": {"amd.com/gpu": "2", "nvidia.com/gpu": "1", "cpu": "1"},
            "requests": {"amd.com/gpu": "1"},
        }
    }
    # nvidia.com/gpu is not in this policy; the limit wins over the request.
    assert dra.legacy_resources(container, policy) == {"amd.com/gpu": "2"}
    assert dra.legacy_resources(container, Policy.default()) == {"nvidia.com/gpu": "1"}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"name": "a", "exactly": {"deviceClassName": "c"}}, 1),  # API default count
        ({"name": "a", "exactly": {"deviceClassName": "c", "count": 4}}, 4),
        ({"name": "a", "exactly": {"allocationMode": "All"}}, None),
        ({"name": "a", "exactly": {"count": "4"}}, 0),  # not a number: refused by the API
        ({"name": "a", "exactly": {"count": True}}, 0),
        # firstAvailable: one alternative is allocated, so the largest bounds the allocation.
        ({"name": "a", "firstAvailable": [{"count": 2}, {"count": 8}, {"count": 1}]}, 8),
        ({"name": "a", "firstAvailable": [{"count": 2}, {"allocationMode": "All"}]}, None),
        ({"name": "a", "deviceClassName": "c", "count": 3}, 3),  # v1beta1 shape
    ],
)
def test_request_device_count(request_: dict[str, Any], expected: int | None) -> None:
    assert dra.request_device_count(request_) == expected


def test_claim_device_count_adds_requests() -> None:
    claim = {
        "spec": {
            "devices": {
                "requests": [
                    {"name": "a", "exactly": {"count": 3}},
                    {"name": "b", "firstAvailable": [{"count": 1}, {"count": 5}]},
                    "junk",
                ]
            }
        }
    }
    assert dra.claim_device_count(claim) == 8
    assert dra.claim_device_count({"spec": "junk"}) == 0


def _slice(
    pool: str, generation: Any, devices: list[str], node: str | None = "n1"
) -> dict[str, Any]:
    return {
        "spec": {
            "driver": "gpu.nvidia.com",
            "pool": {"name": pool, "generation": generation},
            **({"nodeName": node} if node else {}),
            "devices": [{"name": d} for d in devices],
        }
    }


def test_only_the_newest_generation_of_each_pool() -> None:
    slices = [
        _slice("p1", 1, ["old-0"]),
        _slice("p1", 2, ["gpu-0", "gpu-1"]),
        _slice("p2", "garbage", ["x-0"], node=None),  # a non-number is generation 0
        "not a slice",
    ]
    found = [(d.pool, d.name, d.node) for d in dra.newest_generation_devices(slices)]  # type: ignore[list-item]
    assert found == [("p1", "gpu-0", "n1"), ("p1", "gpu-1", "n1"), ("p2", "x-0", None)]


@pytest.mark.parametrize(
    ("obj", "kind", "namespace", "expected"),
    [
        ({"kind": "Pod", "metadata": {"name": "a", "namespace": "ml"}}, None, None, 'Pod "ml/a"'),
        ({"metadata": {"generateName": "job-"}}, "pod", "ml", 'pod "ml/job-*"'),
        ({"metadata": "junk"}, None, None, 'object "(unnamed)"'),
        ({"kind": "DeviceClass", "metadata": {"name": "gpu"}}, None, None, 'DeviceClass "gpu"'),
    ],
)
def test_describe_object(
    obj: dict[str, Any], kind: str | None, namespace: str | None, expected: str
) -> None:
    assert dra.describe_object(obj, kind=kind, namespace=namespace) == expected


def test_object_ref() -> None:
    assert (
        dra.object_ref({"kind": "ResourceClaim", "metadata": {"name": "c", "namespace": "ml"}})
        == "ResourceClaim/ml/c"
    )
    assert dra.object_ref({"metadata": {"generateName": "x-"}}) == "Object/x-*"


@pytest.mark.parametrize(
    ("pod", "problem"),
    [
        (
            {"spec": {"containers": [{"name": "a", "resources": {"limits": {1: 2}}}]}},
            "spec.containers[0].resources.limits: key 1 is int, not a string; quote it",
        ),
        (
            {"spec": {"initContainers": [{"name": "a", "resources": {"requests": {None: 1}}}]}},
            "spec.initContainers[0].resources.requests: key null is NoneType, not a string",
        ),
        (
            {"metadata": {"labels": {True: "x"}}, "spec": {}},
            "metadata.labels: key true is bool, not a string",
        ),
        ({"spec": {"nodeSelector": {(1, 2): "x"}}}, "spec.nodeSelector: key "),
    ],
    ids=["limits-int", "requests-null", "label-bool", "node-selector-tuple"],
)
def test_keys_that_are_not_strings_are_a_shape_problem(pod: dict[Any, Any], problem: str) -> None:
    found = dra.pod_shape_problem(pod)
    assert found is not None and found.startswith(problem), found
