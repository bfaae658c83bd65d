"""What several commands share: the -f flag, the policy file, the cluster reader, output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dracore.policy import Policy

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

policy_option = click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="GPUPolicy YAML, or a ConfigMap manifest holding it (default: the built-in policy).",
)


F = TypeVar("F", bound=Callable[..., Any])


def mig_profile_option(help: str) -> Callable[[F], F]:
    """`--mig-profile` (repeatable), with the command's own help."""
    return click.option("--mig-profile", "mig_profiles", multiple=True, help=help)


def load_policy(path: Path | None) -> Policy:
    """The --policy file (unreadable or non-UTF-8 files are a one-line PolicyError), or the default."""
    return Policy.default() if path is None else Policy.from_file(path)


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
