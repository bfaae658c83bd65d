"""`kubectl dra`: click commands. Flags -> core -> render; DraError -> `Error: ...` (exit 1).

Usage errors exit 2 (click's default). Tracebacks appear only with --debug or
KUBECTL_DRA_DEBUG=1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kubectl_dra.errors import DraError
from webhook.errors import PolicyError
from webhook.policy import Policy

CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "KUBECTL_DRA",
}


class DraGroup(click.Group):
    """Turns our errors into one clean line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DraError, PolicyError) as exc:
            if ctx.meta.get("kubectl_dra.debug"):
                raise
            raise click.ClickException(str(exc)) from None


@click.group(cls=DraGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--debug", is_flag=True, envvar="KUBECTL_DRA_DEBUG", help="Show tracebacks on errors."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """See, check and convert Kubernetes DRA (Dynamic Resource Allocation) GPU workloads.

    \b
    Find more information at: README.md of kubectl-dra.
    """
    ctx.meta["kubectl_dra.debug"] = debug


def load_policy(path: Path | None) -> Policy:
    return Policy.from_file(path) if path else Policy.default()


@cli.command()
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    help="Manifest file (YAML or JSON, multi-document); '-' reads stdin. Repeatable.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="GPUPolicy YAML, or a ConfigMap manifest holding it (default: the built-in policy).",
)
@click.option(
    "-n", "--namespace", help="Namespace for objects that do not set one (used for policy rules)."
)
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def convert(
    filenames: tuple[str, ...], policy_file: Path | None, namespace: str | None, output: str
) -> None:
    """Preview what the webhook does to legacy nvidia.com/gpu workloads, offline.

    Prints every input object (converted, or unchanged) plus the ResourceClaimTemplates and
    ResourceClaims they need. Pods and the pod templates of Deployments, StatefulSets,
    DaemonSets, ReplicaSets, Jobs, CronJobs and PodTemplates are converted.

    \b
    Examples:
      # Preview the rewrite of a deployment
      kubectl dra convert -f deploy.yaml
    \b
      # Under your cluster's policy, then apply the result
      kubectl dra convert -f deploy.yaml --policy policy.yaml | kubectl apply -n ml -f -
    """
    from kubectl_dra.convert import convert_documents
    from kubectl_dra.documents import load_documents
    from kubectl_dra.render import to_json_list, to_yaml_stream

    policy = load_policy(policy_file)
    result = convert_documents(load_documents(filenames), policy=policy, namespace=namespace)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    text = to_json_list(result.objects) if output == "json" else to_yaml_stream(result.objects)
    click.echo(text, nl=False)


def main() -> None:
    try:
        cli(prog_name="kubectl dra")
    except KeyboardInterrupt:
        sys.exit(130)
