"""`dra-webhook admission-policies apply|delete`: the compiled route, installed or removed.

`apply` compiles the policy file (the text its ConfigMap holds) into the DeviceClasses, the
MutatingAdmissionPolicies, the ValidatingAdmissionPolicies and their bindings, server-side
applies them (classes first: the policies name them), then deletes what it installed before
and the policy no longer produces. Each policy is guarded by the ConfigMap: after an edit it
steps aside and the webhook serves the pods until `apply` runs again. On a server without
MutatingAdmissionPolicy v1 (before 1.36) it applies nothing and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from webhook.errors import GatewayError

if TYPE_CHECKING:
    from webhook.ops.route_install import RouteInstaller

_NO_MAP = (
    "the server has no MutatingAdmissionPolicy v1 (Kubernetes 1.36+): nothing {what}; every "
    "GPU pod goes through the webhook"
)


def _connect(kubeconfig: str | None, context: str | None) -> RouteInstaller:
    from webhook.ops.route_install import RouteInstaller

    try:
        return RouteInstaller.connect(kubeconfig, context)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None


_kubeconfig = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Default: the pod's ServiceAccount in a cluster, else $KUBECONFIG or ~/.kube/config.",
)
_context = click.option("--context", help="The kubeconfig context to use.")


@click.group("admission-policies")
def admission_policies_group() -> None:
    """Install the GPUPolicy compiled to admission policies (Kubernetes 1.36+), or remove it."""


@admission_policies_group.command("apply")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The GPUPolicy file: the policy ConfigMap's key mounted as a file, or a copy of it.",
)
@click.option(
    "--policy-configmap",
    "configmap",
    required=True,
    metavar="NAMESPACE/NAME[:KEY]",
    help="The ConfigMap the webhook reads (KEY default policy.yaml): the policies act only while "
    "it holds exactly the --policy file's text.",
)
@click.option(
    "--webhook-namespace",
    required=True,
    help="The webhook's namespace, left alone as its registration leaves it alone.",
)
@click.option(
    "--mig-profile",
    "mig_profiles",
    multiple=True,
    help="A MIG profile (e.g. 1g.10gb) to make classes for, so its pods are renamed too. "
    "Repeatable.",
)
@click.option(
    "--claim-resource-names/--no-claim-resource-names",
    default=False,
    show_default=True,
    help="Also let the default classes claim the legacy names (spec.extendedResourceName), so "
    "the scheduler serves pods neither route touches (exempt namespaces) through them. Off: a "
    "driver's own class may already claim `nvidia.com/gpu`, and the newest claimant wins.",
)
@_kubeconfig
@_context
def apply(
    policy_file: Path,
    configmap: str,
    webhook_namespace: str,
    mig_profiles: tuple[str, ...],
    claim_resource_names: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Compile the policy and server-side apply the classes, then the policies and bindings."""
    from dracore.admission_policies import compile_install
    from dracore.admission_policies.guard import ConfigMapReferenceError, read_policy_source
    from dracore.errors import PolicyError
    from dracore.names import is_dns_label
    from dracore.policy import Policy
    from webhook.ops.route_install import labelled, plan_prune

    if not is_dns_label(webhook_namespace):
        raise click.BadParameter(
            f"{webhook_namespace!r} is not a namespace name", param_hint="--webhook-namespace"
        )
    try:
        source = read_policy_source(policy_file, configmap)
        policy = Policy.from_yaml(source.text, source=str(policy_file))
    except ConfigMapReferenceError as exc:
        raise click.BadParameter(str(exc), param_hint="--policy-configmap") from None
    except (ValueError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    installer = _connect(kubeconfig, context)
    try:
        if not installer.serves_admission_policies():
            click.echo(_NO_MAP.format(what="applied"))
            return
        install = compile_install(
            policy,
            mig_profiles=mig_profiles,
            claim_resource_names=claim_resource_names,
            webhook_namespace=webhook_namespace,
            guard=source,
        )
        for note in install.notes:
            click.echo(f"Note: {note}", err=True)
        wanted = install.manifests
        for manifest in wanted:
            installer.apply(labelled(manifest))
            click.echo(f"applied {manifest['kind']} {manifest['metadata']['name']}")
        for kind, stale in plan_prune(installer.installed(), wanted):
            if installer.delete(kind, stale):
                click.echo(f"deleted {kind.kind} {stale} (the policy no longer produces it)")
        current = installer.configmap_text(source.namespace, source.name, source.key)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        installer.close()
    if wanted and current != source.text:
        click.echo(
            f"Warning: ConfigMap {source.reference} "
            + ("does not exist" if current is None else "holds another text than --policy")
            + ": the policies stay inactive (the webhook serves every pod) until it holds the "
            "--policy file's text",
            err=True,
        )


@admission_policies_group.command("delete")
@_kubeconfig
@_context
def delete(kubeconfig: str | None, context: str | None) -> None:
    """Delete every binding, policy and class `apply` installed (the label it puts on them)."""
    from webhook.ops.route_install import plan_prune

    installer = _connect(kubeconfig, context)
    try:
        if not installer.serves_admission_policies():
            click.echo(_NO_MAP.format(what="to delete"))
            return
        for kind, name in plan_prune(installer.installed(), []):
            if installer.delete(kind, name):
                click.echo(f"deleted {kind.kind} {name}")
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        installer.close()
