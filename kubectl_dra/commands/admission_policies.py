"""`kubectl dra admission-policies`: the policy compiled to admission policies (1.36+)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kubectl_dra.commands.common import emit, load_policy, mig_profile_option, policy_option

if TYPE_CHECKING:
    from dracore.admission_policies.guard import PolicySource


@click.command("admission-policies")
@policy_option
@mig_profile_option(
    "A MIG profile (e.g. 1g.10gb) to make classes for, so its pods are renamed too. Repeatable."
)
@click.option(
    "--kubernetes-version",
    default="1.36",
    show_default=True,
    help="Kubernetes release of the server, e.g. 1.37; before 1.36 nothing is printed.",
)
@click.option(
    "--webhook-namespace",
    default="kubectl-dra",
    show_default=True,
    help="The webhook's namespace, left alone as its registration leaves it alone.",
)
@click.option(
    "--policy-configmap",
    "configmap",
    metavar="NAMESPACE/NAME[:KEY]",
    help="The ConfigMap (and key, default policy.yaml) the --policy file is installed as. Each "
    "policy then acts only while that ConfigMap holds exactly the file's text: after an edit "
    "it steps aside and the webhook serves the pods until this is applied again. Without it "
    "no such guard is written.",
)
@click.option(
    "--claim-resource-names/--no-claim-resource-names",
    default=False,
    show_default=True,
    help="Also let the default classes claim the legacy names (spec.extendedResourceName). Off: "
    "the policies rename to implicit names, and a driver's own class may already claim "
    "`nvidia.com/gpu` (the newest claimant wins).",
)
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", help="Output format."
)
def admission_policies(
    policy_file: Path | None,
    mig_profiles: tuple[str, ...],
    kubernetes_version: str,
    webhook_namespace: str,
    configmap: str | None,
    claim_resource_names: bool,
    output: str,
) -> None:
    """Print the DeviceClasses and admission policies that serve simple GPU pods in the API server.

    A pod asking for `nvidia.com/gpu: N` in its app containers only, with no pod-sharing,
    shared-claim or skip annotation, no GPU node labels to translate and no more GPUs than
    its namespace allows, is renamed by a MutatingAdmissionPolicy to the implicit name of the
    class carrying its namespace's sharing (deviceclass.resource.kubernetes.io/<class>): the
    scheduler then allocates it with no webhook call. Every other pod keeps its legacy resource
    and reaches the webhook. ValidatingAdmissionPolicies deny pods that name the policy's
    classes for more GPUs than maxGPUsPerPod. Needs Kubernetes 1.36 or later
    (admissionregistration.k8s.io/v1 MutatingAdmissionPolicy); for an older release this
    prints nothing, says so on stderr and exits 0: everything goes through the webhook.

    \b
    Examples:
      kubectl dra admission-policies --policy policy.yaml \\
          --policy-configmap kubectl-dra/kubectl-dra-policy | kubectl apply --server-side -f -
      kubectl dra admission-policies --policy policy.yaml | kubectl apply -f -
      kubectl dra admission-policies --policy policy.yaml --kubernetes-version 1.35
    """
    from dracore.admission_policies import compile_install, serves_admission_policies
    from dracore.classes import parse_kubernetes_version
    from dracore.names import is_dns_label
    from dracore.policy import Policy
    from kubectl_dra.render import to_json_list, to_yaml_stream

    version = parse_kubernetes_version(kubernetes_version)
    if version is None:
        raise click.BadParameter(
            f"{kubernetes_version!r} is not a Kubernetes release such as 1.36 or v1.37.2",
            param_hint="--kubernetes-version",
        )
    if not is_dns_label(webhook_namespace):
        raise click.BadParameter(
            f"{webhook_namespace!r} is not a namespace name", param_hint="--webhook-namespace"
        )
    guard = None
    if configmap is not None:
        if policy_file is None:
            raise click.UsageError(
                "--policy-configmap needs --policy: the file whose exact text the ConfigMap holds"
            )
        guard = _policy_source(policy_file, configmap)
        policy = Policy.from_yaml(guard.text, source=str(policy_file))
    else:
        policy = load_policy(policy_file)
    if not serves_admission_policies(version):
        click.echo(
            f"Note: Kubernetes {kubernetes_version} has no MutatingAdmissionPolicy v1 (1.36+): "
            "nothing to print; every GPU pod goes through the webhook",
            err=True,
        )
        return
    install = compile_install(
        policy,
        mig_profiles=mig_profiles,
        claim_resource_names=claim_resource_names,
        webhook_namespace=webhook_namespace,
        guard=guard,
    )
    for note in install.notes:
        click.echo(f"Note: {note}", err=True)
    manifests = install.manifests
    if guard is None and manifests:
        click.echo(
            "Note: no --policy-configmap: the policies carry no guard and keep renaming under "
            "this policy after the webhook's ConfigMap changes; apply them again after each edit",
            err=True,
        )
    emit(to_json_list(manifests) if output == "json" else to_yaml_stream(manifests))


def _policy_source(policy_file: Path, reference: str) -> PolicySource:
    """The --policy-configmap target and the exact text of the --policy file."""
    from dracore.admission_policies.guard import ConfigMapReferenceError, read_policy_source

    try:
        return read_policy_source(policy_file, reference)
    except ConfigMapReferenceError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy-configmap") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
