"""Hot reload of the two files the server depends on: the policy and the serving certificate.

Both follow a mounted ConfigMap/Secret, where the kubelet writes a new timestamped folder and
swaps the `..data` symlink atomically. A cheap stat (inode, mtime, size, resolved path) runs
every poll; only when it moves are the bytes read and hashed, and only a new hash triggers a
parse, so a touched-but-identical file does nothing. The stat follows symlinks, so a `..data`
swap shows up as a new inode even when mtimes are equal.

- PolicyReloader is the `Callable[[], Policy]` that `Admission` takes. A new file that does not
  parse is rejected: the last good policy stays in force, the error (with field paths) is
  logged, `dra_webhook_policy_reload_failing` is 1 and `/readyz` says so.
- CertReloader hands the server's TLS dispatcher (webhook/serving/tls_context.py) a ready SSLContext. On change it builds a
  fresh context (TLS 1.2+) from the new pair; open connections keep the old one, new ones get
  the new one, no request fails. A pair that does not load (key and certificate from different
  generations, mid-write) is ignored and retried on the next poll.
- Watcher polls a list of reloaders from a daemon thread in each worker process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from dracore.errors import PolicyError
from dracore.policy import Policy
from webhook import metrics
from webhook.serving.tls_context import ClientAuth, server_context

log = logging.getLogger(__name__)


class Reloadable(Protocol):
    name: str

    def check(self) -> bool:
        """Re-read if the files changed; True if something new is now in force."""

    def status(self) -> dict[str, Any]:
        """A JSON-able status for /readyz; `ok` is False while a change is being rejected."""


@dataclass(frozen=True, slots=True)
class _Stat:
    real: str
    inode: int
    mtime_ns: int
    size: int


def _stat(paths: Sequence[Path]) -> tuple[_Stat | None, ...]:
    result: list[_Stat | None] = []
    for path in paths:
        try:
            st = path.stat()  # follows symlinks: a ..data swap changes the inode
            result.append(_Stat(os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            result.append(None)
    return tuple(result)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _FileSet:
    """Change detection for a few files: stat first, then a content hash."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._stat: tuple[_Stat | None, ...] = ()
        self._digest = ""

    def read_if_changed(self) -> tuple[bytes, ...] | None:
        """The files' bytes if they differ from the last call; None if unchanged.

        Raises OSError if a file cannot be read (the stat is kept, so it is retried only
        once something on disk moves again).
        """
        current = _stat(self.paths)
        if current == self._stat:
            return None
        self._stat = current
        contents = tuple(path.read_bytes() for path in self.paths)
        digest = hashlib.sha256(b"\0".join(contents)).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        return contents

    def forget(self) -> None:
        """Force the next call to re-read (after a failed load that may succeed later)."""
        self._stat = ()
        self._digest = ""


class PolicyReloader:
    """The policy in force, re-read from `path` when it changes. Call it to get the Policy."""

    name = "policy"

    def __init__(self, path: Path) -> None:
        self._files = _FileSet([path])
        self.path = path
        self._error: str | None = None
        self._loaded_at = _now()
        try:
            contents = self._files.read_if_changed()
        except OSError as exc:
            raise PolicyError([f"cannot read: {exc.strerror}"], source=str(path)) from None
        assert contents is not None
        self._policy = self._parse(contents[0])  # PolicyError at startup: refuse to start

    def _parse(self, data: bytes) -> Policy:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                [f"not UTF-8 text (byte {exc.start}): save the policy as UTF-8"],
                source=str(self.path),
            ) from None
        return Policy.from_yaml(text, source=str(self.path))

    def __call__(self) -> Policy:
        return self._policy

    def check(self) -> bool:
        try:
            contents = self._files.read_if_changed()
            if contents is None:
                return False
            policy = self._parse(contents[0])
        except (OSError, PolicyError) as exc:
            self._reject(exc)
            return False
        self._policy, self._error, self._loaded_at = policy, None, _now()
        metrics.observe_policy_reload(True)
        log.info(
            "policy reloaded from %s",
            self.path,
            extra={"policy": policy.digest, "event": "policy-reload"},
        )
        return True

    def _reject(self, exc: OSError | PolicyError) -> None:
        if isinstance(exc, PolicyError):
            problems = exc.problems
        else:
            problems = [f"cannot read: {exc.strerror or exc}"]
        self._error = "; ".join(problems)
        metrics.observe_policy_reload(False)
        log.error(
            "policy file %s rejected, policy %s stays in force: %s",
            self.path,
            self._policy.digest,
            self._error,
            extra={"policy": self._policy.digest, "problems": problems, "event": "policy-reject"},
        )

    @property
    def failing(self) -> bool:
        return self._error is not None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "ok": self._error is None,
            "digest": self._policy.digest,
            "file": str(self.path),
            "loadedAt": self._loaded_at,
        }
        if self._error is not None:
            status["error"] = f"new policy rejected, last good one in force: {self._error}"
        return status


class CertReloader:
    """The serving SSLContext, rebuilt when tls.crt, tls.key or the client CA file change.

    The client CA is read afresh into the new context: a CA added to the file is trusted from
    the next handshake, one removed from it no longer is.
    """

    name = "certificate"

    def __init__(self, cert_dir: Path, client: ClientAuth | None = None) -> None:
        self.cert, self.key = cert_dir / "tls.crt", cert_dir / "tls.key"
        self._client = client
        watched = [self.cert, self.key] + ([client.ca_file] if client is not None else [])
        self._files = _FileSet(watched)
        self._error: str | None = None
        contents = self._files.read_if_changed()
        assert contents is not None
        self._context, self._not_after = self._load(contents[0])  # raises at startup

    def _load(self, cert_pem: bytes) -> tuple[ssl.SSLContext, dt.datetime]:
        context = server_context(self.cert, self.key, self._client)
        not_after = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
        return context, not_after

    def context(self) -> ssl.SSLContext:
        return self._context

    @property
    def expiry_unix(self) -> float:
        return self._not_after.timestamp()

    def check(self) -> bool:
        try:
            contents = self._files.read_if_changed()
            if contents is None:
                return False
            self._context, self._not_after = self._load(contents[0])
        except (OSError, ssl.SSLError, ValueError) as exc:
            # Typically a rotation caught between writing tls.key and tls.crt: retry next poll.
            self._files.forget()
            if self._error is None:
                metrics.observe_certificate(None)
                log.warning(
                    "serving certificate in %s%s does not load yet (%s); still serving the old one",
                    self.cert.parent,
                    f" or client CA {self._client.ca_file}" if self._client else "",
                    exc,
                )
            self._error = str(exc)
            return False
        self._error = None
        metrics.observe_certificate(self.expiry_unix)
        log.info(
            "serving certificate reloaded, valid until %s",
            self._not_after.isoformat(timespec="seconds"),
            extra={"event": "certificate-reload"},
        )
        return True

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "ok": self._error is None,
            "notAfter": self._not_after.isoformat(timespec="seconds"),
        }
        if self._error is not None:
            status["error"] = f"new certificate does not load: {self._error}"
        return status


class Watcher:
    """Polls reloaders every `interval` seconds from one daemon thread."""

    def __init__(self, items: Sequence[Reloadable], *, interval: float) -> None:
        self._items = tuple(items)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        for item in self._items:
            try:
                item.check()
            except Exception:  # a watcher that dies silently would freeze reloads for good
                log.exception("checking %s for changes failed", item.name)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reload-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1)
