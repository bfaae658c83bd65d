"""`kubectl dra describe`: which pod holds which device, by pod, claim, node or namespace.

The group and its subcommands take the same flags (kubectl's -n, -A, -l, -o, --kubeconfig,
--context), given before or after the subcommand; `merge_flags` decides which one counts.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import click
from click.core import ParameterSource

from kubectl_dra.commands.common import cluster_reader, emit
from kubectl_dra.errors import KubeError, NotFoundError
from kubectl_dra.kube import ClusterReader
from kubectl_dra.options import kube_options, output_option, terminal_width
from kubectl_dra.table import safe_cell


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


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a describe view looks, from the flags of `describe` and of its subcommand."""

    reader: ClusterReader
    namespace: str | None  # None: all namespaces
    explicit: bool  # -n or -A was given
    selector: str | None
    output: str
    width: int  # of the terminal; -o wide ignores it

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    def nothing_found(self) -> None:
        where = f" in {self.namespace} namespace" if self.namespace else ""
        click.echo(f"No resources found{where}.", err=True)


_SOURCE_RANK: Final = {
    ParameterSource.COMMANDLINE: 3,
    ParameterSource.PROMPT: 3,
    ParameterSource.ENVIRONMENT: 2,
    ParameterSource.DEFAULT_MAP: 1,
    ParameterSource.DEFAULT: 0,
}


def _rank(ctx: click.Context, name: str) -> int:
    source = ctx.get_parameter_source(name)
    return _SOURCE_RANK.get(source, 0) if source is not None else 0


def merge_flags(ctx: click.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """A subcommand's flags over the group's (`describe -A pods` = `describe pods -A`).

    Whichever was given more explicitly wins (command line, then environment, then default),
    the subcommand on a tie: `describe -o wide pods -o table` shows a table.
    """
    parent = ctx.parent if ctx.parent is not None and ctx.parent.command is describe else None
    if parent is None:
        return dict(flags)
    return {
        name: parent.params[name]
        if name in parent.params and _rank(parent, name) > _rank(ctx, name)
        else value
        for name, value in flags.items()
    }


def describe_scope(ctx: click.Context, **flags: Any) -> Scope:
    """Where a describe view looks, from the merged flags of the group and the subcommand."""
    merged = merge_flags(ctx, flags)
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
        width=terminal_width(),
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
        emit(render.format_document(render.describe_document(kind, items), scope.output))
    else:
        emit(table())


def _no_selector(scope: Scope, what: str) -> None:
    if scope.selector:
        raise click.UsageError(f"-l/--selector filters pods; it does not apply to {what}")


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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """kubectl's TYPE/NAME form: `describe pod/trainer-0` is `describe pod trainer-0`."""
        if args and "/" in args[0]:
            kind, _, name = args[0].partition("/")
            if self.get_command(ctx, kind) is not None:
                args = [kind, name, *args[1:]]
        return super().resolve_command(ctx, args)


def object_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    """NAMEs given to `describe KIND`, each plain or as TYPE/NAME of the same kind, deduplicated.

    `describe pod/a pod/b` arrives here as ("a", "pod/b").
    """
    plain = []
    for name in names:
        if "/" in name:
            given, _, name = name.partition("/")
            if AliasGroup.ALIASES.get(given, given) != kind:
                raise click.UsageError(
                    f'"{given}/{name}": describe {kind} takes {kind} names; '
                    f"describe one kind of object at a time"
                )
        if not name:
            raise click.UsageError(f"describe {kind}: an empty name; give NAME or {kind}/NAME")
        plain.append(name)
    return tuple(dict.fromkeys(plain))


@click.group(cls=AliasGroup, invoke_without_command=True)
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
            scope,
            usage,
            kind="NamespaceUsageList",
            table=lambda: render.render_namespaces(usage, width=scope.width),
        )
        return
    cluster = report.build_cluster_report(slices, scope.reader.list_resource_claims(None))
    if scope.output in ("json", "yaml"):
        emit(render.format_document(render.cluster_document(cluster), scope.output))
    elif not cluster.nodes:
        click.echo(NO_DEVICES, err=True)
    else:
        emit(render.render_cluster(cluster, wide=scope.wide, width=scope.width))


@describe_subcommand
def describe_pods(ctx: click.Context, /, names: tuple[str, ...], **flags: Any) -> None:
    """Show pods' claims, devices and who else holds them (also: pods, po).

    Without NAME, every pod that uses DRA (claims, a KEP-5004 claim, or our webhook's
    rewrite) in the namespace, one row per request; -l filters by label. With NAME (or
    pod/NAME), one block per pod as `kubectl describe` prints it: its node and phase (and while
    pending, the scheduler's reason), then each claim and the device of each request (-o wide:
    the rows instead). A pod
    rewritten by the kubectl-dra webhook also shows its original nvidia.com/gpu request.

    \b
    Examples:
      kubectl dra describe pod pod0 -n gpu
      kubectl dra describe pod/pod0 -n gpu
      kubectl dra describe pods -A -l app=train -o wide
    """
    from kubectl_dra import render, report

    names = object_names("pod", names)
    scope = describe_scope(ctx, **flags)
    if names and scope.namespace is None:
        raise click.UsageError("a pod NAME needs a namespace: use -n, not -A")
    if names:
        pods = [_get_pod(scope, name) for name in names]
    else:
        pods = scope.reader.list_pods(scope.namespace, label_selector=scope.selector)
    claims = scope.reader.list_resource_claims(scope.namespace)
    reports = report.build_pod_reports(
        pods,
        claims,
        scope.reader.list_resource_slices(),
        only_dra=not names,
        device_classes=_classes_for_pending(scope, claims),
    )
    _show(
        scope,
        reports,
        kind="PodReportList",
        table=lambda: (
            render.render_pod_blocks(reports, width=scope.width)
            if names and not scope.wide
            else render.render_pods(
                reports, wide=scope.wide, namespaces=scope.namespace is None, width=scope.width
            )
        ),
    )


def _classes_for_pending(scope: Scope, claims: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DeviceClasses, read (one list call) only when a claim is not allocated yet: its
    sharing comes from its class. An allocated claim carries its class's config already."""
    if all((c.get("status") or {}).get("allocation") for c in claims):
        return []
    try:
        return scope.reader.list_device_classes()
    except KubeError as exc:  # e.g. RBAC allows claims but not the cluster-scoped classes
        click.echo(
            f"Warning: {safe_cell(' '.join(str(exc).split()))}; the SHARING of claims "
            "not allocated yet leaves out their DeviceClass's config",
            err=True,
        )
        return []


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

    names = object_names("claim", names)
    scope = describe_scope(ctx, **flags)
    _no_selector(scope, "claims")
    claims = scope.reader.list_resource_claims(scope.namespace)
    known = {c["metadata"]["name"] for c in claims}
    for name in names:
        if name not in known:
            where = f'in namespace "{scope.namespace}"' if scope.namespace else "in any namespace"
            raise NotFoundError(f'resourceclaim "{name}" not found {where}')
    reports = report.build_claim_reports(
        claims,
        scope.reader.list_resource_slices(),
        names=names,
        device_classes=_classes_for_pending(scope, claims),
    )
    _show(
        scope,
        reports,
        kind="ClaimReportList",
        table=lambda: render.render_claims(
            reports, wide=scope.wide, namespaces=scope.namespace is None, width=scope.width
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

    names = object_names("node", names)
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
        table=lambda: render.render_nodes(reports, wide=scope.wide, width=scope.width),
        empty=NO_DEVICES,
    )


describe.add_command(describe_pods, "pod")
describe.add_command(describe_claims, "claim")
describe.add_command(describe_nodes, "node")
