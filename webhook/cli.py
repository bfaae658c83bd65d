"""`dra-webhook`: run the admission webhook."""

from __future__ import annotations

import logging
import ssl
import sys
from pathlib import Path

import click

from webhook.errors import PolicyError
from webhook.policy import Policy
from webhook.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The kubectl-dra mutating admission webhook: legacy nvidia.com/gpu pods -> DRA claims."""


@cli.command()
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="GPUPolicy YAML (or a ConfigMap manifest holding it). Default: the built-in policy.",
)
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory with tls.crt and tls.key.",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=9443, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Kubeconfig for creating templates. Default: the in-cluster service account.",
)
def serve(
    policy_file: Path | None, cert_dir: Path, host: str, port: int, kubeconfig: str | None
) -> None:
    """Serve POST /mutate over HTTPS (development server; see README for production)."""
    from webhook.app import create_app
    from webhook.kube import KubeGateway

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = Settings(
        host=host, port=port, cert_dir=cert_dir, policy_file=policy_file, kubeconfig=kubeconfig
    )
    try:
        policy = Policy.from_file(policy_file) if policy_file else Policy.default()
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    cert, key = cert_dir / "tls.crt", cert_dir / "tls.key"
    for path in (cert, key):
        if not path.is_file():
            raise click.ClickException(
                f"{path} not found; create it with `dra-webhook certs generate`"
            )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    app = create_app(settings, policy=policy, gateway=KubeGateway.from_kubeconfig(kubeconfig))
    app.run(host=host, port=port, ssl_context=context, threaded=True)


def main() -> None:
    cli(prog_name="dra-webhook")
