"""`kubectl dra classes`: the DeviceClasses the policy needs on the scheduler's path (KEP-5004)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kubectl_dra.commands.common import (
    cluster_reader,
    emit,
    load_policy,
    mig_profile_option,
    policy_option,
)

VERSION_HELP = (
    "Kubernetes release of the server the classes are for, e.g. 1.34; before 1.36 "
    "extendedResourceName is left out (default: the server's with --cluster, else 1.36+)."
)


@click.command()
@policy_option
@mig_profile_option(
    "A MIG profile (e.g. 1g.10gb) to make classes for. Repeatable; --cluster adds the published ones."
)
@click.option("--kubernetes-version", help=VERSION_HELP)
@click.option(
    "--extended-resource-names/--no-extended-resource-names",
    "claim_names",
    default=None,
    help="Write spec.extendedResourceName whatever the version (a 1.34-1.35 server needs the DRAExtendedResource feature gate).",
)
@click.option(
    "--cluster",
    "use_cluster",
    is_flag=True,
    help="Compare with the cluster's DeviceClasses and ResourceSlices instead of printing the classes.",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use.")
@click.option("--context", help="The name of the kubeconfig context to use.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "text"]),
    help="Output format: yaml (default) or json for the classes; text (default), json or yaml for the findings of --cluster.",
)
@click.pass_context
def classes(
    ctx: click.Context,
    policy_file: Path | None,
    mig_profiles: tuple[str, ...],
    kubernetes_version: str | None,
    claim_names: bool | None,
    use_cluster: bool,
    kubeconfig: str | None,
    context: str | None,
    output: str | None,
) -> None:
    """Print the DeviceClasses that let the scheduler serve legacy GPU requests itself.

    From Kubernetes 1.36 the scheduler allocates `nvidia.com/gpu: N` through DRA when a
    DeviceClass names that resource in spec.extendedResourceName (KEP-5004), and any class
    can be asked for as deviceclass.resource.kubernetes.io/<class>. For every resource of the
    policy this makes one class, configured with the policy's default sharing, that claims the
    resource's name; every other sharing the policy's namespace rules use gets a class of its
    own (kubectl-dra-gpu-timeslicing, kubectl-dra-gpu-mps, ...) that pods reach by its
    implicit name. MIG resources get one class per profile.

    With --cluster it reads the DeviceClasses and ResourceSlices (two lists, plus the server
    version) and reports each class as missing, different or in place, classes claiming the
    same extended resource name (the scheduler uses only the newest), and classes whose
    selectors match no published device. Exit code 1 if a class is missing, different,
    loses its name to another class, or has a selector that fails on a published device.

    \b
    Examples:
      # The classes for the built-in policy, applied
      kubectl dra classes --mig-profile 1g.10gb | kubectl apply -f -
    \b
      # Under your policy, for a 1.34 server (no extendedResourceName)
      kubectl dra classes --policy policy.yaml --kubernetes-version 1.34
    \b
      # Are they installed, and do they select devices?
      kubectl dra classes --cluster
    """
    from dracore.classes import (
        generate_classes,
        parse_kubernetes_version,
        published_mig_profiles,
        scheduler_path_not_offered,
        serves_extended_resource_names,
    )
    from kubectl_dra.kube import VersionReader
    from kubectl_dra.render import to_json, to_json_list, to_yaml, to_yaml_stream
    from kubectl_dra.validate import format_findings, has_errors
    from kubectl_dra.validate.deviceclasses import class_selectors, compare_classes
    from kubectl_dra.validate.findings import Finding

    if not use_cluster and output == "text":
        raise click.UsageError("-o text is the findings table of --cluster; use -o yaml or json")
    if kubernetes_version is not None and parse_kubernetes_version(kubernetes_version) is None:
        raise click.BadParameter(
            f"{kubernetes_version!r} is not a Kubernetes release such as 1.34 or v1.37.2",
            param_hint="--kubernetes-version",
        )
    policy = load_policy(policy_file)
    device_classes: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    profiles = list(mig_profiles)
    if use_cluster:
        reader = cluster_reader(ctx, kubeconfig=kubeconfig, context=context)
        device_classes = reader.list_device_classes()
        slices = reader.list_resource_slices()
        profiles += published_mig_profiles(slices)
        if kubernetes_version is None and isinstance(reader, VersionReader):
            kubernetes_version = reader.server_version()
    version = parse_kubernetes_version(kubernetes_version or "")
    if claim_names is None:
        claim_names = version is None or serves_extended_resource_names(version)
        if not claim_names:
            click.echo(
                f"Note: Kubernetes {kubernetes_version} enables KEP-5004 only with the feature gate "
                "DRAExtendedResource, so extendedResourceName is left out; pods ask for the classes "
                "as deviceclass.resource.kubernetes.io/<class> (--extended-resource-names writes it)",
                err=True,
            )
    result = generate_classes(
        policy,
        mig_profiles=profiles,
        extended_resource_names=claim_names,
        class_selectors=class_selectors(device_classes),
    )
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    if not use_cluster:
        manifests = result.manifests
        emit(to_json_list(manifests) if output == "json" else to_yaml_stream(manifests))
        return
    findings = compare_classes(
        result.classes, device_classes=device_classes, resource_slices=slices
    )
    not_offered = version and scheduler_path_not_offered(version, device_classes)
    if version and not_offered:
        # First: it says whether the rest of the report matters on this cluster.
        where = f"Kubernetes/v{version[0]}.{version[1]}"
        findings = [Finding("warning", where, "serverVersion", not_offered), *findings]
    documents = [f.to_dict() for f in findings]
    if output == "json":
        emit(to_json(documents))
    elif output == "yaml":
        emit(to_yaml(documents))
    else:
        emit(format_findings(findings))
    if has_errors(findings):
        ctx.exit(1)
