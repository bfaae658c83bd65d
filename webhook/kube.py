"""The production ClusterGateway: the only webhook module that imports `kubernetes`.

Objects go in and out as dicts; ApiException becomes GatewayError with the Status message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from webhook.core.status import status_message as core_status_message
from webhook.errors import GatewayError

GROUP, VERSION = "resource.k8s.io", "v1"


def status_message(exc: ApiException) -> str:
    """The message of the Status the API server answered with, else the HTTP reason."""
    return core_status_message(exc.body, exc.reason)


def _reason(exc: ApiException) -> str:
    return f"{status_message(exc)} (HTTP {exc.status})"


class KubeGateway:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._client = api_client

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None) -> KubeGateway:
        """From a kubeconfig file if given, else the in-cluster service account."""
        try:
            if kubeconfig:
                return cls(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            where = kubeconfig or "the in-cluster service account"
            raise GatewayError(f"cannot load API credentials from {where}: {exc}") from None
        return cls(client.ApiClient(configuration))

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

    def _create(self, plural: str, obj: Mapping[str, Any]) -> bool:
        namespace = obj["metadata"].get("namespace") or "default"
        try:
            self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, dict(obj)
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise GatewayError(_reason(exc)) from None
        return True

    def create_template(self, template: Mapping[str, Any]) -> bool:
        return self._create("resourceclaimtemplates", template)

    def create_claim(self, claim: Mapping[str, Any]) -> bool:
        return self._create("resourceclaims", claim)

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("resourceclaimtemplates", namespace, name)

    def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("resourceclaims", namespace, name)

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise GatewayError(_reason(exc)) from None
        return found if isinstance(found, dict) else None

    def namespace_labels(self, name: str) -> dict[str, str]:
        try:
            namespace = self._core.read_namespace(name)
        except ApiException as exc:
            raise GatewayError(f"cannot read namespace {name}: {_reason(exc)}") from None
        metadata = namespace.metadata
        return dict(metadata.labels or {}) if metadata else {}
