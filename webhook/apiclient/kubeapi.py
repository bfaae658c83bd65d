"""The webhook's own API client: five calls over HTTPS, without the `kubernetes` package.

The serving path reads a namespace's labels and reads or creates ResourceClaimTemplates and
ResourceClaims; nothing else. The official client would add about 20 MiB to every worker
process (its generated models and APIs), for those five requests. `ApiGateway` makes them with
`http.client` over one TLS context, keeps a few connections alive, and gives each call the same
deadline as before: `timeout` seconds to connect (TLS included) and for each read, no retries
that could double it. Operator tools (`certs inject`) still use the official client
(`webhook.ops.kube`), which understands every kind of kubeconfig.

Credentials come from the in-cluster service account (the token file is read on every call,
so a rotated token is used at once) or from a kubeconfig naming a certificate authority and a
client certificate or token; kubeconfigs that run a command (`exec`, `auth-provider`) or skip
TLS verification are refused at start-up with a one-line reason.
"""

from __future__ import annotations

import base64
import http.client
import os
import queue
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from dracore import jsonio
from dracore.status import status_line
from dracore.yamlinput import YamlInputError, load_all
from webhook.errors import GatewayError

DEFAULT_TIMEOUT = 2.0
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RESOURCE_PATH = "/apis/resource.k8s.io/v1/namespaces/{namespace}/{plural}"
KINDS = {"resourceclaims": "ResourceClaim", "resourceclaimtemplates": "ResourceClaimTemplate"}
IDLE_CONNECTIONS = 4
# A kept-alive connection idle longer than this is closed rather than reused: servers and
# proxies drop idle connections after a while (the API server after 90 s).
IDLE_SECONDS = 20.0


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    context: ssl.SSLContext
    token: Callable[[], str | None]


class ConfigError(GatewayError):
    """The credentials cannot be loaded; the message says which field and why."""


def _context(ca_file: str | None = None, ca_data: bytes | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=ca_file, cadata=ca_data.decode() if ca_data else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _server(url: str, where: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            f"{where}: server {url!r} is not an https:// URL; the webhook speaks TLS only"
        )
    return parts.hostname, parts.port or 443


def in_cluster(root: Path = SERVICE_ACCOUNT) -> Credentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    where = "the in-cluster service account"
    if not host or not port.isdigit():
        raise ConfigError(
            f"cannot load API credentials from {where}: KUBERNETES_SERVICE_HOST/PORT are not set "
            "(outside a cluster, pass --kubeconfig)"
        )
    token_file = root / "token"
    try:
        context = _context(ca_file=str(root / "ca.crt"))
        token_file.read_text()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load API credentials from {where}: {exc}") from None

    def token() -> str:  # kubelet rotates the projected token: read it each time
        return token_file.read_text().strip()

    return Credentials(host, int(port), context, token)


def _named(config: Mapping[str, Any], section: str, name: object, where: str) -> dict[str, Any]:
    entries = config.get(section + "s") or []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(section)
            if isinstance(value, dict):
                return value
    raise ConfigError(f"{where}: no {section} named {name!r} (from the current context)")


def from_kubeconfig(path: str) -> Credentials:
    """The current context of a kubeconfig: its cluster's server and CA, its user's identity."""
    where = f"kubeconfig {path}"
    base = Path(path).parent
    try:
        text = Path(path).read_text(encoding="utf-8")
        documents = list(load_all(text))
    except (OSError, UnicodeDecodeError, YamlInputError) as exc:
        raise ConfigError(f"cannot load API credentials from {path}: {exc}") from None
    config = documents[0] if len(documents) == 1 else None
    if not isinstance(config, dict):
        raise ConfigError(
            f"cannot load API credentials from {path}: not a kubeconfig (one mapping)"
        )
    context_name = config.get("current-context")
    context = _named(config, "context", context_name, where)
    cluster = _named(config, "cluster", context.get("cluster"), where)
    user = _named(config, "user", context.get("user"), where)
    host, port = _server(str(cluster.get("server", "")), where)
    if cluster.get("insecure-skip-tls-verify"):
        raise ConfigError(
            f"{where}: insecure-skip-tls-verify is not accepted; give the cluster's CA"
        )
    if cluster.get("tls-server-name"):
        raise ConfigError(
            f"{where}: tls-server-name is not supported; use a server URL whose name the certificate holds"
        )
    for unsupported in ("exec", "auth-provider", "username"):
        if user.get(unsupported):
            raise ConfigError(
                f"{where}: user {context.get('user')!r} uses {unsupported}, which the webhook does "
                "not run; give it a client certificate or a token (in a cluster, omit --kubeconfig)"
            )

    def file_or_data(entry: Mapping[str, Any], key: str) -> tuple[str | None, bytes | None]:
        data = entry.get(f"{key}-data")
        if data:
            try:
                return None, base64.b64decode(str(data), validate=True)
            except ValueError:
                raise ConfigError(f"{where}: {key}-data is not base64") from None
        name = entry.get(key)
        return (str(base / str(name)) if name else None), None

    try:
        ca_file, ca_data = file_or_data(cluster, "certificate-authority")
        ssl_context = _context(ca_file, ca_data) if (ca_file or ca_data) else _context()
        cert_file, cert_data = file_or_data(user, "client-certificate")
        key_file, key_data = file_or_data(user, "client-key")
        if cert_file or cert_data:
            _load_pair(ssl_context, cert_file, cert_data, key_file, key_data)
    except (OSError, ssl.SSLError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot load API credentials from {path}: {exc}") from None
    static_token = user.get("token")
    token_file = user.get("tokenFile")

    def token() -> str | None:
        if token_file:
            return (base / str(token_file)).read_text().strip()
        return str(static_token) if static_token else None

    return Credentials(host, port, ssl_context, token)


def _load_pair(
    context: ssl.SSLContext,
    cert_file: str | None,
    cert_data: bytes | None,
    key_file: str | None,
    key_data: bytes | None,
) -> None:
    """load_cert_chain reads files only: inline data goes through a private temporary folder."""
    if cert_data is None and key_data is None:
        context.load_cert_chain(str(cert_file), key_file)
        return
    with tempfile.TemporaryDirectory(prefix="kubeapi-") as folder:
        if cert_data is not None:
            cert_file = str(Path(folder) / "tls.crt")
            Path(cert_file).write_bytes(cert_data)
        if key_data is not None:
            key_file = str(Path(folder) / "tls.key")
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as sink:
                sink.write(key_data)
        context.load_cert_chain(str(cert_file), key_file)


class ApiGateway:
    """The ClusterGateway of the serving path, on `Credentials`; thread-safe."""

    def __init__(self, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._idle: queue.LifoQueue[tuple[float, http.client.HTTPSConnection]] = queue.LifoQueue()

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str | None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> ApiGateway:
        """From a kubeconfig file if given, else the in-cluster service account."""
        credentials = from_kubeconfig(kubeconfig) if kubeconfig else in_cluster()
        return cls(credentials, timeout=timeout)

    # --- ClusterGateway -----------------------------------------------------------------------

    def namespace_labels(self, name: str) -> dict[str, str]:
        status, body = self._request(
            "GET", f"/api/v1/namespaces/{quote(name, safe='')}", f"reading namespace {name}"
        )
        if status != 200:
            raise GatewayError(f"cannot read namespace {name}: {self._reason(status, body)}")
        labels = (jsonio.loads(body).get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("resourceclaimtemplates", namespace, name)

    def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("resourceclaims", namespace, name)

    def create_template(self, template: Mapping[str, Any]) -> bool:
        return self._create("resourceclaimtemplates", template)

    def create_claim(self, claim: Mapping[str, Any]) -> bool:
        return self._create("resourceclaims", claim)

    # --- requests -----------------------------------------------------------------------------

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = RESOURCE_PATH.format(namespace=quote(namespace, safe=""), plural=plural)
        what = f"reading {KINDS[plural]} {namespace}/{name}"
        status, body = self._request("GET", f"{path}/{quote(name, safe='')}", what)
        if status == 404:
            return None
        if status != 200:
            raise GatewayError(self._reason(status, body))
        found = jsonio.loads(body)
        return found if isinstance(found, dict) else None

    def _create(self, plural: str, obj: Mapping[str, Any]) -> bool:
        namespace = obj["metadata"].get("namespace") or "default"
        path = RESOURCE_PATH.format(namespace=quote(namespace, safe=""), plural=plural)
        what = f"creating {KINDS[plural]} {namespace}/{obj['metadata'].get('name', '')}"
        status, body = self._request("POST", path, what, jsonio.dumps(dict(obj)))
        if status == 409:
            return False
        if status not in (200, 201):
            raise GatewayError(self._reason(status, body))
        return True

    @staticmethod
    def _reason(status: int, body: bytes) -> str:
        reason = http.client.responses.get(status, "")
        return status_line(body.decode("utf-8", "replace"), reason, status)

    def _connection(self) -> tuple[http.client.HTTPSConnection, bool]:
        """A kept-alive connection (True) if a fresh enough one is idle, else a new one."""
        while True:
            try:
                since, connection = self._idle.get_nowait()
            except queue.Empty:
                break
            if time.monotonic() - since < IDLE_SECONDS:
                return connection, True
            connection.close()
        credentials = self._credentials
        connection = http.client.HTTPSConnection(
            credentials.host, credentials.port, timeout=self._timeout, context=credentials.context
        )
        return connection, False

    def _request(
        self, method: str, path: str, what: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """One request with the deadline; a transport failure becomes a retryable GatewayError.

        A kept-alive connection the server closed meanwhile fails before any answer: the request
        is then sent once more on a new connection (a create that did arrive answers 409 the
        second time, which the caller treats as "exists" and checks).
        """
        headers = {"Accept": "application/json", "User-Agent": "kubectl-dra-webhook"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            token = self._credentials.token()
        except OSError as exc:
            raise GatewayError(f"cannot read the API token ({what}): {exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        while True:
            connection, reused = self._connection()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except TimeoutError:
                connection.close()
                raise self._unreachable(what, "did not answer in time") from None
            except (OSError, http.client.HTTPException):
                connection.close()
                if reused:
                    continue
                raise self._unreachable(what, "was unreachable") from None
            if response.will_close or self._idle.qsize() >= IDLE_CONNECTIONS:
                connection.close()
            else:
                self._idle.put((time.monotonic(), connection))
            return response.status, data

    def _unreachable(self, what: str, kind: str) -> GatewayError:
        return GatewayError(
            f"the API server {kind} ({what}, deadline {self._timeout:g}s); "
            "this is temporary: retry creating the pod"
        )
