"""`kubectl dra`: click commands. Flags -> core -> render; DraError -> `Error: ...` (exit 1).

Usage errors exit 2 (click's default). Tracebacks appear only with --debug or
KUBECTL_DRA_DEBUG=1.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import click

from kubectl_dra.commands.audit import audit as audit_command
from kubectl_dra.errors import DraError, NotFoundError
from kubectl_dra.kube import ClusterReader
from kubectl_dra.options import kube_options, output_option
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy

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
    Examples:
      kubectl dra describe                   # devices by node: total, allocated, free
      kubectl dra describe pod train-0       # which GPU my pod got, and who else holds it
      kubectl dra validate -f claim.yaml     # check claims and selectors before applying
      kubectl dra convert -f legacy.yaml     # preview the nvidia.com/gpu -> DRA rewrite
      kubectl dra audit -A                   # what the webhook would do to running GPU workloads

    \b
    Shell completion (bash; zsh_source and fish_source likewise):
      eval "$(_KUBECTL_DRA_COMPLETE=bash_source kubectl-dra)"
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


# --- describe ------------------------------------------------------------------------------


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while describe loads and joins big lists.

    A 4,000-pod list decodes into millions of acyclic dicts and strings; the collector kept
    rescanning them while they were built (2/3 of the run at 4,000 pods). Nothing we build
    has cycles, so nothing is left for it to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


OUTPUTS = ("table", "wide", "json", "yaml")
NO_DEVICES = "No resources found (no ResourceSlice publishes devices)."


def cluster_reader(ctx: click.Context, *, kubeconfig: str | None, context: str | None) -> Any:
    """The ClusterReader given as `obj` (tests, benchmarks), else a KubeGateway from the flags."""
    injected = ctx.find_root().obj
    if injected is not None:
        return injected
    from kubectl_dra.kube import KubeGateway

    return KubeGateway.from_kubeconfig(kubeconfig, context)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a describe view looks, from the flags of `describe` and of its subcommand."""

    reader: ClusterReader
    namespace: str | None  # None: all namespaces
    explicit: bool  # -n or -A was given
    selector: str | None
    output: str

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    def nothing_found(self) -> None:
        where = f" in {self.namespace} namespace" if self.namespace else ""
        click.echo(f"No resources found{where}.", err=True)


def describe_scope(ctx: click.Context, **flags: Any) -> Scope:
    """Merge a subcommand's flags over the group's (`describe -A pods` = `describe pods -A`)."""
    parent = ctx.parent.params if ctx.parent and ctx.parent.command is describe else {}
    merged = {
        k: v if v not in (None, False, "table") else parent.get(k, v) for k, v in flags.items()
    }
    if merged["namespace"] and merged["all_namespaces"]:
        raise click.UsageError("-n/--namespace and -A/--all-namespaces cannot be used together")
    reader = cluster_reader(ctx, kubeconfig=merged["kubeconfig"], context=merged["context"])
    namespace = (
        None if merged["all_namespaces"] else merged["namespace"] or reader.default_namespace
    )
    return Scope(
        reader=reader,
        namespace=namespace,
        explicit=bool(merged["namespace"] or merged["all_namespaces"]),
        selector=merged["selector"],
        output=merged["output"],
    )


def describe_subcommand(func: Callable[..., None]) -> click.Command:
    """`describe KIND [NAME...]` with kubectl's flags; the function gets (ctx, names, **flags)."""
    for decorator in (
        click.pass_context,
        output_option(*OUTPUTS, default="table"),
        kube_options,
        click.argument("names", nargs=-1),
    ):
        func = decorator(func)
    return click.command()(func)


def _show(
    scope: Scope,
    items: Sequence[Any],
    *,
    kind: str,
    table: Callable[[], str],
    empty: str | None = None,
) -> None:
    """Items as a document (-o json|yaml) or a table; "No resources found" when there are none."""
    from kubectl_dra import render

    if not items:
        if empty:
            click.echo(empty, err=True)
        else:
            scope.nothing_found()
    elif scope.output in ("json", "yaml"):
        _emit(render.format_document(render.describe_document(kind, items), scope.output))
    else:
        _emit(table())


def _no_selector(scope: Scope, what: str) -> None:
    if scope.selector:
        raise click.UsageError(f"-l/--selector filters pods; it does not apply to {what}")


def _emit(text: str) -> None:
    click.echo(text, nl=False)


class AliasGroup(click.Group):
    """Subcommands answer to kubectl's plural and short names too (pods, po, claims, nodes...)."""

    ALIASES: ClassVar[dict[str, str]] = {
        "pods": "pod",
        "po": "pod",
        "claims": "claim",
        "resourceclaim": "claim",
        "resourceclaims": "claim",
        "nodes": "node",
        "no": "node",
    }

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@cli.group(cls=AliasGroup, invoke_without_command=True)
@kube_options
@output_option(*OUTPUTS, default="table")
@click.pass_context
def describe(ctx: click.Context, /, **flags: Any) -> None:
    """Show which pod holds which device: pods, claims, nodes, or the cluster at a glance.

    With no subcommand: one line per node with its devices by model (total, allocated,
    free) and the totals; with -n or -A, the devices each namespace's claims hold.

    \b
    Examples:
      # The cluster at a glance
      kubectl dra describe
    \b
      # Devices held per namespace and model
      kubectl dra describe -A
    \b
      # Which GPU did my pod get, and who else uses it?
      kubectl dra describe pod trainer-0 -n ml
    \b
      # Every device of a node and its holders, as JSON
      kubectl dra describe node gpu-a100-0 -o json
    """
    ctx.with_resource(paused_gc())
    if ctx.invoked_subcommand is not None:
        return
    from kubectl_dra import render, report

    scope = describe_scope(ctx, **flags)
    _no_selector(scope, "the cluster view")
    slices = scope.reader.list_resource_slices()
    if scope.explicit:
        usage = report.build_namespace_usage(
            scope.reader.list_resource_claims(scope.namespace), slices
        )
        _show(
            scope, usage, kind="NamespaceUsageList", table=lambda: render.render_namespaces(usage)
        )
        return
    cluster = report.build_cluster_report(slices, scope.reader.list_resource_claims(None))
    if scope.output in ("json", "yaml"):
        _emit(render.format_document(render.cluster_document(cluster), scope.output))
    elif not cluster.nodes:
        click.echo(NO_DEVICES, err=True)
    else:
        _emit(render.render_cluster(cluster, wide=scope.wide))


@describe_subcommand
def describe_pods(ctx: click.Context, /, names: tuple[str, ...], **flags: Any) -> None:
    """Show pods' claims, devices and who else holds them (also: pods, po).

    Without NAME, every pod that uses DRA (claims, a KEP-5004 claim, or our webhook's
    rewrite) in the namespace; -l filters by label. A pod rewritten by the kubectl-dra webhook
    also shows its original nvidia.com/gpu request (ORIGINAL).

    \b
    Examples:
      kubectl dra describe pod pod0 -n gpu
      kubectl dra describe pods -A -l app=train -o wide
    """
    from kubectl_dra import render, report

    scope = describe_scope(ctx, **flags)
    if names and scope.namespace is None:
        raise click.UsageError("a pod NAME needs a namespace: use -n, not -A")
    if names:
        pods = [_get_pod(scope, name) for name in dict.fromkeys(names)]
    else:
        pods = scope.reader.list_pods(scope.namespace, label_selector=scope.selector)
    claims = scope.reader.list_resource_claims(scope.namespace)
    reports = report.build_pod_reports(
        pods, claims, scope.reader.list_resource_slices(), only_dra=not names
    )
    _show(
        scope,
        reports,
        kind="PodReportList",
        table=lambda: render.render_pods(
            reports, wide=scope.wide, namespaces=scope.namespace is None
        ),
    )


def _get_pod(scope: Scope, name: str) -> dict[str, Any]:
    try:
        pod: dict[str, Any] = scope.reader.get_pod(scope.namespace or "", name)
    except NotFoundError:
        raise NotFoundError(f'pod "{name}" not found in namespace "{scope.namespace}"') from None
    return pod


@describe_subcommand
def describe_claims(ctx: click.Context, /, names: tuple[str, ...], **flags: Any) -> None:
    """Show ResourceClaims, their devices and consumers (also: claims).

    \b
    Examples:
      kubectl dra describe claim single-gpu -n gpu1
      kubectl dra describe claims -A -o yaml
    """
    from kubectl_dra import render, report

    scope = describe_scope(ctx, **flags)
    _no_selector(scope, "claims")
    claims = scope.reader.list_resource_claims(scope.namespace)
    known = {c["metadata"]["name"] for c in claims}
    for name in names:
        if name not in known:
            where = f'in namespace "{scope.namespace}"' if scope.namespace else "in any namespace"
            raise NotFoundError(f'resourceclaim "{name}" not found {where}')
    reports = report.build_claim_reports(claims, scope.reader.list_resource_slices(), names=names)
    _show(
        scope,
        reports,
        kind="ClaimReportList",
        table=lambda: render.render_claims(
            reports, wide=scope.wide, namespaces=scope.namespace is None
        ),
    )


@describe_subcommand
def describe_nodes(ctx: click.Context, /, names: tuple[str, ...], **flags: Any) -> None:
    """Show nodes' devices by model, and who holds each one (also: nodes).

    \b
    Examples:
      kubectl dra describe node gpu-a100-0
      kubectl dra describe nodes -o wide
    """
    from kubectl_dra import render, report

    scope = describe_scope(ctx, **flags)
    _no_selector(scope, "nodes")
    reports = report.build_node_reports(
        scope.reader.list_resource_slices(), scope.reader.list_resource_claims(None), names=names
    )
    missing = sorted(set(names) - {r.node for r in reports})
    if missing:
        raise NotFoundError(f'no ResourceSlice publishes devices for node "{missing[0]}"')
    _show(
        scope,
        reports,
        kind="NodeReportList",
        table=lambda: render.render_nodes(reports, wide=scope.wide),
        empty=NO_DEVICES,
    )


describe.add_command(describe_pods, "pod")
describe.add_command(describe_claims, "claim")
describe.add_command(describe_nodes, "node")


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


cli.add_command(audit_command)


def main() -> None:
    try:
        # Help reads `kubectl dra ...`; completion keys on the executable's name.
        cli(prog_name="kubectl dra", complete_var="_KUBECTL_DRA_COMPLETE")
    except KeyboardInterrupt:
        sys.exit(130)
