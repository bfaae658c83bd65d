"""Requests delivered to the webhook's `Endpoints` in-process, routed as the HTTP/1.1 server
routes them (webhook.serving.http11): POST /mutate, GET /healthz, /readyz, /metrics, the body
limit as 413, 404 and 405 with the server's wording.  No sockets, no TLS, no framework; the
real server is covered by tests/tls."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dracore.policy import Policy
from webhook.admission.gateway import ClusterGateway
from webhook.admission.handler import Reply, error_reply, too_large_reply
from webhook.serving.endpoints import Endpoints
from webhook.serving.reload import Reloadable
from webhook.settings import Settings


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def text(self) -> str:
        return self.body.decode()


class EndpointsClient:
    def __init__(self, endpoints: Endpoints, *, max_body: int) -> None:
        self.endpoints = endpoints
        self.max_body = max_body

    def post(
        self,
        path: str,
        *,
        json: Any = None,
        data: bytes | str = b"",
        content_type: str = "",
    ) -> Response:
        if json is not None:
            data, content_type = jsonlib.dumps(json).encode(), "application/json"
        body = data.encode() if isinstance(data, str) else data
        return self._send("POST", path, body, content_type)

    def get(self, path: str) -> Response:
        return self._send("GET", path, b"", "")

    def _send(self, method: str, path: str, body: bytes, content_type: str) -> Response:
        reply = self._answer(method, path, body, content_type)
        headers = {"Content-Type": reply.content_type, "Content-Length": str(len(reply.body))}
        return Response(reply.status, headers, reply.body)

    def _answer(self, method: str, path: str, body: bytes, content_type: str) -> Reply:
        if len(body) > self.max_body:
            return too_large_reply(self.max_body)
        if path == "/mutate":
            if method != "POST":
                return error_reply(405, "use POST for /mutate")
            return self.endpoints.mutate(body, content_type)
        routes: dict[str, Callable[[], Reply]] = {
            "/healthz": self.endpoints.healthz,
            "/readyz": self.endpoints.readyz,
            "/metrics": self.endpoints.metrics,
        }
        if path not in routes:
            return error_reply(404, "not found; the webhook serves POST /mutate")
        if method != "GET":
            return error_reply(405, f"use GET for {path}")
        return routes[path]()


def webhook_client(
    settings: Settings | None = None,
    *,
    policy: Policy | Callable[[], Policy] | None = None,
    gateway: ClusterGateway | None = None,
    status: Sequence[Reloadable] = (),
) -> EndpointsClient:
    """A client of `Endpoints.build(settings, ...)` (same arguments), with its body limit."""
    settings = settings or Settings()
    endpoints = Endpoints.build(settings, policy=policy, gateway=gateway, status=status)
    return EndpointsClient(endpoints, max_body=settings.max_review_bytes)
