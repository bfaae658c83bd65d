"""HTTP/1.1 over TLS on one event loop: the webhook's own small server, with a deadline per phase.

Why not a general web server: the webhook answers four routes to one client (the API server),
which keeps a few connections open and sends small JSON bodies. For that, the cost of a general
HTTP stack in pure Python (parsing, per-request tasks, ASGI or WSGI objects) was several times
the cost of the review itself. Here each connection is an `asyncio.Protocol`, requests are
parsed by httptools (llhttp, the parser Node.js uses, written in C), and a small review is
answered right in `data_received`.

What a hostile or slow peer can cost is bounded:

- TLS handshake: `handshake_timeout` (the loop's own handshake deadline).
- Request line and headers: `header_timeout` from the first byte (or from the end of the
  previous response: it is also the keep-alive idle limit); at most `MAX_HEAD_BYTES`, else 431.
- Body: `body_timeout` once the headers are in (else 408); at most `max_body` bytes counted as
  they arrive, chunked or not (else 413, and the connection closes).
- While a request is answered on a thread, the connection stops reading; a client that sends
  but does not read its answers is stopped the same way once the transport's buffer is full.
- After `MAX_REQUESTS` on one connection the answer says `Connection: close`, so clients spread
  over replicas after a rollout.

POST /mutate of at most `INLINE_REVIEW_BYTES` that needs no API call (the common case: the
pod's template was made before) is decided on the loop: it takes a fraction of a millisecond,
less than handing it to a thread would cost. Larger reviews, and those that need the API
server, go to a thread of a fixed pool, so a huge pod or a slow API call never stalls the
loop's other connections.

HTTP/2 is not offered: it would need a second framing layer in pure Python (h2, hpack) beside
this C parser, for a client that keeps HTTP/1.1 connections alive and reuses them anyway
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, cast

import httptools

from webhook.admission.decision import NeedsCluster
from webhook.admission.handler import Reply, error_reply, too_large_reply
from webhook.serving.endpoints import Endpoints

log = logging.getLogger(__name__)

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_REQUESTS: Final = 1000
# 1-GPU reviews are about 1.5 KiB; a pod with many containers and its managedFields 10-20 KiB.
INLINE_REVIEW_BYTES: Final = 32 * 1024
INTERNAL: Final = "internal error; the details are in the webhook's log"
HEAD_TOO_LARGE: Final = f"request head over {MAX_HEAD_BYTES} bytes"


@dataclass(frozen=True, slots=True)
class Limits:
    """The deadlines (seconds) and body limit, from `webhook.settings.Settings`."""

    handshake_timeout: float
    header_timeout: float
    body_timeout: float
    max_body: int


@dataclass(frozen=True, slots=True)
class Request:
    method: bytes
    path: bytes
    content_type: str
    body: bytes
    keep_alive: bool


class _TooLarge(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
        return self._value


def response_bytes(reply: Reply, date: bytes, *, close: bool) -> bytes:
    reason = HTTPStatus(reply.status).phrase.encode()
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ndate: %s\r\n%s\r\n" % (
        reply.status,
        reason,
        reply.content_type.encode(),
        len(reply.body),
        date,
        b"connection: close\r\n" if close else b"",
    )
    return head + reply.body


class Service:
    """Routes requests of every connection of one loop to the endpoints, on the loop or a thread."""

    def __init__(self, endpoints: Endpoints, *, threads: int, limits: Limits) -> None:
        self.endpoints = endpoints
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="review")
        self.clock = _Clock()
        self.connections: set[Connection] = set()
        self.stopping = False

    def answer(self, request: Request) -> Reply | Awaitable[Reply]:
        path = request.path.partition(b"?")[0]
        endpoints = self.endpoints
        if path == b"/mutate":
            if request.method != b"POST":
                return error_reply(405, "use POST for /mutate")
            if len(request.body) <= INLINE_REVIEW_BYTES:
                try:
                    return endpoints.mutate(request.body, request.content_type, cluster=False)
                except NeedsCluster:
                    pass
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(
                self.pool, endpoints.mutate, request.body, request.content_type
            )
        if path not in (b"/healthz", b"/readyz", b"/metrics"):
            return error_reply(404, "not found; the webhook serves POST /mutate")
        if request.method != b"GET":
            return error_reply(405, f"use GET for {path.decode('latin-1')}")
        if path == b"/metrics":  # reads every worker's files: off the loop
            return asyncio.get_running_loop().run_in_executor(self.pool, endpoints.metrics)
        return endpoints.healthz() if path == b"/healthz" else endpoints.readyz()


class Connection(asyncio.Protocol):
    """One client connection: parse, answer in order, enforce the deadlines above."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.limits = service.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.timer: asyncio.TimerHandle | None = None
        self.pending: deque[Request] = deque()
        self.busy = False  # a request of this connection is being answered on a thread
        self.write_paused = False
        self.served = 0
        self._reset()

    def _reset(self) -> None:
        self.started = False  # some byte of the next request has arrived
        self.headers_done = False
        self.head_bytes = 0
        self.unfinished_head = 0
        self.url = b""
        self.content_type = ""
        self.body: list[bytes] = []
        self.body_bytes = 0

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.service.connections.add(self)
        self._arm(self.limits.header_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.connections.discard(self)
        self._disarm()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        in_head = self.started and not self.headers_done
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # Our callbacks' limits; the parser wraps what they raise.
            if isinstance(exc.__context__, _TooLarge):
                self._fail(too_large_reply(self.limits.max_body))
            elif isinstance(exc.__context__, _HeadTooLarge):
                self._fail(error_reply(431, HEAD_TOO_LARGE))
            else:  # a bug in a callback of ours
                log.exception("reading a request failed")
                self._fail(error_reply(500, INTERNAL))
            return
        except httptools.HttpParserUpgrade:
            self._fail(error_reply(400, "protocol upgrades are not served"))
            return
        except httptools.HttpParserError:
            self._fail(error_reply(400, "malformed HTTP request"))
            return
        if in_head and self.started and not self.headers_done:
            # The parser holds a header it has not finished in memory, and reports it only once
            # complete: count what arrives while a head stays unfinished (all of it is head).
            self.unfinished_head += len(data)
            if self.unfinished_head > MAX_HEAD_BYTES:
                self._fail(error_reply(431, HEAD_TOO_LARGE))
                return
        self._answer_pending()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.busy:
            self.transport.resume_reading()

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.started = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        lowered = name.lower()
        if lowered == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lowered == b"content-length" and value.isdigit() and self._over_limit(value):
            raise _TooLarge

    def _over_limit(self, length: bytes) -> bool:
        return len(length) > 12 or int(length) > self.limits.max_body

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if not self.busy:
            self._arm(self.limits.body_timeout, self._body_expired)

    def on_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limits.max_body:
            raise _TooLarge
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        self.pending.append(
            Request(method, self.url, self.content_type, b"".join(self.body), keep_alive)
        )
        self._reset()

    # --- answering --------------------------------------------------------------------------

    def _answer_pending(self) -> None:
        answered = False
        while self.pending and not self.busy and self.transport is not None:
            request = self.pending.popleft()
            answered = True
            self._disarm()
            try:
                result = self.service.answer(request)
            except Exception:
                log.exception("answering %s failed", request.path.decode("latin-1"))
                result = error_reply(500, INTERNAL)
            if isinstance(result, Reply):
                self._write(request, result)
            else:
                self.busy = True
                self.transport.pause_reading()
                self.loop.create_task(self._answer_later(request, result))
        if answered and not self.busy and self.transport is not None:
            # The next request's deadline runs from the end of this answer.
            if self.headers_done:
                self._arm(self.limits.body_timeout, self._body_expired)
            else:
                self._arm(self.limits.header_timeout, self._head_expired)

    async def _answer_later(self, request: Request, result: Awaitable[Reply]) -> None:
        try:
            reply = await result
        except Exception:
            log.exception("answering %s failed", request.path.decode("latin-1"))
            reply = error_reply(500, INTERNAL)
        self.busy = False
        if self.transport is None:
            return
        self._write(request, reply)
        if self.transport is not None and not self.transport.is_closing():
            if not self.write_paused:
                self.transport.resume_reading()
            self._answer_pending()

    def _write(self, request: Request, reply: Reply) -> None:
        assert self.transport is not None
        self.served += 1
        close = not request.keep_alive or self.served >= MAX_REQUESTS or self.service.stopping
        self.transport.write(response_bytes(reply, self.service.clock.date(), close=close))
        if close:
            self.pending.clear()
            self.transport.close()

    def _fail(self, reply: Reply) -> None:
        """Answer a request that cannot be read further, then close."""
        if self.transport is not None and not self.busy:
            self.transport.write(response_bytes(reply, self.service.clock.date(), close=True))
        self._close()

    def _close(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def close_if_idle(self) -> None:
        if not self.busy and not self.pending and not self.started:
            self._close()

    # --- deadlines --------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_expired(self) -> None:
        # Idle keep-alive, or a request line and headers that never finished: just close.
        self.timer = None
        if not self.busy:
            self._close()

    def _body_expired(self) -> None:
        self.timer = None
        if not self.busy:
            self._fail(error_reply(408, "the request body did not arrive in time"))


def _quiet_tls_errors(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Failed handshakes (scanners, clients without the right certificate) are logged at debug."""
    error = context.get("exception")
    if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
        log.debug("connection failed: %s", error)
        return
    loop.default_exception_handler(context)


async def serve(
    sockets: Sequence[socket.socket],
    context: ssl.SSLContext,
    endpoints: Endpoints,
    *,
    threads: int,
    limits: Limits,
    graceful_timeout: float,
    until_stopped: Callable[[], Awaitable[None]],
) -> None:
    """Serve `sockets` until `until_stopped` returns, then drain for up to `graceful_timeout`."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_tls_errors)
    service = Service(endpoints, threads=threads, limits=limits)
    servers = [
        await loop.create_server(
            lambda: Connection(service),
            sock=sock,
            ssl=context,
            ssl_handshake_timeout=limits.handshake_timeout,
        )
        for sock in sockets
    ]
    try:
        await until_stopped()
    finally:
        service.stopping = True
        for server in servers:
            server.close()
        for connection in list(service.connections):
            connection.close_if_idle()
        deadline = loop.time() + graceful_timeout
        while service.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
            for connection in list(service.connections):
                connection.close_if_idle()
        for connection in list(service.connections):
            if connection.transport is not None:
                connection.transport.abort()
        service.pool.shutdown(wait=False)
