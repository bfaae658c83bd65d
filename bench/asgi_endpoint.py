"""POST /mutate of `Endpoints` as an ASGI app, only for bench/http_servers.py (uvicorn, granian).

The same endpoint, policy and decision as `dra-webhook serve --offline`: the body is read
whole, then `Endpoints.mutate` answers on the loop, as our server does for a small review; each
review is logged as a JSON line and counted in multiprocess metrics (the launcher sets
PROMETHEUS_MULTIPROC_DIR), as in our server, so only the HTTP stacks differ.
"""

from __future__ import annotations

from typing import Any

from dracore.policy import Policy
from webhook.serving import logs
from webhook.serving.endpoints import Endpoints
from webhook.settings import Settings

logs.configure("info")
ENDPOINTS = Endpoints.build(Settings(offline=True), policy=Policy.default())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    content_type = ""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    reply = ENDPOINTS.mutate(b"".join(chunks), content_type)
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
