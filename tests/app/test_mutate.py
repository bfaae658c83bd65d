"""POST /mutate end to end through the webhook's Endpoints, with an in-memory gateway."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest

from dracore import admission_review as review
from dracore.policy import Policy
from dracore.translate import SHARED_CLAIM_ANNOTATION, translate
from tests.builders import (
    EndpointsClient,
    container,
    make_pod,
    make_policy,
    make_review,
    webhook_client,
)
from webhook.admission.gateway import MemoryGateway
from webhook.settings import Settings


def client_for(
    policy: Policy | None = None, gateway: MemoryGateway | None = None, **settings: Any
) -> EndpointsClient:
    return webhook_client(Settings(**settings), policy=policy or Policy.default(), gateway=gateway)


@pytest.fixture
def gateway() -> MemoryGateway:
    return MemoryGateway()


def post(client: EndpointsClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/mutate", json=body)
    assert resp.status == 200, resp.text()
    result: dict[str, Any] = resp.json()
    assert result["apiVersion"] == "admission.k8s.io/v1" and result["kind"] == "AdmissionReview"
    assert result["response"]["uid"] == body["request"]["uid"]
    return result["response"]


def test_legacy_pod_is_patched_and_its_template_created(gateway: MemoryGateway) -> None:
    pod = make_pod(container("app", gpus=2))
    response = post(client_for(gateway=gateway), make_review(pod))
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, review.decode_patch({"response": response}))
    # What the rewrite must do, said independently of translate(): the legacy limit is gone,
    # one pod claim points at a template, the container uses that claim, the template exists
    # in the pod's namespace and asks for the 2 GPUs of the default device class.
    [app] = patched["spec"]["containers"]
    assert "nvidia.com/gpu" not in (app.get("resources", {}).get("limits") or {})
    [pod_claim] = patched["spec"]["resourceClaims"]
    assert [c["name"] for c in app["resources"]["claims"]] == [pod_claim["name"]]
    template_name = pod_claim["resourceClaimTemplateName"]
    assert list(gateway.templates) == [("ml", template_name)]
    [gpu_request] = gateway.templates[("ml", template_name)]["spec"]["spec"]["devices"]["requests"]
    assert gpu_request["exactly"]["count"] == 2
    assert gpu_request["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert "kubectl-dra.io/rewritten" in patched["metadata"]["annotations"]


def test_same_shape_costs_no_second_api_call(gateway: MemoryGateway) -> None:
    client = client_for(gateway=gateway)
    post(client, make_review(make_pod(container("app", gpus=1), name="a")))
    post(client, make_review(make_pod(container("app", gpus=1), name="b")))
    assert gateway.calls == 1


def test_dry_run_creates_nothing(gateway: MemoryGateway) -> None:
    response = post(
        client_for(gateway=gateway), make_review(make_pod(container("app", gpus=1)), dry_run=True)
    )
    assert response["allowed"] and "patch" in response
    assert gateway.templates == {} and gateway.calls == 0


def test_pod_without_gpus_passes_without_patch(gateway: MemoryGateway) -> None:
    response = post(client_for(gateway=gateway), make_review(make_pod(container("app"))))
    assert response == {"uid": response["uid"], "allowed": True}
    assert gateway.calls == 0


def test_update_is_allowed_untouched() -> None:
    response = post(
        client_for(), make_review(make_pod(container("app", gpus=1)), operation="UPDATE")
    )
    assert response["allowed"] and "patch" not in response


def test_policy_denial_is_403_with_the_fix() -> None:
    response = post(
        client_for(make_policy(maxGPUsPerPod=1)), make_review(make_pod(container("app", gpus=2)))
    )
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "policy maxGPUsPerPod is 1" in response["status"]["message"]


def test_api_refusal_denies_with_its_reason(gateway: MemoryGateway) -> None:
    gateway.refuse = 'resourceclaimtemplates is forbidden: User "x" cannot create (HTTP 403)'
    response = post(client_for(gateway=gateway), make_review(make_pod(container("app", gpus=1))))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "could not create ResourceClaimTemplate ml/kubectl-dra-"
    )
    assert "cannot create" in response["status"]["message"]


def test_audit_mode_warns_without_patch() -> None:
    response = post(
        client_for(make_policy(mode="Audit")), make_review(make_pod(container("app", gpus=1)))
    )
    assert response["allowed"] and "patch" not in response
    assert response["warnings"][0].startswith("audit: Enforce mode would rewrite this pod")
    assert "kubectl-dra.io/would-rewrite" in response["auditAnnotations"]


def test_namespace_labels_are_read_only_when_the_policy_needs_them() -> None:
    policy = make_policy(
        namespaces=[{"labels": {"gpu-sharing": "enabled"}, "sharing": "TimeSlicing"}]
    )
    gateway = MemoryGateway(namespaces={"ml": {"gpu-sharing": "enabled"}})
    post(client_for(policy, gateway), make_review(make_pod(container("app", gpus=1))))
    template = next(iter(gateway.templates.values()))
    assert (
        template["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]["sharing"][
            "strategy"
        ]
        == "TimeSlicing"
    )


SHARING = make_policy(
    sharedClaims="Allowed",
    resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.example.com"}],
)


def shared_pod(gpus: int = 1) -> dict[str, Any]:
    return make_pod(
        container("ctr0", gpus=gpus), annotations={SHARED_CLAIM_ANNOTATION: "single-gpu"}
    )


def test_shared_claim_is_created_once_then_joined(gateway: MemoryGateway) -> None:
    client = client_for(SHARING, gateway)
    first = post(client, make_review(shared_pod()))
    second = post(client, make_review(shared_pod()))
    assert first["allowed"] and second["allowed"]
    assert list(gateway.claims) == [("ml", "single-gpu")]
    assert gateway.templates == {}


def test_shared_claim_that_does_not_fit_is_denied(gateway: MemoryGateway) -> None:
    client = client_for(SHARING, gateway)
    post(client, make_review(shared_pod(1)))
    response = post(client, make_review(shared_pod(2)))
    assert response["allowed"] is False
    assert (
        "holds 1 device(s) of class gpu.example.com; this pod needs 2"
        in response["status"]["message"]
    )


def test_shared_claim_is_not_created_on_dry_run(gateway: MemoryGateway) -> None:
    response = post(client_for(SHARING, gateway), make_review(shared_pod(), dry_run=True))
    assert response["allowed"] and gateway.claims == {}


def test_a_bug_is_a_500_review_and_never_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    client = webhook_client(Settings(), policy=Policy.default())

    def broken() -> Policy:
        raise RuntimeError("boom")

    client.endpoints.reviewer.admission._policy = broken
    body = make_review(make_pod(container("app", gpus=1)))
    resp = client.post("/mutate", json=body)
    assert resp.status == 200
    response = resp.json()["response"]
    assert (response["uid"], response["allowed"], response["status"]["code"]) == (
        body["request"]["uid"],
        False,
        500,
    )
    assert "boom" not in resp.text()
    assert "boom" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": b"", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": b"{}", "content_type": "text/plain"}, 400, "Content-Type: application/json"),
        ({"data": b"{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"json": {"kind": "AdmissionReview"}}, 400, "apiVersion is null"),
        ({"json": [1]}, 400, "not a JSON object"),
        (
            {
                "json": {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"operation": "CREATE"},
                }
            },
            400,
            "request.uid is missing",
        ),
        (
            {"data": b"{" + b" " * 2048 + b"}", "content_type": "application/json"},
            413,
            "review too large: the limit is 1024 bytes",
        ),
    ],
)
def test_malformed_reviews(kwargs: dict[str, Any], status: int, error: str) -> None:
    resp = client_for(max_review_bytes=1024).post("/mutate", **kwargs)
    assert resp.status == status
    assert error in resp.json()["error"]


def test_health_endpoints() -> None:
    client = client_for()
    assert client.get("/healthz").status == 200
    assert client.get("/readyz").status == 200
    assert client.get("/mutate").status == 405


def test_namespace_labels_are_remembered_between_reviews() -> None:
    policy = make_policy(
        namespaces=[{"labels": {"gpu-sharing": "enabled"}, "sharing": "TimeSlicing"}]
    )
    gateway = MemoryGateway(namespaces={"ml": {}})
    client = client_for(policy, gateway)
    for name in ("a", "b", "c"):
        post(client, make_review(make_pod(container("app", gpus=1), name=name)))
    assert gateway.calls == 2  # one namespace read, one template create


def test_update_re_adding_legacy_resources_to_a_rewritten_pod_is_undone() -> None:
    manifest = make_pod(container("app", gpus=1))
    live = translate(manifest, policy=Policy.default(), namespace="ml").pod
    reapplied = copy.deepcopy(live)
    reapplied["spec"]["containers"][0].setdefault("resources", {})["limits"] = {"nvidia.com/gpu": 1}
    response = post(client_for(), make_review(reapplied, operation="UPDATE", old=live))
    assert response["allowed"] is True
    assert jsonpatch.apply_patch(reapplied, review.decode_patch({"response": response})) == live


def test_update_of_an_untouched_pod_gets_no_patch() -> None:
    pod = make_pod(container("app", gpus=1))
    response = post(client_for(), make_review(pod, operation="UPDATE", old=pod))
    assert response["allowed"] and "patch" not in response


# --- objects found under our names are checked, never trusted --------------------------------


def test_template_squatted_under_our_name_is_refused(gateway: MemoryGateway) -> None:
    pod = make_pod(container("app", gpus=1))
    (template,) = translate(pod, policy=Policy.default(), namespace="ml").templates
    squat = copy.deepcopy(template)
    squat["spec"]["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": "false"}}
    ]
    key = ("ml", template["metadata"]["name"])
    gateway.templates[key] = squat
    response = post(client_for(gateway=gateway), make_review(pod))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(f"ResourceClaimTemplate ml/{key[1]} already exists, but request")
    assert gateway.templates[key] == squat


def test_template_found_with_our_spec_is_used(gateway: MemoryGateway) -> None:
    pod = make_pod(container("app", gpus=1))
    (template,) = translate(pod, policy=Policy.default(), namespace="ml").templates
    gateway.templates[("ml", template["metadata"]["name"])] = copy.deepcopy(template)
    response = post(client_for(gateway=gateway), make_review(pod))
    assert response["allowed"] is True and "patch" in response
    assert gateway.calls == 2  # the refused create, then the read


def test_shared_claim_squatted_with_an_impossible_selector_is_refused(
    gateway: MemoryGateway,
) -> None:
    (claim,) = translate(shared_pod(1), policy=SHARING, namespace="ml").shared_claims
    squat = copy.deepcopy(claim)
    squat["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": "false"}}
    ]
    gateway.claims[("ml", "single-gpu")] = squat
    response = post(client_for(SHARING, gateway), make_review(shared_pod(1)))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "annotation kubectl-dra.io/shared-claim names ResourceClaim ml/single-gpu, but "
        'ResourceClaim single-gpu request "gpu" asks for'
    )


def test_update_in_disabled_mode_is_left_alone() -> None:
    live = translate(
        make_pod(container("app", gpus=1)), policy=Policy.default(), namespace="ml"
    ).pod
    reapplied = copy.deepcopy(live)
    reapplied["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": 1}
    disabled = client_for(make_policy(mode="Disabled"))
    response = post(disabled, make_review(reapplied, operation="UPDATE", old=live))
    assert response["allowed"] is True and "patch" not in response
    enforcing = post(client_for(), make_review(reapplied, operation="UPDATE", old=live))
    assert "patch" in enforcing  # the same update is corrected where the policy is on


# --- malformed reviews are 400 with the reason, never 500 -------------------------------------


def _review_with(**changes: Any) -> dict[str, Any]:
    """A CREATE review of a legacy pod, with pod fields replaced (dotted paths)."""
    body = make_review(make_pod(container("app", gpus=1), container("side")))
    for path, value in changes.items():
        target = body["request"]["object"]
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return body


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"metadata": ["x"]}, "request.object.metadata: expected an object, got a list"),
        (
            {"metadata__annotations": {"a": 1}},
            'request.object.metadata.annotations["a"]: expected a string',
        ),
        ({"spec": "x"}, 'request.object.spec: expected an object, got "x"'),
        (
            {"spec__containers": {"a": 1}},
            "request.object.spec.containers: expected a list, got an object",
        ),
        (
            {"spec__containers__1": 7},
            "request.object.spec.containers[1]: expected an object, got 7",
        ),
        (
            {"spec__containers__0__resources": []},
            "request.object.spec.containers[0].resources: expected an object",
        ),
        (
            {"spec__containers__0__resources": {"limits": "8"}},
            "request.object.spec.containers[0].resources.limits: expected an object",
        ),
        (
            {"spec__containers__1__name": "app"},
            'request.object.spec.containers[1].name: "app" is used by another container',
        ),
        (
            {"spec__containers__1__name": None},
            "request.object.spec.containers[1].name: expected a string",
        ),
        (
            {"spec__nodeSelector": {"a": ["b"]}},
            'request.object.spec.nodeSelector["a"]: expected a string',
        ),
        (
            {"spec__initContainers": [[]]},
            "request.object.spec.initContainers[0]: expected an object",
        ),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_malformed_pod_in_a_review_is_400_with_the_field(
    changes: dict[str, Any], reason: str
) -> None:
    resp = client_for().post("/mutate", json=_review_with(**changes))
    assert resp.status == 400, resp.text()
    assert resp.json()["error"].startswith(reason)


def test_malformed_old_object_is_400() -> None:
    pod = make_pod(container("app"))
    body = make_review(pod, operation="UPDATE", old={**pod, "spec": {"containers": "x"}})
    resp = client_for().post("/mutate", json=body)
    assert resp.status == 400
    assert resp.json()["error"].startswith("request.oldObject.spec.containers: expected a list")


@pytest.mark.parametrize("depth", [150, 100_000])
def test_absurdly_nested_review_is_400(depth: int) -> None:
    body = make_review(make_pod(container("app", gpus=1)))
    raw = json.dumps(body).encode()
    nested = b"[" * depth + b"]" * depth
    data = raw[:-1] + b', "extra": ' + nested + b"}"
    resp = client_for(max_review_bytes=10 * 1024 * 1024).post(
        "/mutate", data=data, content_type="application/json"
    )
    assert resp.status == 400
    assert "nested more than 100 levels deep" in resp.json()["error"]


def test_non_utf8_body_is_400() -> None:
    resp = client_for().post("/mutate", data=b'{"a": "\xff"}', content_type="application/json")
    assert resp.status == 400
    assert "not UTF-8 JSON" in resp.json()["error"]
