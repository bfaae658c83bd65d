"""`dra-webhook`: run the admission webhook."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import click

from webhook.ops.certs_cli import certs_group
from webhook.ops.route_cli import admission_policies_group
from webhook.settings import LogLevel, Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The kubectl-dra mutating admission webhook: legacy nvidia.com/gpu pods -> DRA claims."""


@cli.command()
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="GPUPolicy YAML (or a ConfigMap manifest holding it), reloaded when it changes. "
    "Default: the built-in policy.",
)
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory with tls.crt and tls.key, reloaded when they change.",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=9443, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--probe-port",
    type=click.IntRange(1, 65535),
    help="Serve GET /healthz, /readyz and /metrics over plain HTTP on this port (probes and "
    "scrapes need no client certificate); --port then serves only POST /mutate. Default: "
    "everything on --port.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Kubeconfig for creating templates. Default: the in-cluster service account.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Make no API calls (benchmarks, tests): pods are rewritten, templates not created.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Reviews decided at once per worker (slow clients hold no thread).",
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Require a client certificate signed by this CA (the API server's, set in its "
    "AdmissionConfiguration kubeConfigFile); other clients fail the TLS handshake.",
)
@click.option(
    "--client-name",
    "client_names",
    multiple=True,
    help="With --client-ca: only a client certificate with this subject common name or DNS "
    "name is accepted (repeatable). Default: any certificate the CA signed.",
)
@click.option(
    "--graceful-timeout",
    default=25,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds in-flight reviews get to finish after SIGTERM.",
)
@click.option(
    "--keepalive",
    "header_timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds a connection may take to send a request's headers, and stay idle between "
    "requests.",
)
@click.option(
    "--handshake-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5, 600),
    help="Seconds a client gets to finish the TLS handshake.",
)
@click.option(
    "--body-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 600),
    help="Seconds a client gets to send a request's body.",
)
@click.option(
    "--api-timeout",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 30),
    help="Seconds each API call (templates, claims, namespace labels) may take in all: "
    "connecting, sending and the whole answer; never more than is left of the review's "
    "--review-timeout. Past it the pod is denied with a message to retry.",
)
@click.option(
    "--review-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(1, 30),
    help="The registration's timeoutSeconds. Each review gets this, less half a second, from "
    "its request head to its last API call; every API call gets at most what is left.",
)
@click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Connections one worker holds. At the cap a new connection closes the one idle the "
    "longest, or is closed itself when none is idle.",
)
@click.option(
    "--reload-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 600),
    help="Seconds between checks of the policy and certificate files.",
)
@click.option(
    "--metrics-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PROMETHEUS_MULTIPROC_DIR",
    help="Folder for multiprocess metrics (emptied at start). Default: a new temporary folder.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--listener-handoff",
    type=click.Path(file_okay=False, path_type=Path),
    help="Take the listening socket of --port from `dra-webhook hold-listener --handoff FOLDER` "
    "(a sidecar in the same pod) instead of binding it, and lend it back to that sidecar when it "
    "restarts: connections made while this server restarts wait instead of being refused.",
)
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def serve(
    *,
    policy_file: Path | None,
    cert_dir: Path,
    host: str,
    port: int,
    probe_port: int | None,
    kubeconfig: str | None,
    offline: bool,
    workers: int,
    threads: int,
    client_ca: Path | None,
    client_names: tuple[str, ...],
    graceful_timeout: int,
    header_timeout: float,
    handshake_timeout: float,
    body_timeout: float,
    api_timeout: float,
    review_timeout: float,
    max_connections: int,
    reload_interval: float,
    metrics_dir: Path | None,
    log_level: LogLevel,
    listener_handoff: Path | None,
    debug: bool,
) -> None:
    """Serve POST /mutate, /healthz, /readyz and /metrics over HTTPS (HTTP/1.1, keep-alive);
    with --probe-port, the last three there over HTTP instead.

    Logs are JSON lines on stderr. SIGTERM drains in-flight reviews, then exits.
    """
    if client_names and client_ca is None:
        raise click.UsageError("--client-name needs --client-ca")
    if probe_port is not None and probe_port == port:
        raise click.UsageError(
            f"--probe-port {probe_port} is also --port; give it a port of its own"
        )
    from webhook.serving import logs

    logs.configure(log_level)
    settings = Settings(
        host=host,
        port=port,
        probe_port=probe_port,
        cert_dir=cert_dir,
        policy_file=policy_file,
        kubeconfig=kubeconfig,
        offline=offline,
        client_ca=client_ca,
        client_names=client_names,
        workers=workers,
        threads=threads,
        handshake_timeout=handshake_timeout,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        api_timeout=api_timeout,
        review_timeout=review_timeout,
        max_connections=max_connections,
        graceful_timeout=graceful_timeout,
        reload_interval=reload_interval,
        metrics_dir=metrics_dir,
        log_level=log_level,
    )
    _prepare_metrics_dir(settings.metrics_dir)
    # Imported only now: prometheus_client picks its multiprocess storage at import time.
    from webhook.serving.server import StartupError, build

    try:
        server = build(settings, listener_handoff=listener_handoff)
    except StartupError as exc:
        if debug:
            raise
        raise click.ClickException(str(exc)) from None
    server.run()


def _remove_in_owner(path: Path, owner: int) -> None:
    """Forked workers inherit atexit handlers: only the process that made `path` removes it."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _prepare_metrics_dir(path: Path | None) -> None:
    """An empty folder for prometheus_client's per-process files, exported to this process."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="dra-webhook-metrics-"))
        atexit.register(_remove_in_owner, path, os.getpid())
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise click.ClickException(f"metrics folder {path}: {exc.strerror}") from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


@cli.command(
    "hold-listener",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hold_listener(args: tuple[str, ...]) -> None:
    """Hold serve's listening socket in a sidecar, so a killed server costs no refused
    connection (`hold-listener --help`)."""
    # `dra-webhook hold-listener` is dispatched before this module is imported (entrypoint.py);
    # this command lists it and serves `python -m webhook hold-listener`.
    from webhook.serving.handoff import main as hold

    hold(list(args))


cli.add_command(certs_group, name="certs")
cli.add_command(admission_policies_group, name="admission-policies")


def main() -> None:
    cli(prog_name="dra-webhook")
