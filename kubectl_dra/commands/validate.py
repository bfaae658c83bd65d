"""`kubectl dra validate`: findings about manifests, offline or against the cluster."""

from __future__ import annotations

import click

from kubectl_dra.commands.common import cluster_reader, filename_option
from kubectl_dra.options import output_option


@click.command()
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
    variable, unguarded attribute reads, and a cost budget: a selector too expensive to
    check or run is reported as such). With --cluster it also evaluates every selector
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
