"""The production server: gunicorn's arbiter for processes, an event loop per worker.

Why this stack: a slow client must cost a coroutine's worth of memory, not a thread, and a
review must cost little more than its decision. In each worker process one event loop (uvloop
where it is installed) does TLS handshakes and serves HTTP/1.1 through `webhook.serving.http11`, which
gives every phase of a connection a deadline and answers small reviews right on the loop; a
review that needs the API server, or a very large one, runs on a thread of the worker's pool.
The worker imports neither Flask nor a web framework (docs/performance.md has the numbers).

gunicorn's arbiter, embedded as a library, still manages the processes:

- The endpoints, the policy and the certificate are loaded once in the master
  (`preload_app`), so a bad policy or certificate stops start-up with a one-line error, then
  forked into workers (`gc.freeze()` first, so workers neither scan nor copy what the master
  loaded).
- Each worker starts a Watcher thread that polls the policy and certificate files; TLS goes
  through `tls_context.dispatching`, so a rotated certificate applies from the next handshake.
- `child_exit` tells prometheus_client a worker died (multiprocess metrics); a killed worker is
  replaced by the arbiter.
- With a listener handoff (`webhook.serving.handoff`), the serving port's socket comes from
  the pod's sidecar instead of a bind, and the master lends it back to a restarted sidecar.
- SIGTERM: the listening sockets close, idle connections are closed, in-flight reviews get up
  to `graceful_timeout` seconds, then the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.workers.base import Worker

from webhook import metrics
from webhook.serving import handoff, http11, logs, tls_context
from webhook.serving.endpoints import Endpoints
from webhook.serving.reload import CertReloader, PolicyReloader, Reloadable, Watcher
from webhook.settings import Settings

log = logging.getLogger(__name__)


class ReviewLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger without access lines: admission/handler.py logs each review with its fields."""

    def access(self, *args: Any, **kwargs: Any) -> None:
        return None


class EventLoopWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker process that serves its listening sockets on one event loop."""

    server: WebhookServer  # set on the class by WebhookServer before the arbiter forks

    def run(self) -> None:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        settings = self.server.settings
        limits = http11.Limits(
            handshake_timeout=settings.handshake_timeout,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_body=settings.max_review_bytes,
            max_connections=settings.max_connections,
            review_timeout=settings.review_timeout,
        )
        sockets = [listener.sock for listener in self.sockets]
        for sock in sockets:
            sock.setblocking(False)
        # gunicorn opens the listeners in the order of `bind`: the serving port, then the probes'.
        probe_sockets = sockets[1:] if settings.probe_port is not None else []
        await http11.serve(
            sockets[:1] if probe_sockets else sockets,
            tls_context.dispatching(self.server.certificate.context),
            self.wsgi,
            threads=settings.threads,
            limits=limits,
            graceful_timeout=max(settings.graceful_timeout - 1, 1),
            until_stopped=self._until_stopped,
            probe_sockets=probe_sockets,
        )

    async def _until_stopped(self) -> None:
        """Tell the arbiter we live; return when it asks us to stop (SIGTERM) or goes away."""
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                log.warning("the master process is gone; worker %s stops", self.pid)
                return
            await asyncio.sleep(0.25)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # platforms without uvloop wheels: asyncio's own loop
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class WebhookServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    def __init__(
        self,
        app: Endpoints,
        *,
        settings: Settings,
        certificate: CertReloader,
        policy: PolicyReloader | None,
        lender: handoff.Lender | None = None,
    ) -> None:
        self._app = app
        self.settings = settings
        self.certificate = certificate
        self._policy = policy
        self._lender = lender
        super().__init__()

    def _binds(self) -> list[str]:
        """gunicorn's `bind`: addresses, or with a handed-over socket, descriptors (fd://N):
        given one descriptor, gunicorn binds nothing itself, so the probe port is bound here."""
        settings = self.settings
        if self._lender is None:
            return [settings.bind] + ([settings.probe_bind] if settings.probe_port else [])
        # gunicorn closes each descriptor it is given once it has its own copy: a duplicate of
        # the handed-over socket (the lender keeps the original), and the probe socket itself.
        fds = [os.dup(self._lender.listener.fileno())]
        if settings.probe_port is not None:
            fds.append(handoff.bind_listener(settings.host, settings.probe_port).detach())
        return [f"fd://{fd}" for fd in fds]

    def load_config(self) -> None:
        settings = self.settings
        certificate = self.certificate
        reloaders: list[Reloadable] = [r for r in (self._policy, certificate) if r is not None]
        policy = self._policy
        lender = self._lender
        EventLoopWorker.server = self

        def post_worker_init(_worker: Worker) -> None:
            if lender is not None:
                lender.close_copy()  # the master lends; a worker's copy would outlive nothing
            # A worker forked later (after a crash) starts from the master's copy, which is as
            # old as the server: read the files now, before it accepts its first connection.
            watcher = Watcher(reloaders, interval=settings.reload_interval)
            watcher.poll()
            metrics.publish_state(
                policy_failing=bool(policy and policy.failing),
                cert_expiry_unix=certificate.expiry_unix,
            )
            watcher.start()

        def pre_fork(_arbiter: Arbiter, _worker: Worker) -> None:
            gc.freeze()

        def child_exit(_arbiter: Arbiter, worker: Worker) -> None:
            metrics.mark_process_dead(worker.pid)

        options: dict[str, Any] = {
            "bind": self._binds(),
            "workers": settings.workers,
            "worker_class": EventLoopWorker,
            "graceful_timeout": settings.graceful_timeout,
            # A worker whose event loop has not reported for this long is replaced.
            "timeout": 30,
            "preload_app": True,
            # Only so that gunicorn logs "https://"; the worker does TLS itself.
            "certfile": str(certificate.cert),
            "keyfile": str(certificate.key),
            "post_worker_init": post_worker_init,
            "pre_fork": pre_fork,
            "child_exit": child_exit,
            "logconfig_dict": logs.logging_config(settings.log_level),
            "logger_class": ReviewLogger,
            "accesslog": None,
            "proc_name": "dra-webhook",
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 24 opens a control socket under $HOME; the root filesystem is read-only.
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Endpoints:
        return self._app


class StartupError(Exception):
    """A one-line reason the server cannot start (a bad file or flag); no traceback needed."""


def build(settings: Settings, *, listener_handoff: Path | None = None) -> WebhookServer:
    """The server `settings` describe: certificate, policy, API client and app, loaded now;
    with `listener_handoff`, the serving port's socket taken from the sidecar there."""
    from dracore.errors import PolicyError
    from dracore.policy import Policy
    from webhook.errors import GatewayError
    from webhook.serving.tls_context import ClientAuth

    cert_dir = settings.cert_dir
    if cert_dir is None:
        raise StartupError("no certificate folder given (--cert-dir)")
    for name in ("tls.crt", "tls.key"):
        if not (cert_dir / name).is_file():
            raise StartupError(
                f"{cert_dir / name} not found; create it with `dra-webhook certs generate`"
            )
    client = None
    if settings.client_ca is not None:
        if not settings.client_ca.is_file():
            raise StartupError(f"client CA file {settings.client_ca} not found (--client-ca)")
        client = ClientAuth(settings.client_ca, settings.client_names)
    try:
        certificate = CertReloader(cert_dir, client)
    except (ssl.SSLError, ValueError, OSError) as exc:
        what = "client CA or certificate" if client else "certificate"
        raise StartupError(f"cannot load the {what} in {cert_dir}: {exc}") from None
    try:
        reloader = PolicyReloader(settings.policy_file) if settings.policy_file else None
    except PolicyError as exc:
        raise StartupError(f"{exc.source} is invalid: {'; '.join(exc.problems)}") from None
    gateway = None
    if not settings.offline:
        from webhook.apiclient.kubeapi import ApiGateway

        try:
            gateway = ApiGateway.from_kubeconfig(settings.kubeconfig, timeout=settings.api_timeout)
        except GatewayError as exc:
            raise StartupError(f"{exc} (or pass --offline)") from None
    status: list[Reloadable] = [certificate] if reloader is None else [reloader, certificate]
    endpoints = Endpoints.build(
        settings, policy=reloader or Policy.default(), gateway=gateway, status=status
    )
    lender = None
    if listener_handoff is not None:
        try:
            listener = handoff.receive(listener_handoff, settings.port)
            lender = handoff.Lender(listener, listener_handoff / handoff.SERVER_SOCKET)
        except handoff.HandoffError as exc:
            raise StartupError(str(exc)) from None
        lender.start()
    return WebhookServer(
        endpoints, settings=settings, certificate=certificate, policy=reloader, lender=lender
    )
