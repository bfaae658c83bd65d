"""What several commands share: the -f flag, the policy file, the cluster reader, output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kubectl_dra.documents import decode
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy

if TYPE_CHECKING:
    from kubectl_dra.kube import ClusterReader

filename_option = click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    help="Manifest file (YAML or JSON, multi-document); '-' reads stdin. Repeatable.",
)


def load_policy(path: Path | None) -> Policy:
    """The --policy file (decoded here, so a non-UTF-8 file is a one-line error), or the default."""
    if path is None:
        return Policy.default()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"cannot read: {exc.strerror}"], source=str(path)) from None
    return Policy.from_yaml(decode(data, str(path)), source=str(path))


def cluster_reader(
    ctx: click.Context, *, kubeconfig: str | None, context: str | None
) -> ClusterReader:
    """The ClusterReader given as `obj` (tests, benchmarks), else a KubeGateway from the flags."""
    injected: ClusterReader | None = ctx.find_root().obj
    if injected is not None:
        return injected
    from kubectl_dra.kube import KubeGateway

    return KubeGateway.from_kubeconfig(kubeconfig, context)


def emit(text: str) -> None:
    click.echo(text, nl=False)
