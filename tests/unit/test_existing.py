"""An object found under the name the webhook needs is used only if it is what the pod needs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dracore.existing import shared_claim_difference, template_difference
from dracore.translate import SHARED_CLAIM_ANNOTATION, translate
from tests.builders import container, make_pod, make_policy

SELECTOR = 'device.attributes["gpu.nvidia.com"].productName == "H100"'
POLICY = make_policy(
    sharedClaims="Allowed",
    maxGPUsPerPod=4,
    resources=[
        {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com", "selector": SELECTOR}
    ],
)


def wanted_claim(gpus: int = 1) -> dict[str, Any]:
    pod = make_pod(container("app", gpus=gpus), annotations={SHARED_CLAIM_ANNOTATION: "team"})
    (claim,) = translate(pod, policy=POLICY, namespace="ml").shared_claims
    return claim


def wanted_template() -> dict[str, Any]:
    (template,) = translate(
        make_pod(container("app", gpus=2)), policy=POLICY, namespace="ml"
    ).templates
    return template


def _exactly(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    spec = obj["spec"]["spec"] if obj["kind"] == "ResourceClaimTemplate" else obj["spec"]
    exactly: dict[str, Any] = spec["devices"]["requests"][index]["exactly"]
    return exactly


def test_a_template_as_the_api_serves_it_fits() -> None:
    served = copy.deepcopy(wanted_template())
    served["metadata"].update(uid="u", resourceVersion="1", creationTimestamp="t")
    # The API server leaves out empty and false fields and writes defaults.
    _exactly(served).pop("allocationMode")
    _exactly(served)["adminAccess"] = False
    assert template_difference(served, wanted_template()) is None


def test_a_template_with_another_selector_is_refused_naming_the_request() -> None:
    squat = copy.deepcopy(wanted_template())
    _exactly(squat)["selectors"] = [{"cel": {"expression": "false"}}]
    difference = template_difference(squat, wanted_template())
    assert difference is not None
    assert difference.startswith('request "app" is ')
    assert '"false"' in difference.replace('\\"', '"')


def test_a_template_with_another_request_count_is_refused() -> None:
    squat = copy.deepcopy(wanted_template())
    squat["spec"]["spec"]["devices"]["requests"].append(
        {"name": "more", "exactly": {"deviceClassName": "x"}}
    )
    assert template_difference(squat, wanted_template()) == "has 2 request(s), this pod needs 1"


def _edit(change: str) -> dict[str, Any]:
    claim = copy.deepcopy(wanted_claim(2))
    devices = claim["spec"]["devices"]
    exactly = devices["requests"][0]["exactly"]
    if change == "selector":
        exactly["selectors"] = [{"cel": {"expression": "false"}}]
    elif change == "no selector":
        exactly.pop("selectors")
    elif change == "admin":
        exactly["adminAccess"] = True
    elif change == "config":
        devices["config"] = [{"opaque": {"driver": "gpu.nvidia.com", "parameters": {"x": 1}}}]
    elif change == "extra request":
        devices["requests"].append(
            {"name": "more", "exactly": {"deviceClassName": "gpu.nvidia.com"}}
        )
    elif change == "constraints":
        devices["constraints"] = [{"matchAttribute": "gpu.nvidia.com/uuid"}]
    elif change == "too many":
        exactly["count"] = 32
    elif change == "all":
        exactly.pop("count")
        exactly["allocationMode"] = "All"
    elif change == "first available":
        devices["requests"][0] = {"name": "gpu", "firstAvailable": [{"name": "a", **exactly}]}
    return claim


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ("selector", 'request "gpu" asks for'),
        ("no selector", 'request "gpu" asks for'),  # fewer selectors would bypass the policy's
        ("admin", 'request "gpu" asks for'),
        ("config", 'request "gpu" has driver config'),
        ("extra request", 'also has request(s) "more"'),
        ("constraints", "has device constraints"),
        ("too many", "can hold 32 devices; policy maxGPUsPerPod is 4"),
        ("all", 'request "gpu" asks for'),
        ("first available", "offers class gpu.nvidia.com only as a firstAvailable alternative"),
    ],
)
def test_a_squatted_shared_claim_is_refused_naming_the_difference(change: str, phrase: str) -> None:
    difference = shared_claim_difference(_edit(change), wanted_claim(1), max_devices=4)
    assert difference is not None and difference.startswith(phrase), difference


def test_a_shared_claim_with_room_for_the_pod_fits() -> None:
    # Made by an earlier pod asking for 2: a pod asking for 1 may join it.
    assert shared_claim_difference(wanted_claim(2), wanted_claim(1), max_devices=4) is None


def test_hostile_shapes_are_differences_not_exceptions() -> None:
    for junk in ({"spec": []}, {"spec": {"devices": {"requests": ["x", 3]}}}, {}):
        assert shared_claim_difference(junk, wanted_claim(1)) is not None
        assert template_difference(junk, wanted_template()) is not None
