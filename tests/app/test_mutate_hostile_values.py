"""Hostile values through the webhook's HTTP layer: a denial naming the field, never a 500."""

from __future__ import annotations

import jsonpatch

from dracore import admission_review as review
from tests.app.test_mutate import client_for, post
from tests.builders import make_pod, make_review
from tests.unit.test_patch_properties import alternating_affinity_pod


def affinity_pod(key: str, operator: str, value: str) -> dict[str, object]:
    expression = {"key": key, "operator": operator, "values": [value]}
    required = {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}
    return make_pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )


def test_a_gt_of_thousands_of_digits_on_a_gpu_label_is_denied_not_an_error() -> None:
    pod = affinity_pod("nvidia.com/gpu.memory", "Gt", "9" * 5000)
    response = post(client_for(), make_review(pod))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert "nodeSelectorTerms[0].matchExpressions[0] (nvidia.com/gpu.memory Gt)" in message
    assert "fits in 64 bits" in message and len(message) < 400


def test_a_long_alternating_affinity_is_patched_into_its_rewrite() -> None:
    pod = alternating_affinity_pod(2000)  # about 250 KiB
    response = post(client_for(), make_review(pod))
    assert response["allowed"] is True
    patched = jsonpatch.apply_patch(pod, review.decode_patch({"response": response}))
    expressions = patched["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]["matchExpressions"]
    assert [e["key"] for e in expressions] == ["zone"] * 2000
    assert patched["spec"]["resourceClaims"][0]["resourceClaimTemplateName"].startswith(
        "kubectl-dra-"
    )
