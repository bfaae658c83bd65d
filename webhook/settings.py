"""Every setting of the webhook server in one frozen dataclass.

`dra-webhook serve` fills it from its flags; tests and benchmarks build it directly;
`webhook.serving.server.build(settings)` turns it into a running server. Nothing else reads flags or the
environment for configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# The API server sends at most 3 MiB objects; a review wraps the object and its old copy.
DEFAULT_MAX_REVIEW_BYTES = 7 * 1024 * 1024

# The shipped registrations (manifests/, the chart) say timeoutSeconds: 5.
DEFAULT_REVIEW_TIMEOUT = 5.0

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Settings:
    # Where and what to serve.
    host: str = "0.0.0.0"
    port: int = 9443
    # With a probe port, /healthz, /readyz and /metrics are served there over plain HTTP (kubelet
    # probes and scrapes need no client certificate), and the serving port serves only /mutate.
    probe_port: int | None = None
    cert_dir: Path | None = None
    policy_file: Path | None = None
    kubeconfig: str | None = None
    offline: bool = False
    # Who may call: with a client CA, only clients presenting a certificate it signed (and, if
    # given, whose subject common name is listed) finish the TLS handshake.
    client_ca: Path | None = None
    client_names: tuple[str, ...] = ()
    # Processes and threads: `workers` event loops, each running reviews on `threads` threads.
    workers: int = 2
    threads: int = 4
    # Deadlines (seconds) for each phase of a connection and for each API call.
    handshake_timeout: float = 5.0
    header_timeout: float = 10.0  # also how long an idle keep-alive connection stays open
    body_timeout: float = 10.0
    api_timeout: float = 2.0
    # The registration's timeoutSeconds: each review's deadline, from its request head to its
    # last API call, is this minus a margin (`webhook.deadline`).
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT
    # Connections one worker holds at most (each costs a socket and TLS state, never a thread).
    max_connections: int = 256
    graceful_timeout: int = 25
    max_review_bytes: int = DEFAULT_MAX_REVIEW_BYTES
    # Files and observability.
    reload_interval: float = 5.0
    metrics_dir: Path | None = None
    log_level: LogLevel = "info"

    @property
    def bind(self) -> str:
        return self._address(self.port)

    @property
    def probe_bind(self) -> str:
        return self._address(self.probe_port or 0)

    def _address(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
