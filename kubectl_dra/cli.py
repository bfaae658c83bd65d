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
from kubectl_dra.options import output_option
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


filename_option = click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    help="Manifest file (YAML or JSON, multi-document); '-' reads stdin. Repeatable.",
)


def load_policy(path: Path | None) -> Policy:
    return Policy.from_file(path) if path else Policy.default()


@cli.command()
@filename_option
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


def cluster_reader(ctx: click.Context, *, kubeconfig: str | None, context: str | None) -> Any:
    """The ClusterReader given as `obj` (tests, benchmarks), else a KubeGateway from the flags."""
    injected = ctx.find_root().obj
    if injected is not None:
        return injected
    from kubectl_dra.kube import KubeGateway

    return KubeGateway.from_kubeconfig(kubeconfig, context)


@cli.command()
@filename_option
@click.option(
    "--cluster",
    "use_cluster",
    is_flag=True,
    help="Also check against the cluster: DeviceClasses, ResourceSlices, claims and templates.",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use.")
@click.option("--context", help="The name of the kubeconfig context to use.")
@click.option(
    "-n",
    "--namespace",
    help="Namespace of objects that do not set one (default: the context's with --cluster).",
)
@output_option("text", "json", default="text")
@click.pass_context
def validate(
    ctx: click.Context,
    filenames: tuple[str, ...],
    use_cluster: bool,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    output: str,
) -> None:
    """Check ResourceClaims, templates, DeviceClasses and pods before the cluster does.

    Reports the shape of resource.k8s.io/v1 objects, the API server's limits, claim
    references between pods and templates, and CEL selectors (syntax, the `device`
    variable, unguarded attribute reads). With --cluster it also evaluates every selector
    on the devices the cluster's ResourceSlices publish and says whether one node can
    satisfy each request. Findings go to stdout as SEVERITY OBJECT FIELD MESSAGE; the exit
    code is 1 if any finding is an error.

    \b
    Examples:
      # Check manifests offline
      kubectl dra validate -f claim.yaml -f pod.yaml
    \b
      # Against the current cluster, as JSON
      kubectl dra validate -f gpu-job.yaml --cluster -o json
    \b
      # Check what convert produces
      kubectl dra convert -f legacy.yaml | kubectl dra validate -f -
    """
    from kubectl_dra.documents import load_documents
    from kubectl_dra.render import to_json
    from kubectl_dra.validate import (
        ClusterSnapshot,
        format_findings,
        has_errors,
        summarize,
        validate_documents,
    )

    documents = load_documents(filenames)
    snapshot = None
    if use_cluster:
        reader = cluster_reader(ctx, kubeconfig=kubeconfig, context=context)
        snapshot = ClusterSnapshot.from_reader(reader)
        namespace = namespace or reader.default_namespace
    findings = validate_documents(documents, cluster=snapshot, namespace=namespace or "default")
    if output == "json":
        click.echo(to_json([f.to_dict() for f in findings]), nl=False)
    else:
        click.echo(format_findings(findings), nl=False)
    click.echo(summarize(findings, documents=documents), err=True)
    if has_errors(findings):
        ctx.exit(1)


def main() -> None:
    try:
        cli(prog_name="kubectl dra")
    except KeyboardInterrupt:
        sys.exit(130)
