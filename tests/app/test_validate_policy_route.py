"""POST /validate-policy: the policy ConfigMap judged by the webhook's loader, through Endpoints."""

from __future__ import annotations

from tests.builders import webhook_client
from tests.unit.test_policy_check import GOOD, admission, configmap


def test_a_broken_policy_configmap_is_denied_with_the_loaders_message() -> None:
    broken = GOOD.replace("Audit", "Enforced") + "  defaults: {maxGPUsPerPod: 40}\n"
    resp = webhook_client().post("/validate-policy", json=admission(configmap(broken)))
    assert resp.status == 200
    answer = resp.json()["response"]
    assert answer["uid"] == "u-1" and answer["allowed"] is False
    message = answer["status"]["message"]
    # Every problem at once, each with its field path, as the reload would log them.
    assert 'spec.mode: "Enforced" is not one of' in message
    assert "spec.defaults.maxGPUsPerPod: 40" in message


def test_a_good_policy_configmap_is_allowed() -> None:
    resp = webhook_client().post("/validate-policy", json=admission(configmap(GOOD)))
    assert resp.status == 200 and resp.json()["response"]["allowed"] is True


def test_a_broken_review_is_a_400_and_other_methods_a_405() -> None:
    client = webhook_client()
    assert client.post("/validate-policy", data=b"{", content_type="application/json").status == 400
    assert client.post("/validate-policy", data=b"{}", content_type="text/plain").status == 400
    not_a_review = client.post("/validate-policy", json={"kind": "AdmissionReview"})
    assert not_a_review.status == 400
    assert client.get("/validate-policy").status == 405
