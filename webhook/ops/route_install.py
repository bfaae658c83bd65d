"""Install the compiled admission-policy route: classes, policies and bindings, server-side applied.

The webhook itself never gets these rights: a MutatingAdmissionPolicy can rewrite any object in
the cluster, so write access to them stays with an installer that runs and goes (the chart's
hook Job, or an admin), and the policies guard themselves against a changed policy ConfigMap
(dracore.admission_policies.guard).

`plan_prune` is pure; `RouteInstaller` is the thin adapter over the official client.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from dracore.status import status_line
from webhook.errors import GatewayError

FIELD_MANAGER: Final = "kubectl-dra"
# Put on everything the installer applies: what it may delete later, and nothing else.
INSTALLER_LABEL: Final = "kubectl-dra.io/installed-by"
INSTALLER: Final = "admission-policies"
POLICY_GROUP: Final = "admissionregistration.k8s.io"


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str


# In the order they are deleted: a binding before its policy, a policy before the classes.
KINDS: Final = (
    Kind("MutatingAdmissionPolicyBinding", POLICY_GROUP, "v1", "mutatingadmissionpolicybindings"),
    Kind(
        "ValidatingAdmissionPolicyBinding", POLICY_GROUP, "v1", "validatingadmissionpolicybindings"
    ),
    Kind("MutatingAdmissionPolicy", POLICY_GROUP, "v1", "mutatingadmissionpolicies"),
    Kind("ValidatingAdmissionPolicy", POLICY_GROUP, "v1", "validatingadmissionpolicies"),
    Kind("DeviceClass", "resource.k8s.io", "v1", "deviceclasses"),
)
_BY_KIND: Final = {k.kind: k for k in KINDS}


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    return _BY_KIND[manifest["kind"]]


def labelled(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with the installer's label (a copy)."""
    metadata = dict(manifest["metadata"])
    metadata["labels"] = {**(metadata.get("labels") or {}), INSTALLER_LABEL: INSTALLER}
    return {**manifest, "metadata": metadata}


def plan_prune(
    installed: Mapping[str, Iterable[str]], wanted: Iterable[Mapping[str, Any]]
) -> list[tuple[Kind, str]]:
    """The installed objects (kind -> names carrying our label) that `wanted` no longer has,
    bindings first."""
    keep = {(m["kind"], m["metadata"]["name"]) for m in wanted}
    return [
        (kind, name)
        for kind in KINDS
        for name in sorted(installed.get(kind.kind, ()))
        if (kind.kind, name) not in keep
    ]


def _reason(exc: ApiException) -> str:
    return status_line(exc.body, exc.reason, exc.status)


def _fix(exc: ApiException, kind: Kind, verb: str) -> str:
    if exc.status in (401, 403) and "paramKind" in str(exc.body):
        return (
            "; give the installer get on configmaps in every namespace: the API server asks it "
            "of whoever creates a policy whose parameter is a ConfigMap"
        )
    if exc.status in (401, 403):
        return (
            f"; give the installer {verb} on {kind.group} {kind.plural} (the chart's "
            "admission-policies hook role has it)"
        )
    if exc.status == 422:
        return "; the server refused the compiled object: report it with the policy attached"
    return ""


class RouteInstaller:
    """Server-side apply, list and delete of the route's objects through the official client."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None = None) -> RouteInstaller:
        """In a pod with no --kubeconfig: its ServiceAccount; else the kubeconfig kubectl uses."""
        try:
            if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                return cls(client.ApiClient())
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise GatewayError(f"cannot load the cluster's credentials: {exc}") from None
        return cls(api_client)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def serves_admission_policies(self) -> bool:
        """Whether the server serves MutatingAdmissionPolicy in admissionregistration.k8s.io/v1."""
        try:
            found = client.AdmissionregistrationV1Api(self._client).get_api_resources()
        except ApiException as exc:
            raise GatewayError(f"cannot read the server's API resources: {_reason(exc)}") from None
        return any(r.name == "mutatingadmissionpolicies" for r in found.resources or [])

    def apply(self, manifest: Mapping[str, Any]) -> None:
        kind, name = kind_of(manifest), manifest["metadata"]["name"]
        try:
            self._custom.patch_cluster_custom_object(
                kind.group,
                kind.version,
                kind.plural,
                name,
                dict(manifest),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            raise GatewayError(
                f"cannot apply {kind.kind} {name}: {_reason(exc)}{_fix(exc, kind, 'patch')}"
            ) from None

    def installed(self) -> dict[str, list[str]]:
        """Kind -> names of the objects carrying the installer's label."""
        found: dict[str, list[str]] = {}
        for kind in KINDS:
            try:
                listed = self._custom.list_cluster_custom_object(
                    kind.group,
                    kind.version,
                    kind.plural,
                    label_selector=f"{INSTALLER_LABEL}={INSTALLER}",
                )
            except ApiException as exc:
                raise GatewayError(
                    f"cannot list {kind.plural}: {_reason(exc)}{_fix(exc, kind, 'list')}"
                ) from None
            items = listed.get("items") if isinstance(listed, dict) else None
            found[kind.kind] = [item["metadata"]["name"] for item in items or []]
        return found

    def delete(self, kind: Kind, name: str) -> bool:
        """Delete one object; False if it was already gone."""
        try:
            self._custom.delete_cluster_custom_object(kind.group, kind.version, kind.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise GatewayError(
                f"cannot delete {kind.kind} {name}: {_reason(exc)}{_fix(exc, kind, 'delete')}"
            ) from None
        return True

    def configmap_text(self, namespace: str, name: str, key: str) -> str | None:
        """The ConfigMap's text under `key`; None if the ConfigMap or the key is missing."""
        try:
            configmap = client.CoreV1Api(self._client).read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise GatewayError(
                f"cannot read ConfigMap {namespace}/{name}: {_reason(exc)}"
            ) from None
        value = (configmap.data or {}).get(key)
        return value if isinstance(value, str) else None
