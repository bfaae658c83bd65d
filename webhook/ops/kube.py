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

    def get_webhook_configuration(self, name: str) -> dict[str, Any]:
        """A MutatingWebhookConfiguration as a dict (camelCase keys, as the API serves it)."""
        api = client.AdmissionregistrationV1Api(self._client)
        try:
            found = api.read_mutating_webhook_configuration(name)
        except ApiException as exc:
            raise GatewayError(
                f"cannot read MutatingWebhookConfiguration {name}: {_reason(exc)}"
            ) from None
        result: dict[str, Any] = self._client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        result.setdefault("kind", "MutatingWebhookConfiguration")
        return result

    def patch_webhook_configuration(self, name: str, ops: list[dict[str, Any]]) -> None:
        """Apply a JSON Patch to a MutatingWebhookConfiguration."""
        api = client.AdmissionregistrationV1Api(self._client)
        try:
            api.patch_mutating_webhook_configuration(
                name, ops, _content_type="application/json-patch+json"
            )
        except ApiException as exc:
            raise GatewayError(
                f"cannot patch MutatingWebhookConfiguration {name}: {_reason(exc)}"
            ) from None
