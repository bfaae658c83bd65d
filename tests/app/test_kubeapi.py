"""The webhook's own API client (webhook.apiclient.kubeapi) against a scripted HTTPS server on 127.0.0.1.

The e2e tests run it against the real API server; these pin what e2e cannot easily provoke:
each status the API server may answer, the token on every request, connection reuse, a
connection the server closed while idle, a call's total budget against a server that trickles
its answer, the cap on an endless chunked answer, the one retry of a 429 or 503, the metrics of each
exchange, and kubeconfigs the webhook refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.tls.scripted_api import FakeApi, Handler, running_api, trickle
from webhook.apiclient.kubeapi import (
    MAX_ANSWER_BYTES,
    ApiGateway,
    ConfigError,
    from_kubeconfig,
    in_cluster,
)
from webhook.deadline import Deadline
from webhook.errors import GatewayError

TEMPLATES = "/apis/resource.k8s.io/v1/namespaces/ml/resourceclaimtemplates"
FORBIDDEN = {"kind": "Status", "message": 'resourceclaims "x" is forbidden: no', "code": 403}
CLAIMS = "/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims"


def ample() -> Deadline:
    return Deadline.after(30.0)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    with running_api(tmp_path) as running:
        yield running


def test_each_answer_of_the_api_server(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    template = {"metadata": {"name": "gpu-1", "namespace": "ml"}, "spec": {"a": 1}}
    server.routes[("GET", f"{TEMPLATES}/gpu-1")] = (200, template)
    server.routes[("POST", TEMPLATES)] = (409, {"message": "exists"})
    server.routes[("GET", "/api/v1/namespaces/ml")] = (200, {"metadata": {"labels": {"t": "a"}}})
    server.routes[("POST", "/apis/resource.k8s.io/v1/namespaces/ml/resourceclaims")] = (
        403,
        FORBIDDEN,
    )
    assert gateway.get_template("ml", "gpu-1", deadline=ample()) == template
    assert gateway.get_template("ml", "absent", deadline=ample()) is None
    assert gateway.create_template(template, deadline=ample()) is False
    assert gateway.namespace_labels("ml", deadline=ample()) == {"t": "a"}
    with pytest.raises(GatewayError) as caught:
        gateway.create_claim({"metadata": {"name": "x", "namespace": "ml"}}, deadline=ample())
    assert str(caught.value) == 'resourceclaims "x" is forbidden: no (HTTP 403)'
    server.routes[("POST", TEMPLATES)] = (201, template)
    assert gateway.create_template(template, deadline=ample()) is True
    posted = [json.loads(body) for method, _, _, body in server.seen if method == "POST"]
    assert posted[0] == template
    assert {auth for _, _, auth, _ in server.seen} == {"Bearer first"}
    assert server.connections == 1  # one kept-alive connection for all seven calls


def test_a_rotated_token_is_used_at_once(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    gateway.get_claim("ml", "a", deadline=ample())
    (kubeconfig.parent / "token").write_text("second\n")
    gateway.get_claim("ml", "a", deadline=ample())
    assert [auth for _, _, auth, _ in server.seen] == ["Bearer first", "Bearer second"]


def test_a_connection_dropped_while_idle_is_replaced(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    server.close_after_next = True
    assert gateway.get_claim("ml", "a", deadline=ample()) is None
    assert (
        gateway.get_claim("ml", "b", deadline=ample()) is None
    )  # the kept connection is gone: a new one
    assert server.connections == 2
    assert [path.rsplit("/", 1)[1] for _, path, _, _ in server.seen] == ["a", "b"]


def test_names_are_escaped_into_the_path(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    ApiGateway.from_kubeconfig(str(kubeconfig)).get_claim("ml", "a/../b?c", deadline=ample())
    assert server.seen[0][1].endswith("/resourceclaims/a%2F..%2Fb%3Fc")


def test_atrickled_answer_is_cut_off_at_the_call_budget(api: tuple[FakeApi, Path]) -> None:
    """Every byte arrives well within a read timeout; the call as a whole must still end."""
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/slow")] = trickle
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig), timeout=0.5)
    with pytest.raises(GatewayError) as caught:
        gateway.get_claim("ml", "slow", deadline=ample())
    assert "did not answer in time (reading ResourceClaim ml/slow, deadline 0.5s)" in str(
        caught.value
    )


def test_the_review_deadline_shortens_the_call_budget(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/slow")] = trickle
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig), timeout=30)
    with pytest.raises(GatewayError, match=r"deadline 0\.4s"):
        gateway.get_claim("ml", "slow", deadline=Deadline.after(0.4))
    spent = Deadline.after(0.0)
    with pytest.raises(GatewayError, match=r"no time was left to call the API server \(reading"):
        gateway.get_claim("ml", "other", deadline=spent)
    assert [path for _, path, _, _ in server.seen] == [f"{CLAIMS}/slow"]  # nothing sent when spent


def _endless_chunks(handler: Handler) -> None:
    """A chunked answer of 64 KiB chunks, ending only past twice the client's cap."""
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(2 * MAX_ANSWER_BYTES // 65536):
            handler.wfile.write(chunk)
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass
    handler.close_connection = True


def _huge_length(handler: Handler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n{")
    handler.close_connection = True


@pytest.mark.parametrize("script", [_endless_chunks, _huge_length])
def test_an_answer_over_the_cap_is_refused_unread(
    api: tuple[FakeApi, Path], script: Callable[[Handler], None]
) -> None:
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/big")] = script
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    with pytest.raises(GatewayError) as caught:
        gateway.get_claim("ml", "big", deadline=ample())
    assert f"(reading ResourceClaim ml/big) is over {MAX_ANSWER_BYTES} bytes" in str(caught.value)
    assert gateway.get_claim("ml", "next", deadline=ample()) is None  # the client carries on


def _throttled(
    retry_after: str, then: tuple[int, Any], *, status: int = 429
) -> Callable[[Handler], None]:
    """Answers `status` (429 or 503) with `retry_after` once, then `then`."""
    answers: list[tuple[int, Any]] = [(status, {"message": "too many requests"}), then]

    def script(handler: Handler) -> None:
        status, answer = answers.pop(0) if len(answers) > 1 else answers[0]
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        if status in (429, 503):
            handler.send_header("Retry-After", retry_after)
        handler.end_headers()
        handler.wfile.write(data)

    return script


def api_requests(call: str, result: str) -> float:
    labels = {"call": call, "result": result}
    return REGISTRY.get_sample_value("dra_webhook_api_requests_total", labels) or 0.0


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_call_is_retried_once_after_its_retry_after(
    api: tuple[FakeApi, Path], status: int
) -> None:
    server, kubeconfig = api
    claim = {"metadata": {"name": "team", "namespace": "ml"}}
    server.scripts[("GET", f"{CLAIMS}/team")] = _throttled("0", (200, claim), status=status)
    before = {r: api_requests("get_resourceclaim", r) for r in (str(status), "200")}
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    assert gateway.get_claim("ml", "team", deadline=ample()) == claim
    assert len(server.seen) == 2
    assert api_requests("get_resourceclaim", str(status)) == before[str(status)] + 1
    assert api_requests("get_resourceclaim", "200") == before["200"] + 1


def test_another_error_status_is_not_retried(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/team")] = _throttled("0", (200, {}), status=500)
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    with pytest.raises(GatewayError, match="HTTP 500"):
        gateway.get_claim("ml", "team", deadline=ample())
    assert len(server.seen) == 1


def test_a_429_whose_wait_does_not_fit_is_not_retried(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/team")] = _throttled("5", (200, {}))
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig), timeout=2)
    with pytest.raises(GatewayError, match=r"too many requests \(HTTP 429\)"):
        gateway.get_claim("ml", "team", deadline=ample())
    assert len(server.seen) == 1


def test_a_429_is_retried_at_most_once(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    server.scripts[("GET", f"{CLAIMS}/team")] = _throttled("0", (429, {"message": "still"}))
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    with pytest.raises(GatewayError, match="HTTP 429"):
        gateway.get_claim("ml", "team", deadline=ample())
    assert len(server.seen) == 2


def _kubeconfig(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path = tmp_path / "refused"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("cluster", "user", "reason"),
    [
        ({"server": "http://127.0.0.1:1"}, {"token": "t"}, "is not an https:// URL"),
        (
            {"server": "https://a", "insecure-skip-tls-verify": True},
            {"token": "t"},
            "insecure-skip-tls-verify is not accepted",
        ),
        ({"server": "https://a"}, {"exec": {"command": "aws"}}, "uses exec, which the webhook"),
        ({"server": "https://a"}, {"auth-provider": {"name": "gcp"}}, "uses auth-provider"),
        (
            {"server": "https://a", "certificate-authority-data": "%%%"},
            {"token": "t"},
            "certificate-authority-data is not base64",
        ),
    ],
)
def test_kubeconfigs_the_webhook_refuses(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_kubeconfig(_kubeconfig(tmp_path, cluster, user))
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_outside_a_cluster_without_a_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="pass --kubeconfig"):
        in_cluster()


# What the cluster offers the scheduler's path ---------------------------------------------------

CLASSES = "/apis/resource.k8s.io/v1/deviceclasses"


def test_the_version_and_every_page_of_device_classes_are_read(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    gateway = ApiGateway.from_kubeconfig(str(kubeconfig))
    server.routes[("GET", "/version")] = (200, {"gitVersion": "v1.37.2", "major": "1"})
    first = {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "t/1"}}
    second = {"items": [{"metadata": {"name": "b"}}, "junk"], "metadata": {}}
    server.routes[("GET", f"{CLASSES}?limit=250")] = (200, first)
    server.routes[("GET", f"{CLASSES}?limit=250&continue=t%2F1")] = (200, second)
    assert gateway.server_version(ample()) == "v1.37.2"
    assert [c["metadata"]["name"] for c in gateway.device_classes(ample())] == ["a", "b"]
    server.routes[("GET", f"{CLASSES}?limit=250")] = (403, FORBIDDEN)
    with pytest.raises(GatewayError, match=r"cannot list DeviceClasses: .*\(HTTP 403\)"):
        gateway.device_classes(ample())
    server.routes[("GET", "/version")] = (200, ["not", "an", "object"])
    with pytest.raises(GatewayError, match="the server version is not a JSON object"):
        gateway.server_version(ample())
