"""`kubectl dra convert`: legacy manifests in, the webhook's DRA rewrite out (offline)."""

from __future__ import annotations

from pathlib import Path

import click

from kubectl_dra.commands.common import emit, filename_option, load_policy, policy_option


@click.command()
@filename_option
@policy_option
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
    DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs and PodTemplates are
    converted.

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
    emit(to_json_list(result.objects) if output == "json" else to_yaml_stream(result.objects))
