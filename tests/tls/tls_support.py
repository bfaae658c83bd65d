"""Helpers for tests/tls (imported by name, unlike a conftest). Real HTTPS against the real server: `dra-webhook serve` (gunicorn) as a subprocess on 127.0.0.1.

The server binds port 0 and the fixture reads the port from its JSON log. The client trusts only
the test CA (`ssl.create_default_context(cadata=...)`) and checks the IP SAN. Every wait is
bounded; teardown sends SIGTERM, then SIGKILL after 15 s.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import wait_for
from webhook.ops import certs

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log: Path
    ca_pem: str
    metrics_dir: Path
    port: int = 0
    probe_port: int | None = None  # /healthz, /readyz and /metrics over plain HTTP, if set
    client_pair: tuple[Path, Path] | None = None  # the client certificate and key we present
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cadata=self.ca_pem)
            if self.client_pair is not None:
                self._context.load_cert_chain(*self.client_pair)
        return self._context

    def connect(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=timeout
        )

    def post(
        self, review: dict[str, Any], conn: http.client.HTTPSConnection | None = None
    ) -> tuple[int, dict[str, Any]]:
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request(
                "POST",
                "/mutate",
                body=json.dumps(review),
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            if own:
                conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return _get(self.connect(), path)

    def probe(self, path: str) -> tuple[int, bytes]:
        """GET `path` over plain HTTP on the probe port."""
        assert self.probe_port is not None
        return _get(http.client.HTTPConnection("127.0.0.1", self.probe_port, timeout=10), path)

    def metrics(self) -> dict[str, float]:
        """Samples as {'name{label="v",...}': value}, merged over workers by the server."""
        status, body = self.probe("/metrics") if self.probe_port else self.get("/metrics")
        assert status == 200, (status, body[:300])
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.generate_ca()


@pytest.fixture
def cert_dir(ca: certs.KeyPair, tmp_path: Path) -> Path:
    out = tmp_path / "tls"
    leaf = certs.issue_cert(
        ca, "wh.ns.svc", dns_names=certs.service_dns_names("wh", "ns"), ip_addresses=["127.0.0.1"]
    )
    certs.write_tls_dir(out, leaf=leaf, ca=ca)
    certs.write_ca_dir(out, ca)
    return out


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(cert_dir: Path, tmp_path: Path) -> Iterator[StartServer]:
    servers: list[Server] = []

    def start(
        *args: str,
        workers: int = 2,
        threads: int = 4,
        client_pair: tuple[Path, Path] | None = None,
        offline: bool = True,
        probe_port: int | None = None,
    ) -> Server:
        log = tmp_path / f"server-{len(servers)}.log"
        metrics_dir = tmp_path / f"metrics-{len(servers)}"
        argv = [
            sys.executable, "-m", "webhook", "serve",
            "--cert-dir", str(cert_dir), "--host", "127.0.0.1", "--port", "0",
            *(["--offline"] if offline else []),
            "--workers", str(workers), "--threads", str(threads), "--reload-interval", "0.2",
            "--metrics-dir", str(metrics_dir), *args,
            *(["--probe-port", str(probe_port)] if probe_port else []),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=REPO, env=env)
        server = Server(
            proc,
            log,
            (cert_dir / "ca.crt").read_text(),
            metrics_dir,
            probe_port=probe_port,
            client_pair=client_pair,
        )
        servers.append(server)

        def listening() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
            match = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", log.read_text())
            return int(match.group(1)) if match else None

        server.port = wait_for(listening, what="the server to listen")

        def healthy() -> bool:
            try:
                return (server.probe if probe_port else server.get)("/healthz")[0] == 200
            except OSError:
                return False

        wait_for(healthy, what="/healthz")
        return server

    yield start
    for server in servers:
        server.stop()
