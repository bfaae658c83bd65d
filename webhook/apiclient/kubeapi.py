"""The webhook's own API client: seven calls over HTTPS, without the `kubernetes` package.

The serving path reads a namespace's labels and reads or creates ResourceClaimTemplates and
ResourceClaims; in the background it reads the server's version and lists DeviceClasses
(`webhook.apiclient.offer`); nothing else. The official client would add about 20 MiB to
every worker process (its generated models and APIs), for those seven requests. `ApiGateway` makes them with
`http.client` over one TLS context and keeps a few connections alive.

What one call may cost is bounded:

- Time: `min(timeout, what is left of the review's Deadline)` in all, for connecting (TLS
  included), sending and reading the whole answer. Every read of the answer gets only what is
  left, so a server trickling a byte at a time is cut off at the budget, not per read.
- Memory: an answer over `MAX_ANSWER_BYTES` (by Content-Length, or counted as it arrives when
  chunked) is refused after reading at most that much.
- Retries: a kept-alive connection the server closed meanwhile fails before any answer, and the
  request is sent once more on a new connection (a create that did arrive answers 409 the second
  time, which the caller treats as "exists" and checks). A 429 or 503 is retried once, after
  its Retry-After, only if that wait and a further attempt fit in the call's budget.
- Metrics: each exchange counted by call and result and timed by call
  (`dra_webhook_api_requests_total`, `dra_webhook_api_request_duration_seconds`).

Operator tools (`certs inject`) still use the official client
(`webhook.ops.kube`), which understands every kind of kubeconfig.

Credentials come from the in-cluster service account (the token file is read on every call,
so a rotated token is used at once) or from a kubeconfig naming a certificate authority and a
client certificate or token; kubeconfigs that run a command (`exec`, `auth-provider`) or skip
TLS verification are refused at start-up with a one-line reason.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
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
from dracore.paths import ClusterOffer
from dracore.status import status_line
from dracore.yamlinput import YamlInputError, load_all
from webhook import metrics
from webhook.apiclient.offer import OfferRefresher
from webhook.deadline import Deadline
from webhook.errors import GatewayError

DEFAULT_TIMEOUT = 2.0
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RESOURCE_PATH = "/apis/resource.k8s.io/v1/namespaces/{namespace}/{plural}"
KINDS = {"resourceclaims": "ResourceClaim", "resourceclaimtemplates": "ResourceClaimTemplate"}
IDLE_CONNECTIONS = 4
# A kept-alive connection idle longer than this is closed rather than reused: servers and
# proxies drop idle connections after a while (the API server after 90 s).
IDLE_SECONDS = 20.0
# Each call answers one object: a namespace, a template, or a claim whose status holds its
# allocation and up to 256 consumers. etcd keeps objects of at most 1.5 MiB by default and the API
# server accepts request bodies of 3 MiB; 4 MiB leaves room for the JSON around the largest.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 503})
# The wait when a 429 or 503 names none (the API server's priority and fairness says 1 s), and
# the least time a retry must have left after its wait to be worth sending.
DEFAULT_RETRY_AFTER = 1.0
MIN_ATTEMPT_SECONDS = 0.1
DEVICE_CLASSES_PATH = "/apis/resource.k8s.io/v1/deviceclasses"
# DeviceClasses are listed in pages, each one answer under MAX_ANSWER_BYTES; a cluster with more
# than this many pages is not read further (the classes of the rest count as missing).
CLASSES_PER_PAGE = 250
MAX_CLASS_PAGES = 8


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    context: ssl.SSLContext
    token: Callable[[], str | None]


class _AnswerTooLarge(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read given only what is left until `expires`."""

    def __init__(self, sock: Any, expires: float) -> None:
        super().__init__()
        self._sock = sock
        self._expires = expires

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._expires - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the API call's budget is spent")
        self._sock.settimeout(remaining)
        received: int = self._sock.recv_into(buffer)
        return received


class _BoundedResponse(http.client.HTTPResponse):
    """An HTTPResponse whose head and body are read within the call's budget."""

    def __init__(self, sock: Any, *args: Any, expires: float, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()
        self.fp = io.BufferedReader(_DeadlineReader(sock, expires))


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection whose connect, TLS handshake and answer share one budget.

    `expires` is set before each exchange: the TCP connect gets what is left of it, the
    handshake what is left after that, and every read of the answer what is left then.
    """

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context)
        self.tls = context
        self.expires = 0.0

    def remaining(self) -> float:
        remaining = self.expires - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the API call's budget is spent")
        return remaining

    def start(self, expires: float) -> None:
        """Bound the next exchange by `expires`."""
        self.expires = expires
        self.response_class = functools.partial(_BoundedResponse, expires=expires)  # type: ignore[assignment]
        if self.sock is not None:
            self.sock.settimeout(self.remaining())

    def connect(self) -> None:
        self.timeout = self.remaining()
        http.client.HTTPConnection.connect(self)  # TCP only; TLS below, on what is left
        self.sock.settimeout(self.remaining())
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


def _read_capped(response: http.client.HTTPResponse) -> bytes:
    if response.length is not None and response.length > MAX_ANSWER_BYTES:
        raise _AnswerTooLarge
    data = response.read(MAX_ANSWER_BYTES + 1)
    if len(data) > MAX_ANSWER_BYTES:
        raise _AnswerTooLarge
    return data


def _retry_after(response: http.client.HTTPResponse) -> float:
    """Retry-After in seconds; its date form, or anything odd, means the default."""
    value = (response.getheader("Retry-After") or "").strip()
    return float(value) if value.isdigit() and len(value) <= 4 else DEFAULT_RETRY_AFTER


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
        self._idle: queue.LifoQueue[tuple[float, _Connection]] = queue.LifoQueue()
        self._offer = OfferRefresher(
            read_version=self.server_version, list_classes=self.device_classes
        )

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str | None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> ApiGateway:
        """From a kubeconfig file if given, else the in-cluster service account."""
        credentials = from_kubeconfig(kubeconfig) if kubeconfig else in_cluster()
        return cls(credentials, timeout=timeout)

    # --- ClusterGateway -----------------------------------------------------------------------

    def namespace_labels(self, name: str, *, deadline: Deadline) -> dict[str, str]:
        path = f"/api/v1/namespaces/{quote(name, safe='')}"
        what = f"reading namespace {name}"
        status, body = self._request("GET", path, what, call="get_namespace", deadline=deadline)
        if status != 200:
            raise GatewayError(f"cannot read namespace {name}: {self._reason(status, body)}")
        labels = (jsonio.loads(body).get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def get_template(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None:
        return self._get("resourceclaimtemplates", namespace, name, deadline)

    def get_claim(self, namespace: str, name: str, *, deadline: Deadline) -> dict[str, Any] | None:
        return self._get("resourceclaims", namespace, name, deadline)

    def create_template(self, template: Mapping[str, Any], *, deadline: Deadline) -> bool:
        return self._create("resourceclaimtemplates", template, deadline)

    def create_claim(self, claim: Mapping[str, Any], *, deadline: Deadline) -> bool:
        return self._create("resourceclaims", claim, deadline)

    def offer(self) -> ClusterOffer:
        return self._offer.offer()

    def refresh_offer(self) -> None:
        self._offer.refresh()

    # --- what the cluster offers the scheduler's path (read in the background) ----------------

    def server_version(self, deadline: Deadline) -> str:
        """The API server's gitVersion, e.g. v1.37.2."""
        status, body = self._request(
            "GET", "/version", "reading the server version", call="get_version", deadline=deadline
        )
        if status != 200:
            raise GatewayError(f"cannot read the server version: {self._reason(status, body)}")
        version = self._json(body, "the server version").get("gitVersion")
        if not isinstance(version, str):
            raise GatewayError("the server's /version has no gitVersion")
        return version

    def device_classes(self, deadline: Deadline) -> list[dict[str, Any]]:
        """Every DeviceClass, page by page (at most MAX_CLASS_PAGES pages)."""
        found: list[dict[str, Any]] = []
        token = ""
        for _ in range(MAX_CLASS_PAGES):
            query = f"?limit={CLASSES_PER_PAGE}" + (
                f"&continue={quote(token, safe='')}" if token else ""
            )
            status, body = self._request(
                "GET",
                DEVICE_CLASSES_PATH + query,
                "listing DeviceClasses",
                call="list_deviceclasses",
                deadline=deadline,
            )
            if status != 200:
                raise GatewayError(f"cannot list DeviceClasses: {self._reason(status, body)}")
            page = self._json(body, "the DeviceClass list")
            items = page.get("items")
            if isinstance(items, list):
                found.extend(i for i in items if isinstance(i, dict))
            metadata = page.get("metadata")
            following = metadata.get("continue") if isinstance(metadata, dict) else None
            if not isinstance(following, str) or not following:
                break
            token = following
        return found

    @staticmethod
    def _json(body: bytes, what: str) -> dict[str, Any]:
        try:
            found = jsonio.loads(body)
        except ValueError:
            raise GatewayError(f"{what} is not JSON") from None
        if not isinstance(found, dict):
            raise GatewayError(f"{what} is not a JSON object")
        return found

    # --- requests -----------------------------------------------------------------------------

    def _get(
        self, plural: str, namespace: str, name: str, deadline: Deadline
    ) -> dict[str, Any] | None:
        path = RESOURCE_PATH.format(namespace=quote(namespace, safe=""), plural=plural)
        what = f"reading {KINDS[plural]} {namespace}/{name}"
        call = f"get_{KINDS[plural].lower()}"
        status, body = self._request(
            "GET", f"{path}/{quote(name, safe='')}", what, call=call, deadline=deadline
        )
        if status == 404:
            return None
        if status != 200:
            raise GatewayError(self._reason(status, body))
        found = jsonio.loads(body)
        return found if isinstance(found, dict) else None

    def _create(self, plural: str, obj: Mapping[str, Any], deadline: Deadline) -> bool:
        namespace = obj["metadata"].get("namespace") or "default"
        path = RESOURCE_PATH.format(namespace=quote(namespace, safe=""), plural=plural)
        what = f"creating {KINDS[plural]} {namespace}/{obj['metadata'].get('name', '')}"
        call = f"create_{KINDS[plural].lower()}"
        status, body = self._request(
            "POST", path, what, jsonio.dumps(dict(obj)), call=call, deadline=deadline
        )
        if status == 409:
            return False
        if status not in (200, 201):
            raise GatewayError(self._reason(status, body))
        return True

    @staticmethod
    def _reason(status: int, body: bytes) -> str:
        reason = http.client.responses.get(status, "")
        return status_line(body.decode("utf-8", "replace"), reason, status)

    def _connection(self) -> tuple[_Connection, bool]:
        """A kept-alive connection (True) if a fresh enough one is idle, else a new one."""
        while True:
            try:
                since, connection = self._idle.get_nowait()
            except queue.Empty:
                break
            if time.monotonic() - since < IDLE_SECONDS and connection.sock is not None:
                return connection, True
            connection.close()
        credentials = self._credentials
        return _Connection(credentials.host, credentials.port, context=credentials.context), False

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        body: bytes | None = None,
        *,
        call: str,
        deadline: Deadline,
    ) -> tuple[int, bytes]:
        """One call within min(timeout, what is left of `deadline`), retries included."""
        budget = deadline.budget(self._timeout)
        if budget <= 0:
            raise GatewayError(
                f"no time was left to call the API server ({what}) within the review's "
                "deadline; this is temporary: retry creating the pod"
            )
        expires = time.monotonic() + budget
        headers = {"Accept": "application/json", "User-Agent": "kubectl-dra-webhook"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            token = self._credentials.token()
        except OSError as exc:
            raise GatewayError(f"cannot read the API token ({what}): {exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        retried = False
        while True:
            status, data, retry_after = self._exchange(
                method, path, body, headers, expires=expires, call=call, what=what, budget=budget
            )
            if status not in RETRY_STATUSES or retried:
                return status, data
            if expires - time.monotonic() < retry_after + MIN_ATTEMPT_SECONDS:
                return status, data
            retried = True
            time.sleep(retry_after)

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        expires: float,
        call: str,
        what: str,
        budget: float,
    ) -> tuple[int, bytes, float]:
        """Send once and read the whole answer by `expires`: status, body, Retry-After."""
        while True:
            started = time.monotonic()
            connection, reused = self._connection()
            try:
                connection.start(expires)
                connection.request(method, path, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = _read_capped(response)
            except TimeoutError:
                connection.close()
                metrics.observe_api_call(call, "timeout", time.monotonic() - started)
                raise self._unreachable(what, "did not answer in time", budget) from None
            except _AnswerTooLarge:
                connection.close()
                metrics.observe_api_call(call, "too-large", time.monotonic() - started)
                raise GatewayError(
                    f"the API server's answer ({what}) is over {MAX_ANSWER_BYTES} bytes, "
                    "more than any object it stores; the webhook did not read it (check that "
                    "the server in the webhook's kubeconfig is the API server)"
                ) from None
            except (OSError, http.client.HTTPException):
                connection.close()
                if reused:  # closed by the server while idle: once more, on a new connection
                    continue
                metrics.observe_api_call(call, "unreachable", time.monotonic() - started)
                raise self._unreachable(what, "was unreachable", budget) from None
            metrics.observe_api_call(call, str(response.status), time.monotonic() - started)
            if (
                response.will_close
                or not response.isclosed()
                or self._idle.qsize() >= IDLE_CONNECTIONS
            ):
                connection.close()
            else:
                self._idle.put((time.monotonic(), connection))
            return response.status, data, _retry_after(response)

    @staticmethod
    def _unreachable(what: str, kind: str, budget: float) -> GatewayError:
        return GatewayError(
            f"the API server {kind} ({what}, deadline {round(budget, 2):g}s); "
            "this is temporary: retry creating the pod"
        )
