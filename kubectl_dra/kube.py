"""The ONLY module of the plugin that imports `kubernetes`. Hands out plain dicts.

`ClusterReader` is what the commands need; `KubeGateway` implements it with one ApiClient per
run (no global configuration), and every list is a single call, so a command makes a constant
number of requests however many pods or claims exist. DRA objects are read at the newest
served version (v1, else v1beta2, else v1beta1) and v1beta1 shapes are normalised to v1.
`ApiException` becomes KubeError with a hint (forbidden, not found, DRA not served).

Over 500 lines on purpose: an import contract lets no other plugin module call the API, so
every list, its shape checks and the prune deletes live here, each check beside its call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from dracore import dra, jsonio, yamlinput
from dracore.errors import shown
from dracore.status import status_message
from dracore.workload_kinds import BY_KIND
from kubectl_dra.errors import KubeError, NotFoundError

RESOURCE_GROUP = "resource.k8s.io"


class ConflictError(KubeError):
    """409: the object is not in the state the request assumed (a failed precondition)."""


RESOURCE_VERSIONS = ("v1", "v1beta2", "v1beta1")
T = TypeVar("T")


class ClusterReader(Protocol):
    """Read access to what `kubectl dra` shows and checks. Lists return API object dicts."""

    @property
    def default_namespace(self) -> str: ...

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]: ...

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any]: ...

    def list_resource_claim_templates(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def list_resource_slices(self) -> list[dict[str, Any]]: ...

    def list_device_classes(self) -> list[dict[str, Any]]: ...

    def list_nodes(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class VersionReader(Protocol):
    """A reader that can tell the API server's release (`kubectl dra classes --cluster`)."""

    def server_version(self) -> str: ...


def normalize_v1beta1(obj: dict[str, Any]) -> dict[str, Any]:
    """v1beta1 kept request fields on the request and wrapped slice devices in `basic`."""
    spec = obj.get("spec") or {}
    devices = spec.get("devices")
    claim_spec = (spec.get("spec") or {}) if obj.get("kind") == "ResourceClaimTemplate" else spec
    for request in ((claim_spec.get("devices") or {}).get("requests")) or []:
        if "exactly" in request or "firstAvailable" in request:
            continue
        fields = {k: request.pop(k) for k in list(request) if k != "name"}
        if fields:
            request["exactly"] = fields
    if isinstance(devices, list):
        for device in devices:
            basic = device.pop("basic", None)
            if isinstance(basic, dict):
                device.update(basic)
    return obj


def kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    """The files a kubeconfig setting names (KUBECONFIG may list several), else the default."""
    if kubeconfig:
        return [Path(p).expanduser() for p in kubeconfig.split(os.pathsep) if p]
    default = Path("~/.kube/config").expanduser()
    return [default] if default.exists() else []


def check_kubeconfig(path: Path) -> None:
    """Refuse, in one line, a kubeconfig the client would crash on or expand without bound."""
    if not path.exists():
        return  # the client reports a missing file itself
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KubeError(f"{path}: cannot read kubeconfig: {exc.strerror}") from None
    try:
        document = yamlinput.load(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise KubeError(f"{path}: kubeconfig is not UTF-8 text") from None
    except yamlinput.YamlInputError as exc:
        raise KubeError(f"{path}: kubeconfig {exc}") from None
    if document is not None and not isinstance(document, dict):
        raise KubeError(
            f"{path}: a kubeconfig is a mapping (apiVersion, clusters, contexts, users), not a {type(document).__name__}"
        )


class KubeGateway:
    """ClusterReader over the official client."""

    def __init__(self, api_client: Any, *, namespace: str = "default") -> None:
        from kubernetes import client

        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._resource_version: str | None = None
        self.requests = 0  # API round trips, for benchmarks and tests

    @cached_property
    def _core(self) -> Any:
        """Made on first use: importing CoreV1Api (all core models) costs ~1.5 s of startup,
        which the claim, node and cluster views never need."""
        from kubernetes import client

        return client.CoreV1Api(self._api_client)

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str | None = None, context: str | None = None
    ) -> KubeGateway:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        files = kubeconfig_files(kubeconfig)
        if kubeconfig and not any(path.exists() for path in files):
            raise KubeError(f"{kubeconfig}: kubeconfig not found")
        for path in files:
            check_kubeconfig(path)
        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
                active = next((c for c in contexts if c["name"] == context), active)
            namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except ConfigException as exc:
            text = str(exc)
            if context and "context" in text.lower():
                raise KubeError(
                    f"context {context!r} not found in kubeconfig; see `kubectl config get-contexts`"
                ) from None
            raise KubeError(f"cannot load kubeconfig: {text}") from None
        except FileNotFoundError as exc:
            raise KubeError(f"kubeconfig not found: {exc.filename}") from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # The client trusts the file's shape (`contexts: 5`); the file is the user's mistake.
            where = ", ".join(str(f) for f in files) or "kubeconfig"
            raise KubeError(f"{where}: not a valid kubeconfig ({exc})") from None
        return cls(api_client, namespace=namespace)

    @property
    def default_namespace(self) -> str:
        return self._namespace

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        self.requests += 1
        try:
            return call()
        except ApiException as exc:
            raise _explain(exc, what) from None
        except HTTPError as exc:
            raise KubeError(f"cannot {what}: the API server is unreachable ({exc})") from None

    def _call_json(self, what: str, call: Callable[[], Any]) -> Any:
        """`_call` for a request made with `_preload_content=False`: the decoded JSON body.

        Skipping the client's model classes matters at scale: listing 4,000 pods through
        V1Pod models and back to dicts took ~8 s, decoding the JSON takes well under 1 s, and
        the fields keep the API's names whatever the client version knows.
        """
        response = self._call(what, call)
        return decode_answer(response.data, what)

    def _items(self, response: Any, kind: str, api_version: str, what: str) -> list[dict[str, Any]]:
        items = list_items(response, what)
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    def _served_resource_version(self) -> str:
        """The newest served resource.k8s.io version, found with one discovery request."""
        if self._resource_version is None:
            from kubernetes import client

            what = "discover API groups"
            answer = self._call_json(
                what,
                lambda: client.ApisApi(self._api_client).get_api_versions(_preload_content=False),
            )
            served = served_versions(answer, RESOURCE_GROUP, what)
            for version in RESOURCE_VERSIONS:
                if version in served:
                    self._resource_version = version
                    break
            else:
                raise KubeError(
                    "the DRA API (resource.k8s.io) is not served by this cluster; Kubernetes 1.34+ is required"
                )
        return self._resource_version

    def _list_resource(
        self, plural: str, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        version = self._served_resource_version()
        where = f" in namespace {namespace}" if namespace else ""
        if namespace:
            response = self._call_json(
                f"list {plural}{where}",
                lambda: self._custom.list_namespaced_custom_object(
                    RESOURCE_GROUP,
                    version,
                    namespace,
                    plural,
                    label_selector=label_selector,
                    _preload_content=False,
                ),
            )
        else:
            response = self._call_json(
                f"list {plural}",
                lambda: self._custom.list_cluster_custom_object(
                    RESOURCE_GROUP,
                    version,
                    plural,
                    label_selector=label_selector,
                    _preload_content=False,
                ),
            )
        items = self._items(response, kind, f"{RESOURCE_GROUP}/{version}", f"list {plural}{where}")
        return [normalize_v1beta1(i) for i in items] if version == "v1beta1" else items

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        selector = label_selector or ""
        what = f"list pods in namespace {namespace}" if namespace else "list pods"
        if namespace:
            response = self._call_json(
                what,
                lambda: self._core.list_namespaced_pod(
                    namespace, label_selector=selector, _preload_content=False
                ),
            )
        else:
            response = self._call_json(
                what,
                lambda: self._core.list_pod_for_all_namespaces(
                    label_selector=selector, _preload_content=False
                ),
            )
        return self._items(response, "Pod", "v1", what)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        what = f"get pod {name} in namespace {namespace}"
        pod = self._call_json(
            what, lambda: self._core.read_namespaced_pod(name, namespace, _preload_content=False)
        )
        return {"apiVersion": "v1", "kind": "Pod", **checked_object(pod, what, "the answer")}

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._list_resource("resourceclaims", "ResourceClaim", namespace)

    def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any]:
        version = self._served_resource_version()
        what = f"get resourceclaim {name} in namespace {namespace}"
        found = self._call_json(
            what,
            lambda: self._custom.get_namespaced_custom_object(
                RESOURCE_GROUP, version, namespace, "resourceclaims", name, _preload_content=False
            ),
        )
        claim = checked_object(found, what, "the answer")
        return normalize_v1beta1(claim) if version == "v1beta1" else claim

    def list_resource_claim_templates(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._list_resource("resourceclaimtemplates", "ResourceClaimTemplate", namespace)

    def list_resource_slices(self) -> list[dict[str, Any]]:
        return self._list_resource("resourceslices", "ResourceSlice", None)

    def list_device_classes(self) -> list[dict[str, Any]]:
        return self._list_resource("deviceclasses", "DeviceClass", None)

    def server_version(self) -> str:
        """The API server's git version, e.g. v1.37.2 (one request)."""
        from kubernetes import client

        info = self._call(
            "get the server version", lambda: client.VersionApi(self._api_client).get_code()
        )
        return str(info.git_version or f"v{info.major}.{info.minor}")

    def list_nodes(self) -> list[dict[str, Any]]:
        response = self._call_json(
            "list nodes", lambda: self._core.list_node(_preload_content=False)
        )
        return self._items(response, "Node", "v1", "list nodes")

    # --- what `kubectl dra prune` reads and deletes --------------------------------------

    def list_labelled(
        self, kind: str, namespace: str | None, *, label_selector: str
    ) -> list[dict[str, Any]]:
        """ResourceClaimTemplates or ResourceClaims carrying a label, with one list call."""
        plural = {
            "ResourceClaimTemplate": "resourceclaimtemplates",
            "ResourceClaim": "resourceclaims",
        }[kind]
        return self._list_resource(plural, kind, namespace, label_selector=label_selector)

    def delete_unchanged(
        self, kind: str, namespace: str, name: str, *, uid: str, resource_version: str
    ) -> str:
        """Delete a DRA object only if it is still the one listed: "deleted", "changed" (its
        uid or resourceVersion differ now, so it is kept) or "gone" (deleted meanwhile)."""
        version = self._served_resource_version()
        plural = kind.lower() + "s"
        from kubernetes import client

        body = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version)
        )
        try:
            self._call_json(
                f"delete {plural} {name} in namespace {namespace}",
                lambda: self._custom.delete_namespaced_custom_object(
                    RESOURCE_GROUP,
                    version,
                    namespace,
                    plural,
                    name,
                    body=body,
                    _preload_content=False,
                ),
            )
        except NotFoundError:
            return "gone"
        except ConflictError:
            return "changed"
        return "deleted"

    # --- what `kubectl dra audit` reads besides the DRA objects --------------------------

    def list_workloads(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """One list call for a kind of WORKLOAD_LISTS, in `namespace` or in all of them."""
        from kubernetes import client

        api_class, namespaced, everywhere = WORKLOAD_LISTS[kind]
        api = (
            self._core if api_class == "CoreV1Api" else getattr(client, api_class)(self._api_client)
        )
        plural = kind.lower() + "s"
        what = f"list {plural} in namespace {namespace}" if namespace else f"list {plural}"
        if namespace:
            response = self._call_json(
                what, lambda: getattr(api, namespaced)(namespace, _preload_content=False)
            )
        else:
            response = self._call_json(
                what, lambda: getattr(api, everywhere)(_preload_content=False)
            )
        return self._items(response, kind, BY_KIND[kind].api_version, what)

    def list_namespaces(self) -> list[dict[str, Any]]:
        response = self._call_json(
            "list namespaces", lambda: self._core.list_namespace(_preload_content=False)
        )
        return self._items(response, "Namespace", "v1", "list namespaces")

    def list_mutating_webhook_configurations(self) -> list[dict[str, Any]]:
        from kubernetes import client

        api = client.AdmissionregistrationV1Api(self._api_client)
        response = self._call_json(
            "list mutatingwebhookconfigurations",
            lambda: api.list_mutating_webhook_configuration(_preload_content=False),
        )
        return self._items(
            response,
            "MutatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            "list mutatingwebhookconfigurations",
        )

    def list_mutating_admission_policies(self) -> list[dict[str, Any]]:
        """admissionregistration.k8s.io/v1 MutatingAdmissionPolicies; [] where not served."""
        return self._list_admission("mutatingadmissionpolicies", "MutatingAdmissionPolicy")

    def list_mutating_admission_policy_bindings(self) -> list[dict[str, Any]]:
        return self._list_admission(
            "mutatingadmissionpolicybindings", "MutatingAdmissionPolicyBinding"
        )

    def _list_admission(self, plural: str, kind: str) -> list[dict[str, Any]]:
        from kubernetes import client

        api = client.CustomObjectsApi(self._api_client)
        what = f"list {plural}"
        try:
            response = self._call_json(
                what,
                lambda: api.list_cluster_custom_object(
                    "admissionregistration.k8s.io", "v1", plural, _preload_content=False
                ),
            )
        except NotFoundError:  # before Kubernetes 1.36: no route can be installed
            return []
        return self._items(response, kind, "admissionregistration.k8s.io/v1", what)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None if it does not exist."""
        what = f"get configmap {name} in namespace {namespace}"
        try:
            found = self._call_json(
                what,
                lambda: self._core.read_namespaced_config_map(
                    name, namespace, _preload_content=False
                ),
            )
        except NotFoundError:
            return None
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            **checked_object(found, what, "the answer"),
        }


# kind -> (client API class, namespaced list method, all-namespaces list method): the objects
# `kubectl dra audit` reads, each with one list call; their apiVersion is dracore.workload_kinds'.
WORKLOAD_LISTS: Final[dict[str, tuple[str, str, str]]] = {
    "Deployment": ("AppsV1Api", "list_namespaced_deployment", "list_deployment_for_all_namespaces"),
    "StatefulSet": ("AppsV1Api", "list_namespaced_stateful_set", "list_stateful_set_for_all_namespaces"),
    "DaemonSet": ("AppsV1Api", "list_namespaced_daemon_set", "list_daemon_set_for_all_namespaces"),
    "ReplicaSet": ("AppsV1Api", "list_namespaced_replica_set", "list_replica_set_for_all_namespaces"),
    "ReplicationController": ("CoreV1Api", "list_namespaced_replication_controller", "list_replication_controller_for_all_namespaces"),
    "Job": ("BatchV1Api", "list_namespaced_job", "list_job_for_all_namespaces"),
    "CronJob": ("BatchV1Api", "list_namespaced_cron_job", "list_cron_job_for_all_namespaces"),
}  # fmt: skip


# --- the shape of what the API server sends ----------------------------------------------------
# Whatever answers on the kubeconfig's address (a proxy's HTML error page, a broken or hostile
# server) ends in one KubeError naming the request and the field, never in a traceback deeper in
# the commands. Each reader checks the shape it hands out, not every field of every object:
# the commands read fields with defaults.

# An API object nests about 20 levels (managedFields); far deeper is not an API answer, and
# refusing it keeps every later walk recursion-safe.
MAX_ANSWER_DEPTH: Final = 100
_OBJECT_FIELDS: Final = ("spec", "status")
_STRING_FIELDS: Final = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
_STRING_MAPS: Final = ("labels", "annotations")


def _json_type(value: Any) -> str:
    """What a JSON value is, in the words of a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else "a string"


def decode_answer(data: bytes | str, what: str) -> Any:
    """The JSON of an answer, or KubeError saying it is not JSON (an HTML page) or too deep."""
    try:
        answer = jsonio.loads(data)
    except jsonio.DecodeError as exc:
        reason = jsonio.decode_problem(exc)
        if reason == "nested too deep":
            raise KubeError(f"cannot {what}: the API server's answer is {reason}") from None
        start = bytes(data[:100]) if isinstance(data, bytes) else data[:100].encode()
        html = start.lstrip().lower().startswith((b"<!doctype", b"<html"))
        raise KubeError(
            f"cannot {what}: the API server's answer is not JSON"
            f"{' but an HTML page' if html else ''} ({shown(reason, 80)}); check the server "
            "address of your kubeconfig context"
        ) from None
    problem = dra.nesting_problem(answer, MAX_ANSWER_DEPTH)
    if problem:
        raise KubeError(f"cannot {what}: the API server's answer is {problem}")
    return answer


def list_items(answer: Any, what: str) -> list[dict[str, Any]]:
    """The objects of a list answer; `items: null` is an empty list (Go's empty slice)."""
    if not isinstance(answer, dict):
        raise KubeError(f"cannot {what}: the answer is {_json_type(answer)}, not a list object")
    items = answer.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise KubeError(f"cannot {what}: the answer's items is {_json_type(items)}, not a list")
    return [checked_object(item, what, f"items[{i}]") for i, item in enumerate(items)]


def checked_object(obj: Any, what: str, where: str) -> dict[str, Any]:
    """`obj` if it has an API object's top-level shape, else KubeError naming `where`."""
    if not isinstance(obj, dict):
        raise KubeError(f"cannot {what}: {where} is {_json_type(obj)}, not an object")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise KubeError(f"cannot {what}: {where}.metadata is {_json_type(metadata)}, not an object")
    for field in _STRING_FIELDS:
        if not isinstance(metadata.get(field, ""), str):
            raise KubeError(f"cannot {what}: {where}.metadata.{field} is not a string")
    for field in _STRING_MAPS:
        values = metadata.get(field) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise KubeError(f"cannot {what}: {where}.metadata.{field} is not a map of strings")
    for field in _OBJECT_FIELDS:
        if not isinstance(obj.get(field, {}), dict):
            raise KubeError(
                f"cannot {what}: {where}.{field} is {_json_type(obj[field])}, not an object"
            )
    return obj


def served_versions(answer: Any, group: str, what: str) -> set[str]:
    """The versions of `group` in a discovery answer (APIGroupList); `groups: null` is none."""
    if not isinstance(answer, dict):
        raise KubeError(f"cannot {what}: the answer is {_json_type(answer)}, not an APIGroupList")
    groups = answer.get("groups") or []
    if not isinstance(groups, list):
        raise KubeError(f"cannot {what}: the answer's groups is {_json_type(groups)}, not a list")
    served: set[str] = set()
    for i, entry in enumerate(groups):
        if not isinstance(entry, dict) or entry.get("name") != group:
            continue
        versions = entry.get("versions") or []
        if not isinstance(versions, list):
            raise KubeError(
                f"cannot {what}: groups[{i}].versions is {_json_type(versions)}, not a list"
            )
        served |= {
            v["version"]
            for v in versions
            if isinstance(v, dict) and isinstance(v.get("version"), str)
        }
    return served


def _explain(exc: Any, what: str) -> KubeError:
    """An ApiException as a one-line message with a hint, naming what we tried."""
    message = status_message(exc.body, exc.reason)
    status = exc.status
    if status == 403:
        return KubeError(
            f"cannot {what}: forbidden (403); check the RBAC permissions of your context ({message})"
        )
    if status == 409:
        return ConflictError(f"cannot {what}: {message} (HTTP 409)")
    if status == 401:
        return KubeError(f"cannot {what}: unauthorized (401); your credentials were refused")
    if status == 404:
        if RESOURCE_GROUP in (
            exc.body or ""
        ) and "the server could not find the requested resource" in (exc.body or ""):
            return KubeError(
                "the DRA API (resource.k8s.io/v1) is not served by this cluster; Kubernetes 1.34+ is required"
            )
        return NotFoundError(f"cannot {what}: not found")
    return KubeError(f"cannot {what}: {message} (HTTP {status})")
