"""The policy ConfigMap judged at admission by the loader's own rules (webhook/admission/policy_check.py)."""

from __future__ import annotations

from typing import Any

import pytest

from dracore.errors import BadReviewError
from webhook.admission.policy_check import review_policy

GOOD = "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n  mode: Audit\n"


def configmap(policy_yaml: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kubectl-dra-policy", "namespace": "kubectl-dra"},
        "data": {"policy.yaml": policy_yaml},
    }


def admission(obj: dict[str, Any] | None, operation: str = "UPDATE") -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "operation": operation,
        "namespace": "kubectl-dra",
        "name": "kubectl-dra-policy",
    }
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def test_a_policy_the_loader_accepts_is_allowed() -> None:
    response = review_policy(admission(configmap(GOOD)))["response"]
    assert response == {"uid": "u-1", "allowed": True}


@pytest.mark.parametrize(
    ("policy_yaml", "problem"),
    [
        (GOOD.replace("Audit", "Enforced"), 'spec.mode: "Enforced" is not one of Enforce'),
        (GOOD + "  defaults: {sharng: MPS}\n", "spec.defaults.sharng: unknown field"),
        ("spec: [", "not valid YAML"),
        (42, "data.policy.yaml: must be a string"),
    ],
)
def test_a_policy_the_loader_refuses_is_denied_with_the_loaders_message(
    policy_yaml: Any, problem: str
) -> None:
    response = review_policy(admission(configmap(policy_yaml)))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert message.startswith('ConfigMap "kubectl-dra-policy"')
    assert problem in message


def test_a_configmap_without_the_policy_key_is_denied() -> None:
    obj = configmap(GOOD)
    obj["data"] = {"other.yaml": GOOD}
    response = review_policy(admission(obj, "CREATE"))["response"]
    assert response["allowed"] is False
    assert "data.policy.yaml: missing" in response["status"]["message"]


def test_warnings_of_a_valid_policy_reach_kubectl() -> None:
    text = GOOD + "  resources:\n  - {name: example.com/gpu, deviceClassName: gpu.example.com}\n"
    response = review_policy(admission(configmap(text)))["response"]
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert warning.startswith("spec.resources[0].name: the registration shipped in manifests/")


def test_deleting_the_policy_is_not_judged() -> None:
    assert review_policy(admission(None, "DELETE"))["response"]["allowed"] is True


def test_a_broken_review_is_a_bad_review() -> None:
    with pytest.raises(BadReviewError):
        review_policy({"kind": "AdmissionReview"})
