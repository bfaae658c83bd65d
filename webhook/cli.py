"""`dra-webhook`: run the admission webhook."""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import tempfile
from pathlib import Path

import click

from webhook.certs_cli import certs_group
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy
from webhook.errors import GatewayError
from webhook.settings import Settings


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
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--graceful-timeout",
    default=25,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds in-flight reviews get to finish after SIGTERM.",
)
@click.option(
    "--keepalive",
    default=30,
    show_default=True,
    type=click.IntRange(0, 3600),
    help="Seconds an idle keep-alive connection stays open.",
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
def serve(
    policy_file: Path | None,
    cert_dir: Path,
    host: str,
    port: int,
    kubeconfig: str | None,
    offline: bool,
    workers: int,
    threads: int,
    graceful_timeout: int,
    keepalive: int,
    reload_interval: float,
    metrics_dir: Path | None,
    log_level: str,
) -> None:
    """Serve POST /mutate, /healthz, /readyz and /metrics over HTTPS with gunicorn.

    Logs are JSON lines on stderr. SIGTERM drains in-flight reviews, then exits.
    """
    from webhook import logs

    logs.configure(log_level)
    _prepare_metrics_dir(metrics_dir)
    # Imported only now: prometheus_client picks its multiprocess storage at import time.
    from webhook.app import create_app
    from webhook.reload import CertReloader, PolicyReloader, Reloadable
    from webhook.server import ServerOptions, WebhookServer

    for name in ("tls.crt", "tls.key"):
        if not (cert_dir / name).is_file():
            raise click.ClickException(
                f"{cert_dir / name} not found; create it with `dra-webhook certs generate`"
            )
    try:
        certificate = CertReloader(cert_dir)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot load the certificate in {cert_dir}: {exc}") from None
    try:
        reloader = PolicyReloader(policy_file) if policy_file else None
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    gateway = None
    if not offline:
        from webhook.kube import KubeGateway

        try:
            gateway = KubeGateway.from_kubeconfig(kubeconfig)
        except GatewayError as exc:
            raise click.ClickException(f"{exc} (or pass --offline)") from None
    status: list[Reloadable] = [certificate] if reloader is None else [reloader, certificate]
    settings = Settings(
        host=host, port=port, cert_dir=cert_dir, policy_file=policy_file, kubeconfig=kubeconfig
    )
    app = create_app(settings, policy=reloader or Policy.default(), gateway=gateway, status=status)
    options = ServerOptions(
        bind=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        workers=workers,
        threads=threads,
        graceful_timeout=graceful_timeout,
        keepalive=keepalive,
        reload_interval=reload_interval,
        log_level=log_level,
    )
    WebhookServer(app, options=options, certificate=certificate, policy=reloader).run()


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


cli.add_command(certs_group, name="certs")


def main() -> None:
    cli(prog_name="dra-webhook")
