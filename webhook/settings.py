"""Webhook settings: a frozen dataclass, read from WEBHOOK_* variables or given by the CLI/tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The API server sends at most 3 MiB objects; a review wraps the object and its old copy.
DEFAULT_MAX_REVIEW_BYTES = 7 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 9443
    cert_dir: Path | None = None
    policy_file: Path | None = None
    kubeconfig: str | None = None
    max_review_bytes: int = DEFAULT_MAX_REVIEW_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The only reader of the environment: WEBHOOK_HOST, _PORT, _CERT_DIR, _POLICY_FILE, KUBECONFIG."""
        cert_dir = environ.get("WEBHOOK_CERT_DIR")
        policy_file = environ.get("WEBHOOK_POLICY_FILE")
        return cls(
            host=environ.get("WEBHOOK_HOST", "0.0.0.0"),
            port=int(environ.get("WEBHOOK_PORT", "9443")),
            cert_dir=Path(cert_dir) if cert_dir else None,
            policy_file=Path(policy_file) if policy_file else None,
            kubeconfig=environ.get("KUBECONFIG") or None,
        )
