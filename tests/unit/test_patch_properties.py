"""The review's JSON Patch (dracore.patch): correct on random pods and linear on hostile ones."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from dracore.patch import make_patch
from dracore.translate import translate
from tests.builders import container, make_pod, make_policy

POLICY = make_policy(maxGPUsPerPod=32, nodeSelectors="Translate", podSharing="Allowed")
GPU_LABELS = ["nvidia.com/gpu.product", "nvidia.com/gpu.memory", "nvidia.com/gpu.family"]
OTHER_LABELS = ["zone", "kubernetes.io/arch", "nvidia.com/gpu.count"]

labels = st.sampled_from(GPU_LABELS + OTHER_LABELS)
expressions = st.builds(
    lambda key, operator, value: {"key": key, "operator": operator, "values": [value]},
    labels,
    st.sampled_from(["In", "NotIn"]),
    st.sampled_from(["NVIDIA-A100", "81920", "hopper", "a"]),
)


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    apps = [
        container(f"app-{i}", gpus=draw(st.integers(0, 2))) for i in range(draw(st.integers(1, 3)))
    ]
    for app in apps:
        if draw(st.booleans()):
            app["env"] = [{"name": "A", "value": "1"}]
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(
            st.dictionaries(labels, st.sampled_from(["x", "1"]), max_size=3)
        )
    terms = draw(st.lists(st.lists(expressions, max_size=6), max_size=2))
    if terms:
        required = {"nodeSelectorTerms": [{"matchExpressions": t} for t in terms]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
        }
    if draw(st.booleans()):
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    annotations = draw(st.sampled_from([None, {"kubectl-dra.io/pod-sharing": "true"}]))
    return make_pod(*apps, annotations=annotations, **spec)


@settings(max_examples=150, deadline=None)
@given(pods())
def test_patch_turns_the_pod_into_its_rewrite_as_a_general_diff_does(pod: dict[str, Any]) -> None:
    before = copy.deepcopy(pod)
    rewritten = translate(pod, policy=POLICY, namespace="ml").pod
    operations = make_patch(pod, rewritten)
    assert jsonpatch.apply_patch(pod, operations) == rewritten
    assert jsonpatch.apply_patch(pod, jsonpatch.make_patch(pod, rewritten).patch) == rewritten
    assert pod == before  # neither the rewrite nor the patch touched the input
    assert all(op["op"] in ("add", "remove", "replace") for op in operations)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b", "~/"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b/c", "~0", ""]), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_patch_turns_any_document_into_any_other(old: Any, new: Any) -> None:
    operations = make_patch(old, new)
    assert jsonpatch.apply_patch(copy.deepcopy(old), operations) == new
    assert (operations == []) == (old == new)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=12), st.data())
def test_a_list_that_only_lost_or_gained_members_is_patched_member_by_member(
    members: list[str], data: st.DataObject
) -> None:
    kept = [m for m in members if data.draw(st.booleans())]
    removed = make_patch({"l": members}, {"l": kept})
    assert [op["op"] for op in removed] == ["remove"] * (len(members) - len(kept))
    assert jsonpatch.apply_patch({"l": members}, removed) == {"l": kept}
    added = make_patch({"l": kept}, {"l": members})
    assert [op["op"] for op in added] == ["add"] * (len(members) - len(kept))
    assert jsonpatch.apply_patch({"l": kept}, added) == {"l": members}


# --- hostile shapes ----------------------------------------------------------------------------


def alternating_affinity_pod(units: int) -> dict[str, Any]:
    """One term alternating a repeated key with a GPU label: the rewrite drops every other one."""
    expressions: list[dict[str, Any]] = []
    for _ in range(units):
        expressions.append({"key": "zone", "operator": "In", "values": ["a"]})
        expressions.append(
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100"]}
        )
    required = {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
    return make_pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )


def calls_made(func: Callable[[], object]) -> int:
    """How many Python and C functions `func` calls: a measure of work that no clock disturbs."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        func()
    finally:
        sys.setprofile(None)
    return count


def test_patch_of_alternating_affinity_grows_linearly_with_the_pod() -> None:
    work = {}
    for units in (100, 200):
        pod = alternating_affinity_pod(units)
        rewritten = translate(pod, policy=POLICY, namespace="ml").pod
        operations = make_patch(pod, rewritten)
        assert jsonpatch.apply_patch(pod, operations) == rewritten
        removed = [op for op in operations if "matchExpressions" in op["path"]]
        # Every GPU expression goes, one remove each, last first.
        gpu_paths = [
            f"/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
            f"/nodeSelectorTerms/0/matchExpressions/{i}"
            for i in range(2 * units - 1, 0, -2)
        ]
        assert [op["path"] for op in removed] == gpu_paths
        work[units] = calls_made(lambda pod=pod, rewritten=rewritten: make_patch(pod, rewritten))
    # Twice the pod, at most a little over twice the work (a general diff: about 7 times).
    assert work[200] <= 2.2 * work[100], work
