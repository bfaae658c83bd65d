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
@click.option(
    "--kubernetes-version",
    default="1.37",
    show_default=True,
    metavar="MAJOR.MINOR",
    help="The cluster's release: from 1.36 the scheduler serves pods renamed to a DeviceClass.",
)
@click.option(
    "--no-classes",
    is_flag=True,
    help="The DeviceClasses `kubectl dra classes` generates are not installed: every pod takes "
    "the template path.",
)
def convert(
    filenames: tuple[str, ...],
    policy_file: Path | None,
    namespace: str | None,
    output: str,
    kubernetes_version: str,
    no_classes: bool,
) -> None:
    """Preview what the webhook does to legacy nvidia.com/gpu workloads, offline.

    Prints every input object (converted, or unchanged) plus the ResourceClaimTemplates and
    ResourceClaims they need. A pod the scheduler can serve through a generated DeviceClass
    (assumed installed unless --no-classes) is renamed to that class instead, as the webhook
    does; stderr says which path each converted pod takes, and why. Pods and the pod templates of Deployments, StatefulSets,
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
    from dracore.classes import parse_kubernetes_version
    from dracore.paths import ClusterOffer
    from kubectl_dra.convert import convert_documents
    from kubectl_dra.documents import load_documents
    from kubectl_dra.render import to_json_list, to_yaml_stream

    version = parse_kubernetes_version(kubernetes_version)
    if version is None:
        raise click.BadParameter(
            f"{kubernetes_version!r} is not a release such as 1.37",
            param_hint="--kubernetes-version",
        )
    policy = load_policy(policy_file)
    offer = ClusterOffer(version=version, assume_generated=not no_classes)
    result = convert_documents(
        load_documents(filenames), policy=policy, namespace=namespace, offer=offer
    )
    for warning in (*policy.warnings, *result.warnings):
        click.echo(f"Warning: {warning}", err=True)
    for line in result.paths:
        click.echo(f"Path: {line}", err=True)
    emit(to_json_list(result.objects) if output == "json" else to_yaml_stream(result.objects))
