"""API calls have a deadline: an API server that accepts connections and never answers.

A listener on 127.0.0.1 accepts every connection and answers nothing, not even the TLS
handshake. The real ApiGateway (from a kubeconfig pointing at that listener) must give up on its own,
deny the pod with a message that says to retry, and return the thread. The test would hang
(until pytest is killed) if a call had no deadline; its assertions are on what comes back.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dracore.policy import Policy
from tests.builders import container, make_pod, make_review
from webhook.apiclient.kubeapi import ApiGateway
from webhook.deadline import Deadline
from webhook.errors import GatewayError
from webhook.ops.certs import generate_ca
from webhook.serving.endpoints import Endpoints
from webhook.settings import Settings


@pytest.fixture
def silent_api_server(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig whose server accepts and then says nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": base64.b64encode(generate_ca().cert_pem).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    yield path
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_each_gateway_call_gives_up_with_a_retryable_error(silent_api_server: Path) -> None:
    gateway = ApiGateway.from_kubeconfig(str(silent_api_server), timeout=0.3)
    template = {"metadata": {"name": "gpu-1", "namespace": "ml"}, "spec": {}}
    ample = Deadline.after(30)
    calls = [
        ("reading namespace ml", lambda: gateway.namespace_labels("ml", deadline=ample)),
        ("reading ResourceClaim ml/team", lambda: gateway.get_claim("ml", "team", deadline=ample)),
        (
            "creating ResourceClaimTemplate ml/gpu-1",
            lambda: gateway.create_template(template, deadline=ample),
        ),
    ]
    for what, call in calls:
        with pytest.raises(GatewayError) as caught:
            call()
        message = str(caught.value)
        assert "did not answer in time" in message
        assert what in message
        assert "deadline 0.3s" in message and "retry" in message


def test_a_silent_api_server_denies_the_pod_and_frees_the_thread(silent_api_server: Path) -> None:
    gateway = ApiGateway.from_kubeconfig(str(silent_api_server), timeout=0.3)
    endpoints = Endpoints.build(Settings(), policy=Policy.default(), gateway=gateway)
    body = json.dumps(make_review(make_pod(container("train", gpus=1)))).encode()
    answers = []
    for _ in range(3):  # the same thread reviews again: nothing stayed pinned
        reply = endpoints.mutate(body, "application/json")
        assert reply.status == 200
        answers.append(json.loads(reply.body)["response"])
    for response in answers:
        assert response["allowed"] is False
        message = response["status"]["message"]
        assert "could not create ResourceClaimTemplate ml/" in message
        assert "did not answer in time" in message and "retry" in message


def test_a_kubeconfig_that_is_not_one_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_bytes(b"\xff\xfe not yaml: [")
    with pytest.raises(GatewayError) as caught:
        ApiGateway.from_kubeconfig(str(path))
    message = str(caught.value)
    assert message.startswith(f"cannot load API credentials from {path}: ")
    assert "\n" not in message
