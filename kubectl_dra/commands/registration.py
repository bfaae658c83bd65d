"""`kubectl dra registration`: the webhook's registration generated from the policy (offline)."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from kubectl_dra.commands.common import emit, load_policy, policy_option
from kubectl_dra.errors import InputError

# A CA bundle is a few certificates; anything larger is not one (and is not read whole).
MAX_CA_BUNDLE_BYTES = 64 * 1024
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def read_ca_bundle(path: Path) -> str:
    """The caBundle field (base64 of the PEM) from a PEM file of CA certificates."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CA_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CA_BUNDLE_BYTES:
        raise InputError(
            f"{path}: larger than {MAX_CA_BUNDLE_BYTES // 1024} KiB; --ca-bundle-file takes the "
            "PEM file of the CA that signed the webhook's serving certificate (ca.crt)"
        )
    if _PEM_CERTIFICATE not in data:
        raise InputError(
            f"{path}: no PEM certificate (-----BEGIN CERTIFICATE-----); --ca-bundle-file takes "
            "the CA's PEM file (ca.crt), not its base64 or a key"
        )
    return base64.b64encode(data).decode("ascii")


@click.command()
@policy_option
@click.option(
    "--service", help="The webhook's Service; prints a whole MutatingWebhookConfiguration."
)
@click.option(
    "-n",
    "--namespace",
    help="The webhook's namespace (left out of the namespaceSelector); prints a whole configuration.",
)
@click.option(
    "--ca-bundle-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM of the CA that signed the serving certificate, written as caBundle.",
)
@click.option(
    "--failure-policy",
    type=click.Choice(["Fail", "Ignore"]),
    default="Fail",
    show_default=True,
    help="What the API server does with a pod when the webhook cannot answer.",
)
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def registration(
    policy_file: Path | None,
    service: str | None,
    namespace: str | None,
    ca_bundle_file: Path | None,
    failure_policy: str,
    output: str,
) -> None:
    """Print the webhook's registration for a policy: which pods the API server sends.

    The matchConditions send pods asking for exactly the resources the policy maps, and
    the namespaceSelector leaves out the policy's exempt namespaces, the webhook's own and
    namespaces labelled kubectl-dra.io/ignore. Without --service, --namespace or
    --ca-bundle-file it prints the `webhooks[]` entry; with any of them, the whole
    MutatingWebhookConfiguration.

    \b
    Examples:
      # The webhook entry for your policy
      kubectl dra registration --policy policy.yaml
    \b
      # A whole configuration, applied
      kubectl dra registration --policy policy.yaml --service kubectl-dra-webhook \\
          -n kubectl-dra --ca-bundle-file certs/out/ca.crt | kubectl apply -f -
    """
    from dracore import registration as generated
    from kubectl_dra.render import to_json, to_yaml

    policy = load_policy(policy_file)
    whole = service is not None or namespace is not None or ca_bundle_file is not None
    entry = generated.webhook_entry(
        policy,
        service=service or generated.SERVICE_NAME,
        namespace=namespace or generated.SERVICE_NAMESPACE,
        ca_bundle=read_ca_bundle(ca_bundle_file) if ca_bundle_file else None,
        failure_policy=failure_policy,
    )
    document = generated.webhook_configuration(entry) if whole else entry
    emit(to_json(document) if output == "json" else to_yaml(document))
