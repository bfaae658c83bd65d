"""Requests delivered to the webhook's `Endpoints` in-process, routed as the HTTP/1.1 server
routes them (`Endpoints.route`, which webhook.serving.http11 calls): POST /mutate and
/validate-policy, GET /healthz, /readyz, /metrics, the body limit as 413, 404 and 405 with the
server's wording; work the server hands to a thread runs on the caller's.  No sockets, no TLS, no framework; the
real server is covered by tests/tls."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dracore.policy import Policy
from webhook.admission.gateway import ClusterGateway
from webhook.admission.handler import Deferred, Reply, too_large_reply
from webhook.deadline import Deadline
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
        """Routed as the server routes; what the server would run on a thread runs here."""
        if len(body) > self.max_body:
            return too_large_reply(self.max_body)
        deadline = Deadline.for_review(self.endpoints.review_timeout)
        answer = self.endpoints.route(
            method.encode(), path.encode("latin-1"), content_type, body, deadline
        )
        return answer.work() if isinstance(answer, Deferred) else answer


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
