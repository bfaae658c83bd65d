"""The official Kubernetes client, for operator tools only (`dra-webhook certs inject`).

Those run on an operator's machine, with any kubeconfig kubectl accepts (exec plugins, cloud
auth), so they use the official client's loader. The serving path uses `webhook.apiclient.kubeapi`
instead, which needs no 20 MiB of generated models in every worker.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from dracore.status import status_line
from webhook.errors import GatewayError


def _reason(exc: ApiException) -> str:
    return status_line(exc.body, exc.reason, exc.status)


class KubeGateway:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client

    @classmethod
    def from_user_kubeconfig(
        cls, kubeconfig: str | None, context: str | None = None
    ) -> KubeGateway:
        """For operator tools (`certs inject`): a kubeconfig file, else $KUBECONFIG/~/.kube/config."""
        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise GatewayError(f"cannot load kubeconfig: {exc}") from None
        return cls(api_client)

    def get_webhook_configuration(
        self, name: str, kind: str = "MutatingWebhookConfiguration"
    ) -> dict[str, Any]:
        """A Mutating- or ValidatingWebhookConfiguration as a dict (camelCase keys, as served)."""
        try:
            return self._read_webhook_configuration(name, kind)
        except ApiException as exc:
            raise GatewayError(f"cannot read {kind} {name}: {_reason(exc)}") from None

    def find_webhook_configuration(self, name: str, kind: str) -> dict[str, Any] | None:
        """As `get_webhook_configuration`, but None when there is no such object."""
        try:
            return self._read_webhook_configuration(name, kind)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise GatewayError(f"cannot read {kind} {name}: {_reason(exc)}") from None

    def _read_webhook_configuration(self, name: str, kind: str) -> dict[str, Any]:
        api = client.AdmissionregistrationV1Api(self._client)
        read = getattr(api, f"read_{_snake(kind)}")
        result: dict[str, Any] = self._client.sanitize_for_serialization(read(name))  # type: ignore[no-untyped-call]
        result.setdefault("kind", kind)
        return result

    def patch_webhook_configuration(
        self, name: str, ops: list[dict[str, Any]], kind: str = "MutatingWebhookConfiguration"
    ) -> None:
        """Apply a JSON Patch to a Mutating- or ValidatingWebhookConfiguration."""
        api = client.AdmissionregistrationV1Api(self._client)
        try:
            getattr(api, f"patch_{_snake(kind)}")(
                name, ops, _content_type="application/json-patch+json"
            )
        except ApiException as exc:
            raise GatewayError(f"cannot patch {kind} {name}: {_reason(exc)}") from None


def _snake(kind: str) -> str:
    """'MutatingWebhookConfiguration' -> 'mutating_webhook_configuration' (client method names)."""
    if kind not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        raise ValueError(f"not a webhook configuration kind: {kind!r}")
    return kind.replace("Webhook", "_webhook").replace("Configuration", "_configuration").lower()
