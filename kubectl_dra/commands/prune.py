"""`kubectl dra prune`: flags -> three list calls -> kubectl_dra.prune -> a table or deletions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import click

from kubectl_dra.commands.common import emit
from kubectl_dra.prune import (
    DEFAULT_GRACE,
    MANAGED_SELECTOR,
    MIN_GRACE,
    Leftover,
    PrunePlan,
    format_age,
    parse_duration,
    plan_prune,
)


class PruneClient(Protocol):
    """What prune needs of the cluster (kubectl_dra.kube.KubeGateway)."""

    @property
    def default_namespace(self) -> str: ...

    def list_labelled(
        self, kind: str, namespace: str | None, *, label_selector: str
    ) -> list[dict[str, Any]]: ...

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    def delete_unchanged(
        self, kind: str, namespace: str, name: str, *, uid: str, resource_version: str
    ) -> str: ...


def _client(ctx: click.Context, kubeconfig: str | None, context: str | None) -> PruneClient:
    injected: PruneClient | None = ctx.find_root().obj  # tests hand in their own
    if injected is not None:
        return injected
    from kubectl_dra.kube import KubeGateway

    return KubeGateway.from_kubeconfig(kubeconfig, context)


def _grace(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    try:
        grace = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if grace < MIN_GRACE:
        raise click.BadParameter(
            "must be at least 5m: the webhook remembers the templates it made for 5 minutes "
            "and would not make one again for the next pod of its shape"
        )
    return grace


@click.command()
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use.")
@click.option("--context", help="The name of the kubeconfig context to use.")
@click.option("-n", "--namespace", help="Prune in this namespace (default: the context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Prune in all namespaces.")
@click.option(
    "--older-than",
    "grace",
    default=DEFAULT_GRACE,
    show_default=True,
    callback=_grace,
    metavar="DURATION",
    help="Only objects created at least this long ago (e.g. 90m, 1h, 2d; at least 5m).",
)
@click.option("--yes", is_flag=True, help="Delete them; without it, only show what would go.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.pass_context
def prune(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    grace: Any,
    yes: bool,
    output: str,
) -> None:
    """Delete the ResourceClaimTemplates and shared ResourceClaims the webhook made that no pod uses.

    \b
    Without --yes, a dry run: prints what would be deleted.
    \b
    Examples:
      kubectl dra prune -A                     # what is left over, everywhere
      kubectl dra prune -n ml --yes            # delete the leftovers of namespace ml
      kubectl dra prune -A --older-than 1d -o json

    An object goes only if it carries app.kubernetes.io/managed-by=kubectl-dra, has no owner,
    no pod in its namespace references it, no pod holds it (claims), and it is older than
    --older-than. Each deletion is conditional on the object's uid and resourceVersion, so an
    object changed since it was listed is kept. Details: docs/prune.md.
    """
    client = _client(ctx, kubeconfig, context)
    scope = None if all_namespaces else (namespace or client.default_namespace)
    # Objects first, pods last: a pod admitted in between is seen, and keeps what it uses.
    templates = client.list_labelled(
        "ResourceClaimTemplate", scope, label_selector=MANAGED_SELECTOR
    )
    claims = client.list_labelled("ResourceClaim", scope, label_selector=MANAGED_SELECTOR)
    pods = client.list_pods(scope)
    plan = plan_prune(
        templates=templates, claims=claims, pods=pods, now=datetime.now(UTC), grace=grace
    )
    results = (
        [
            client.delete_unchanged(
                o.kind, o.namespace, o.name, uid=o.uid, resource_version=o.resource_version
            )
            for o in plan.leftovers
        ]
        if yes
        else ["would delete"] * len(plan.leftovers)
    )
    emit(_render(plan.leftovers, results, output=output, dry_run=not yes))
    click.echo(_summary(plan, results, yes=yes, scope=scope), err=True)


def _render(
    leftovers: tuple[Leftover, ...], results: list[str], *, output: str, dry_run: bool
) -> str:
    from kubectl_dra import render

    if output == "table":
        if not leftovers:
            return ""
        rows = [
            [o.namespace, o.kind, o.name, format_age(o.age), result]
            for o, result in zip(leftovers, results, strict=True)
        ]
        return render.format_table(["NAMESPACE", "KIND", "NAME", "AGE", "RESULT"], rows)
    document = {
        "apiVersion": "kubectl-dra.io/v1alpha1",
        "kind": "PruneResult",
        "dryRun": dry_run,
        "items": [
            {
                "kind": o.kind,
                "namespace": o.namespace,
                "name": o.name,
                "uid": o.uid,
                "resourceVersion": o.resource_version,
                "ageSeconds": int(o.age.total_seconds()),
                "result": result,
            }
            for o, result in zip(leftovers, results, strict=True)
        ],
    }
    return render.format_document(document, output)


def _summary(plan: PrunePlan, results: list[str], *, yes: bool, scope: str | None) -> str:
    where = f"namespace {scope}" if scope else "all namespaces"
    kept = f"kept {plan.in_use} in use and {plan.too_new} newer than --older-than"
    if not yes:
        action = f"{len(plan.leftovers)} would be deleted (run again with --yes to delete them)"
        return f"{where}: {action}; {kept}"
    counts = {r: results.count(r) for r in ("deleted", "changed", "gone")}
    return (
        f"{where}: deleted {counts['deleted']}; {counts['changed']} changed since listed and kept; "
        f"{counts['gone']} already gone; {kept}"
    )
