"""The real server without --offline, calling a scripted API server over HTTPS.

What the decision needs from the API (a template not seen before, a namespace's labels) is
fetched on a thread and the review answered with it; the next pod of the same shape is decided
on the loop with no call; the exchanges show in /metrics by call and result; and an API server
that trickles its answer costs a review no more than its deadline, the registration's
timeoutSeconds (--review-timeout) less the margin, even with a far larger --api-timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reviews import gpu_review
from tests.tls.scripted_api import FakeApi, running_api, trickle
from tests.tls.tls_support import StartServer

TEMPLATES = "/apis/resource.k8s.io/v1/namespaces/ml/resourceclaimtemplates"
LABELLED_POLICY = """\
apiVersion: kubectl-dra.io/v1alpha1
kind: GPUPolicy
spec:
  namespaces:
  - {labels: {gpu-sharing: enabled}, sharing: TimeSlicing}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    with running_api(tmp_path / "api") as running:
        yield running


def review_calls(api: FakeApi) -> list[Any]:
    """The calls reviews made: not the background reads of what the cluster offers."""
    return [seen for seen in api.seen if seen[1] != "/version" and "/deviceclasses" not in seen[1]]


def posted_templates(api: FakeApi) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for method, path, _, body in api.seen
        if (method, path) == ("POST", TEMPLATES)
    ]


def test_what_a_review_needs_is_fetched_and_then_remembered(
    start_server: StartServer, api: tuple[FakeApi, Path], tmp_path: Path
) -> None:
    fake, kubeconfig = api
    fake.routes[("GET", "/api/v1/namespaces/ml")] = (
        200,
        {"metadata": {"name": "ml", "labels": {"gpu-sharing": "enabled"}}},
    )
    fake.routes[("POST", TEMPLATES)] = (201, {})
    policy = tmp_path / "policy.yaml"
    policy.write_text(LABELLED_POLICY)
    server = start_server(
        "--kubeconfig", str(kubeconfig), "--policy", str(policy), workers=1, offline=False
    )
    status, first = server.post(gpu_review())
    assert status == 200 and first["response"]["allowed"] is True
    assert first["response"]["patchType"] == "JSONPatch"
    [template] = posted_templates(fake)
    config = template["spec"]["spec"]["devices"]["config"][0]["opaque"]["parameters"]
    assert config["sharing"]["strategy"] == "TimeSlicing"  # from the namespace's labels
    calls = len(review_calls(fake))
    assert calls == 2  # the namespace, then the template

    status, second = server.post(gpu_review())
    assert status == 200 and second["response"]["patchType"] == "JSONPatch"
    assert len(review_calls(fake)) == calls  # labels cached, template known: no call
    # In the background, apart from reviews: the version once, the DeviceClasses.
    assert {path for _, path, _, _ in fake.seen} - {p for _, p, _, _ in review_calls(fake)} <= {
        "/version",
        "/apis/resource.k8s.io/v1/deviceclasses?limit=250",
    }

    samples = server.metrics()
    assert samples['dra_webhook_api_requests_total{call="get_namespace",result="200"}'] == 1
    created = 'dra_webhook_api_requests_total{call="create_resourceclaimtemplate",result="201"}'
    assert samples[created] == 1
    assert samples['dra_webhook_api_request_duration_seconds_count{call="get_namespace"}'] == 1


def test_a_trickling_api_server_costs_a_review_only_its_deadline(
    start_server: StartServer, api: tuple[FakeApi, Path]
) -> None:
    fake, kubeconfig = api
    fake.scripts[("POST", TEMPLATES)] = trickle  # 4 s, a byte every 20 ms
    server = start_server(
        "--kubeconfig", str(kubeconfig), "--review-timeout", "2", "--api-timeout", "30",
        workers=1, offline=False,
    )  # fmt: skip
    status, body = server.post(gpu_review())
    assert status == 200
    response = body["response"]
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "did not answer in time" in message and "retry" in message
    # 2 s timeoutSeconds less the 0.5 s margin, less the moments before the call.
    budget = float(message.split("deadline ")[1].split("s)")[0])
    assert 1.0 < budget <= 1.5
