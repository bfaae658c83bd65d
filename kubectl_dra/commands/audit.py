"""`kubectl dra audit`: flags -> lists -> kubectl_dra.audit -> text, document and exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

POLICY_CONFIGMAP: Final = "kubectl-dra/kubectl-dra-policy"  # as manifests/ and the chart install it
FAIL_EXIT: Final = 3  # --fail-on matched: distinct from errors (1) and usage errors (2)


def _reader(ctx: click.Context, kubeconfig: str | None, context: str | None) -> Any:
    injected = ctx.find_root().obj  # tests and benchmarks hand in their own reader
    if injected is not None:
        return injected
    from kubectl_dra.kube import KubeGateway

    return KubeGateway.from_kubeconfig(kubeconfig, context)


def _policy(reader: Any, policy_file: Path | None, configmap: str) -> tuple[Any, str]:
    from dracore.policy import Policy

    if policy_file is not None:
        return Policy.from_file(policy_file), str(policy_file)
    namespace, _, name = configmap.partition("/")
    if not namespace or not name:
        raise click.BadParameter("must be NAMESPACE/NAME", param_hint="--policy-configmap")
    found = reader.get_config_map(namespace, name)
    if found is None:
        click.echo(
            f"Warning: ConfigMap {configmap} not found; auditing under the built-in policy "
            "(use --policy FILE for another)",
            err=True,
        )
        return Policy.default(), "built-in"
    return Policy.from_configmap(found), f"ConfigMap {configmap}"


@click.command()
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use.")
@click.option("--context", help="The name of the kubeconfig context to use.")
@click.option(
    "-n", "--namespace", help="Audit workloads of this namespace (default: the context's)."
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Audit workloads of all namespaces.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="GPUPolicy YAML (or its ConfigMap manifest) instead of the one in the cluster.",
)
@click.option(
    "--policy-configmap",
    default=POLICY_CONFIGMAP,
    show_default=True,
    metavar="NAMESPACE/NAME",
    help="Where the webhook's policy ConfigMap is (key policy.yaml).",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table",
    show_default=True, help="Output format.",
)  # fmt: skip
@click.option(
    "--fail-on",
    type=click.Choice(["denied", "unready"]),
    multiple=True,
    help=f"Exit {FAIL_EXIT} if a workload would be denied, or a readiness finding is unready. Repeatable.",
)
@click.pass_context
def audit(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    policy_file: Path | None,
    policy_configmap: str,
    output: str,
    fail_on: tuple[str, ...],
) -> None:
    """What Enforce would do to the GPU workloads already running, and is DRA ready for them.

    Lists the workloads (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, ReplicaSets and
    ReplicationControllers without an owner, bare Pods; each counted once, at its owner) that ask
    for a legacy GPU resource, and for each what the webhook would do under the policy in force
    (the cluster's ConfigMap, or --policy): rewritten (DeviceClass, sharing, selectors),
    unchanged (exempt, skipped) or denied, with the webhook's message. Then devices per model and
    MIG profile (a GPU and its MIG slices count once), demand against free devices, and readiness
    findings: DeviceClasses, drivers, nodes still advertising nvidia.com/gpu, KEP-5004 classes,
    the webhook's registration. A constant number of list calls, however large the cluster.

    \b
    Examples:
      kubectl dra audit -A                        # the whole cluster
      kubectl dra audit -n ml -o wide             # one namespace, with selectors
      kubectl dra audit -A --policy new.yaml      # under a policy not applied yet
      kubectl dra audit -A --fail-on denied --fail-on unready -o json > audit.json   # CI gate
    """
    from kubectl_dra.audit.render import audit_document, render_audit
    from kubectl_dra.audit.report import build_audit, read_cluster
    from kubectl_dra.options import terminal_width
    from kubectl_dra.render import format_document

    if namespace and all_namespaces:
        raise click.UsageError("-n/--namespace and -A/--all-namespaces cannot be used together")
    reader = _reader(ctx, kubeconfig, context)
    scope = None if all_namespaces else namespace or reader.default_namespace
    policy, source = _policy(reader, policy_file, policy_configmap)
    report = build_audit(read_cluster(reader, scope), policy=policy, source=source)
    if output in ("json", "yaml"):
        click.echo(format_document(audit_document(report), output), nl=False)
    else:
        click.echo(render_audit(report, wide=output == "wide", width=terminal_width()), nl=False)
    failed = [
        reason
        for reason, hit in (
            ("denied", any(w.decision == "denied" and not w.exempt for w in report.workloads)),
            ("unready", not report.summary.ready),
        )
        if reason in fail_on and hit
    ]
    if failed:
        click.echo(f"audit: --fail-on {' and '.join(failed)} matched", err=True)
        ctx.exit(FAIL_EXIT)
