"""--probe-port: the probes and metrics on a plain-HTTP listener of their own, /mutate alone on TLS.

With --client-ca the serving port accepts only the API server's certificate; the kubelet's
probes and Prometheus present none. On the probe port they need none, and the serving port
then answers nothing but POST /mutate.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.reviews import gpu_review
from tests.tls.tls_support import StartServer
from webhook.ops import certs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_probes_need_no_client_certificate_and_mutate_is_alone_on_tls(
    start_server: StartServer, tmp_path: Path
) -> None:
    client_ca = certs.generate_ca("api-server-clients")
    certs.write_public(tmp_path / "client-ca.crt", client_ca.cert_pem)
    leaf = certs.issue_cert(client_ca, "kube-apiserver", server=False, client=True)
    certs.write_tls_dir(tmp_path / "client", leaf=leaf, ca=client_ca)
    pair = (tmp_path / "client" / "tls.crt", tmp_path / "client" / "tls.key")
    server = start_server(
        "--client-ca", str(tmp_path / "client-ca.crt"),
        workers=1, client_pair=pair, probe_port=free_port(),
    )  # fmt: skip

    status, body = server.post(gpu_review())
    assert status == 200 and body["response"]["allowed"] is True
    for path in ("/healthz", "/readyz"):
        status, answer = server.probe(path)
        assert status == 200 and json.loads(answer)["status"] == "ok"
    samples = server.metrics()  # scraped from the probe port
    assert samples['dra_webhook_reviews_total{operation="CREATE",outcome="patched"}'] == 1

    status, answer = server.get("/healthz")  # the serving port: /mutate only
    assert status == 404
    assert "probe port" in json.loads(answer)["error"]
    status, answer = server.probe("/mutate")
    assert status == 404
    assert json.loads(answer)["error"] == (
        "not found; this port serves GET /healthz, /readyz and /metrics"
    )
