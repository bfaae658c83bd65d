"""Invariants of the rewrite over random pod shapes (hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dracore import patch
from dracore.errors import TranslationError
from dracore.translate import translate
from tests.builders import assert_valid, make_pod, make_policy

RESOURCES = ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb"]
POLICY = make_policy(maxGPUsPerPod=32)


@st.composite
def containers(draw: Any, prefix: str, sidecar: bool = False) -> list[dict[str, Any]]:
    result = []
    for i in range(draw(st.integers(0 if prefix != "app" else 1, 3))):
        c: dict[str, Any] = {"name": f"{prefix}-{i}", "image": "x"}
        gpus = draw(st.dictionaries(st.sampled_from(RESOURCES), st.integers(0, 3), max_size=2))
        if gpus:
            c["resources"] = {"limits": dict(gpus)}
        if sidecar:
            c["restartPolicy"] = "Always"
        result.append(c)
    return result


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    # Any order: an init container before a sidecar may reuse its devices, one after may not.
    init = draw(st.permutations(draw(containers("init")) + draw(containers("side", sidecar=True))))
    return make_pod(*draw(containers("app")), init=init or None)


def demand(containers: list[dict[str, Any]], resource: str) -> list[int]:
    return [
        int(((c.get("resources") or {}).get("limits") or {}).get(resource, 0)) for c in containers
    ]


OVER_LIMIT = make_pod(
    *(
        {
            "name": f"app-{i}",
            "image": "x",
            "resources": {"limits": {"nvidia.com/gpu": 3, "nvidia.com/gpu.shared": 3}},
        }
        for i in range(3)
    ),
    init=[
        {
            "name": f"side-{i}",
            "image": "x",
            "restartPolicy": "Always",
            "resources": {"limits": {"nvidia.com/gpu": 3, "nvidia.com/mig-1g.10gb": 3}},
        }
        for i in range(3)
    ],
)


@settings(max_examples=60, deadline=None)
@example(OVER_LIMIT)  # 36 devices: always exercise the denial
@given(pods())
def test_rewrite_keeps_device_plugin_totals_and_is_idempotent(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    inits = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") != "Always"]
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    # The scheduler's count, per resource: max(apps + sidecars, max over plain init containers
    # of (init + the sidecars listed before it, which run alongside it)).
    order = spec.get("initContainers", [])
    expected = {
        resource: max(
            [
                sum(demand(spec["containers"], resource)) + sum(demand(sidecars, resource)),
                *(
                    demand([c], resource)[0]
                    + sum(demand([s for s in order[: order.index(c)] if s in sidecars], resource))
                    for c in inits
                ),
            ]
        )
        for resource in RESOURCES
    }
    if sum(expected.values()) > 32:
        with pytest.raises(
            TranslationError, match=f"needs {sum(expected.values())} GPU devices in all"
        ):
            translate(pod, policy=POLICY, namespace="ml")
        return
    original = copy.deepcopy(pod)
    result = translate(pod, policy=POLICY, namespace="ml")
    assert pod == original, "translate must not modify its input"
    # The webhook's patch, diffed from the input and a rewrite that shares its unchanged parts,
    # turns the input into the rewrite.
    assert jsonpatch.apply_patch(pod, patch.make_patch(pod, result.pod)) == result.pod
    assert_valid(result.pod, *result.templates)
    assert translate(result.pod, policy=POLICY, namespace="ml").changed is False
    if not result.changed:
        assert result.pod == pod and result.reason == "no legacy GPU resources"
        return

    requests = (
        {
            r["name"]: r["exactly"]
            for r in result.templates[0]["spec"]["spec"]["devices"]["requests"]
        }
        if result.templates
        else {}
    )
    record = json.loads(result.pod["metadata"]["annotations"]["kubectl-dra.io/rewritten"])
    for resource in RESOURCES:
        names = {
            n
            for c in record["containers"]
            if c["resource"] == resource
            for n in c.get("requests", [])
        }
        assert sum(requests[n]["count"] for n in names) == expected[resource]
    # Every container sees exactly the devices it asked for, no more.
    for c in record["containers"]:
        if c["count"]:
            assert sum(requests[n]["count"] for n in c["requests"]) == c["count"], c

    new_spec = result.pod["spec"]
    for c in new_spec["containers"] + new_spec.get("initContainers", []):
        limits = (c.get("resources") or {}).get("limits") or {}
        assert not set(limits) & set(RESOURCES), "legacy resources must be gone"
        for ref in (c.get("resources") or {}).get("claims", []):
            assert ref["request"] in requests
