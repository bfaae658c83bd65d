"""The production server: gunicorn embedded as a library (BaseApplication), gthread workers.

- The app, the policy and the certificate are loaded once in the master (`preload_app`), so a
  bad policy or certificate stops start-up with a one-line error, then forked into workers.
- TLS: gunicorn calls the `ssl_context` hook (gunicorn >= 21) for every accepted connection;
  ours returns the CertReloader's current SSLContext (TLS 1.2+), so a rotated certificate is
  used from the next connection on with no restart and no dropped request.
- Each worker starts a Watcher thread in `post_worker_init` that polls the policy and
  certificate files; `child_exit` tells prometheus_client a worker died (multiprocess metrics).
- SIGTERM: gunicorn stops accepting, lets in-flight requests finish for up to
  `graceful_timeout` seconds, then exits (Kubernetes waits terminationGracePeriodSeconds).
"""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.workers.base import Worker

from webhook import logs, metrics
from webhook.reload import CertReloader, PolicyReloader, Watcher

log = logging.getLogger("webhook.server")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    bind: str = "0.0.0.0:9443"
    workers: int = 2
    threads: int = 4
    graceful_timeout: int = 25
    keepalive: int = 30
    reload_interval: float = 5.0
    log_level: str = "info"


class ReviewLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger without access lines: routes.py logs each review with its fields.

    With a logconfig_dict, gunicorn builds the access-log atoms for every request even when the
    access logger is silenced; that was 8% of a worker's CPU at saturation (py-spy, --gil).
    """

    def access(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(
        self,
        app: Flask,
        *,
        options: ServerOptions,
        certificate: CertReloader,
        policy: PolicyReloader | None,
    ) -> None:
        self._app = app
        self._options = options
        self._certificate = certificate
        self._policy = policy
        super().__init__()

    def load_config(self) -> None:
        options = self._options
        certificate = self._certificate
        reloaders = [r for r in (self._policy, certificate) if r is not None]
        policy = self._policy

        def ssl_context(_conf: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return certificate.context()

        def post_worker_init(_worker: Worker) -> None:
            # A worker forked later (after a crash) starts from the master's copy, which is as
            # old as the server: read the files now, before it accepts its first connection.
            watcher = Watcher(reloaders, interval=options.reload_interval)
            watcher.poll()
            metrics.publish_state(
                policy_failing=bool(policy and policy.failing),
                cert_expiry_unix=certificate.expiry_unix,
            )
            watcher.start()

        def pre_fork(_arbiter: Arbiter, _worker: Worker) -> None:
            # Everything loaded so far (modules, app, policy) lives as long as the process: keep
            # it out of the collector's generations, so workers neither scan it nor copy it.
            gc.freeze()

        def child_exit(_arbiter: Arbiter, worker: Worker) -> None:
            metrics.mark_process_dead(worker.pid)

        settings: dict[str, Any] = {
            "bind": [options.bind],
            "workers": options.workers,
            "threads": options.threads,
            "worker_class": "gthread",
            "graceful_timeout": options.graceful_timeout,
            "keepalive": options.keepalive,
            "preload_app": True,
            # gunicorn turns TLS on when certfile is set; the context itself comes from the hook.
            "certfile": str(certificate.cert),
            "keyfile": str(certificate.key),
            "ssl_context": ssl_context,
            "post_worker_init": post_worker_init,
            "pre_fork": pre_fork,
            "child_exit": child_exit,
            "logconfig_dict": logs.logging_config(options.log_level),
            "logger_class": ReviewLogger,
            "accesslog": None,
            "proc_name": "dra-webhook",
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 24 opens a control socket under $HOME; the root filesystem is read-only.
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._app
