"""A scripted API server over HTTPS on 127.0.0.1, for the webhook's own API client and server.

`FakeApi` answers from `routes` ((method, path) -> (status, JSON body)) or, for answers a route
cannot script (a trickle, an endless chunked body, a 429 then a 200), from `scripts` (a function
writing the raw answer); it records every request. `running_api` starts one with a fresh CA and
writes a kubeconfig (token from a file) that points at it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from webhook.ops import certs


class FakeApi(ThreadingHTTPServer):
    """Answers from `routes` ((method, path) -> (status, body)); records what it was sent."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        # (method, path) -> a handler writing its own answer, for answers routes cannot script
        self.scripts: dict[tuple[str, str], Callable[[Handler], None]] = {}
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        self.connections = 0
        self.close_after_next = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeApi

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        script = self.server.scripts.get((self.command, self.path))
        if script is not None:
            script(self)
            return
        status, answer = self.server.routes.get((self.command, self.path), (404, {"message": "nf"}))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_after_next:  # an idle keep-alive connection the server drops
            self.server.close_after_next = False
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def trickle(handler: Handler) -> None:
    """A valid head, then a 200-byte body one byte every 20 ms (4 s in all)."""
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        handler.wfile.write(b"Content-Length: 200\r\n\r\n")
        for _ in range(200):
            handler.wfile.write(b" ")
            time.sleep(0.02)
    except OSError:
        pass  # the client gave up, as it should
    handler.close_connection = True


@contextlib.contextmanager
def running_api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    """A FakeApi on 127.0.0.1 with its own CA, and a kubeconfig (token file) pointing at it."""
    ca = certs.generate_ca()
    leaf = certs.issue_cert(ca, "api", ip_addresses=["127.0.0.1"])
    certs.write_tls_dir(tmp_path / "tls", leaf=leaf, ca=ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key")
    server = FakeApi(context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    b64 = base64.b64encode(ca.cert_pem).decode()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": f"https://127.0.0.1:{server.server_address[1]}",
                            "certificate-authority-data": b64,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"tokenFile": "token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    (tmp_path / "token").write_text("first\n")
    try:
        yield server, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
