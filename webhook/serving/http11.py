"""HTTP/1.1 over TLS on one event loop: the webhook's own small server, with a deadline per state.

Why not a general web server: the webhook answers four routes to one client (the API server),
which keeps a few connections open and sends small JSON bodies. For that, the cost of a general
HTTP stack in pure Python (parsing, per-request tasks, ASGI or WSGI objects) was several times
the cost of the review itself (docs/decisions/http-server.md). Here each connection is an
`asyncio.Protocol`, requests are parsed by httptools (llhttp, the parser Node.js uses, written
in C), and what `Endpoints.route` can answer at once is answered right in `data_received`.

Every state of a connection has a deadline, and what a hostile or slow peer can cost is bounded:

- TLS handshake: `handshake_timeout` (the loop's own handshake deadline).
- Idle, and then the request line and headers: `header_timeout` from the end of the previous
  answer (or the handshake); at most `MAX_HEAD_BYTES`, else 431. An idle connection is closed;
  a head cut off halfway gets 408.
- Body: `body_timeout` once the headers are in (else 408); at most `max_body` bytes counted as
  they arrive, chunked or not (else 413, and the connection closes).
- Answering on a thread: reading stops; the review's own deadline bounds the work.
- An answer the client does not read (the transport's buffer full), or a closing connection
  whose last answer it does not read: `body_timeout`, then the connection is aborted.
- At most `max_connections` per worker that can still carry requests: at the cap, a new
  connection closes the one idle the longest (the client, which reuses its most recent
  connections, is least likely to want it); with none idle, the new connection is aborted at
  once. Connections in every other state leave on their own deadlines, so the worker recovers
  within `header_timeout` or `body_timeout`. A closing connection stops counting at once; its
  own timer (`body_timeout`) bounds how long it may still hold a socket.

Pipelined requests are answered strictly in order. A request that cannot be read (garbage, a
head or body over its limit, an upgrade) is answered with its error after every request before
it, and the connection closes; data after the last request of a connection (HTTP/1.0,
`Connection: close`, the `MAX_REQUESTS`th) is ignored, and that request still gets its answer.

Each request's `Deadline` starts when its head has arrived: `review_timeout` (the registration's
timeoutSeconds) minus a margin. The loop calls nothing that can block: what `Endpoints.route`
cannot answer at once comes back as a `Deferred`, run by the `Runtime` on a thread.

HTTP/2 is not offered: it would need a second framing layer in pure Python (h2, hpack) beside
this C parser, for a client that keeps HTTP/1.1 connections alive and reuses them anyway
(docs/performance.md).

Over 500 lines on purpose: it is one connection state machine; its states, their deadlines
and the ordering rules of pipelined answers must be read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, Protocol, cast

import httptools

from webhook import metrics
from webhook.admission.handler import Deferred, Reply, error_reply, too_large_reply
from webhook.deadline import Deadline
from webhook.serving.endpoints import EVERYTHING, MUTATE, PROBES, Endpoints

log = logging.getLogger(__name__)

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_REQUESTS: Final = 1000
INTERNAL: Final = "internal error; the details are in the webhook's log"
HEAD_TOO_LARGE: Final = f"request head over {MAX_HEAD_BYTES} bytes"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Limits:
    """The deadlines (seconds), body and connection limits, from `webhook.settings.Settings`."""

    handshake_timeout: float
    header_timeout: float
    body_timeout: float
    max_body: int
    max_connections: int = 256
    review_timeout: float = 5.0  # the registration's timeoutSeconds


@dataclass(frozen=True, slots=True)
class Request:
    method: bytes
    target: bytes
    content_type: str
    body: bytes
    keep_alive: bool
    deadline: Deadline


@dataclass(frozen=True, slots=True)
class Refusal:
    """The answer to a request that cannot be read; the connection closes after it."""

    reply: Reply


class _TooLarge(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


class _Upgrade(Exception):
    pass


class _LastRequest(Exception):
    """Raised after the last request a connection serves: what follows it is not parsed."""


class Phase(enum.Enum):
    """The states whose deadline is a read or write timer (others have their own bound)."""

    HEAD = "head"  # idle, or a request line and headers arriving
    BODY = "body"
    WRITE = "write"  # our answers wait for the client to read them


class Timer(Protocol):
    def cancel(self) -> None: ...


class Runtime(Protocol):
    """What a connection needs from its surroundings: a clock, timers, a thread to work on."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...

    def run(self, work: Callable[[], Reply], done: Callable[[Reply], None]) -> None:
        """Call `work` off the loop, then `done` with its reply on the loop."""


class LoopRuntime:
    """The real Runtime: the running event loop and a fixed pool of threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, threads: int) -> None:
        self.loop = loop
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="review")

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.loop.call_later(delay, callback)

    def run(self, work: Callable[[], Reply], done: Callable[[Reply], None]) -> None:
        def finished(future: Future[Reply]) -> None:
            try:
                reply = future.result()
            except Exception:
                log.exception("answering a request on a thread failed")
                reply = error_reply(500, INTERNAL)
            # The loop may have closed while the thread worked: then nobody waits for it.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(done, reply)

        self.pool.submit(work).add_done_callback(finished)


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
    """What every connection of one loop shares: the endpoints, the limits, the connection cap."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        runtime: Runtime,
        limits: Limits,
        served: frozenset[bytes] = EVERYTHING,
    ) -> None:
        self.endpoints = endpoints
        self.served = served
        self.runtime = runtime
        self.limits = limits
        self.clock = _Clock()
        self.connections: set[Connection] = set()  # those that can still carry requests
        self.closing: set[Connection] = set()  # their last answer written, not yet gone
        self.stopping = False

    def admit(self, connection: Connection) -> bool:
        """Make room for `connection` under the cap; False if it must be closed instead."""
        if len(self.connections) >= self.limits.max_connections:
            idle = [c for c in self.connections if c.idle_since is not None]
            if not idle:
                metrics.observe_connection_shed("refused")
                return False
            min(idle, key=lambda c: cast(float, c.idle_since)).close()
            metrics.observe_connection_shed("idle-closed")
        self.connections.add(connection)
        return True


class Connection(asyncio.Protocol):
    """One client connection: parse, answer in order, a deadline in every state."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.limits = service.limits
        self.runtime = service.runtime
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.timer: Timer | None = None
        self.phase: Phase | None = None
        self.idle_since: float | None = None  # set while idle between requests
        self.queue: deque[Request | Refusal] = deque()  # parsed, not answered yet, in order
        self.busy = False  # the request at the head of the line is answered on a thread
        self.reading = True  # False once the connection's last request has been read
        self.closing = False
        self.read_paused = False
        self.write_paused = False
        self.parsed = 0
        self._reset()

    def _reset(self) -> None:
        self.started = False  # some byte of the next request has arrived
        self.headers_done = False
        self.head_bytes = 0
        self.unfinished_head = 0
        self.url = b""
        self.content_type = ""
        self.expect_continue = False
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.deadline: Deadline | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self.service.admit(self):
            self.reading = False
            self.transport.abort()  # nothing to say, and no slot to wait in for a polite close
            self.transport = None
            return
        self._rearm(restart=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.connections.discard(self)
        self.service.closing.discard(self)
        self._disarm()
        self.idle_since = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None or not self.reading:
            return
        in_head = self.started and not self.headers_done
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # Our callbacks' limits; the parser wraps what they raise.
            cause = exc.__context__
            if isinstance(cause, _LastRequest):
                self._stop_reading()
            elif isinstance(cause, _TooLarge):
                self._refuse(too_large_reply(self.limits.max_body))
            elif isinstance(cause, _HeadTooLarge):
                self._refuse(error_reply(431, HEAD_TOO_LARGE))
            elif isinstance(cause, _Upgrade):
                self._refuse(error_reply(400, "protocol upgrades are not served"))
            else:  # a bug in a callback of ours
                log.exception("reading a request failed")
                self._refuse(error_reply(500, INTERNAL))
        except httptools.HttpParserError:
            self._refuse(error_reply(400, "malformed HTTP request"))
        else:
            if in_head and self.started and not self.headers_done:
                # The parser holds a header it has not finished in memory, and reports it only
                # once complete: count what arrives while a head stays unfinished (all is head).
                self.unfinished_head += len(data)
                if self.unfinished_head > MAX_HEAD_BYTES:
                    self._refuse(error_reply(431, HEAD_TOO_LARGE))
        self._drain()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._flow()
        self._rearm()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._flow()
        self._rearm()

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.started = True
        self.idle_since = None

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
        elif lowered == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def _over_limit(self, length: bytes) -> bool:
        return len(length) > 12 or int(length) > self.limits.max_body

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            raise _Upgrade
        self.headers_done = True
        self.deadline = Deadline.for_review(self.limits.review_timeout, clock=self.runtime.now)
        self._rearm()

    def on_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limits.max_body:
            raise _TooLarge
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        assert self.deadline is not None  # set when the headers completed
        self.parsed += 1
        keep_alive = (
            self.parser.should_keep_alive()
            and self.parsed < MAX_REQUESTS
            and not self.service.stopping
        )
        method = self.parser.get_method()
        body = b"".join(self.body)
        self.queue.append(
            Request(method, self.url, self.content_type, body, keep_alive, self.deadline)
        )
        self._reset()
        if not keep_alive:
            raise _LastRequest

    # --- answering, in order ----------------------------------------------------------------

    def _drain(self, *, answered: bool = False) -> None:
        """Answer what is queued, in order, until a request needs a thread."""
        while self.queue and not self.busy and not self.closing and self.transport is not None:
            item = self.queue.popleft()
            if isinstance(item, Refusal):
                self._write(item.reply, close=True)
                return
            try:
                result = self.service.endpoints.route(
                    item.method,
                    item.target,
                    item.content_type,
                    item.body,
                    item.deadline,
                    served=self.service.served,
                )
            except Exception:
                log.exception("answering %s failed", item.target.decode("latin-1"))
                result = error_reply(500, INTERNAL)
            if isinstance(result, Deferred):
                log.debug("answering on a thread: %s", result.reason)
                self.busy = True
                self._flow()
                self.runtime.run(result.work, functools.partial(self._deferred_done, item))
            else:
                self._write(result, close=self._closes_after(item))
                answered = True
        if self.transport is None or self.busy or self.closing:
            return
        if self.expect_continue and self.headers_done and not self.body_bytes:
            # The client waits for this before it sends the body: only once every earlier
            # answer is out, so the answers stay in order.
            self.expect_continue = False
            self.transport.write(CONTINUE)
        self._flow()
        self._rearm(restart=answered)

    def _deferred_done(self, request: Request, reply: Reply) -> None:
        self.busy = False
        if self.transport is None:
            return
        self._write(reply, close=self._closes_after(request))
        self._drain(answered=True)

    def _closes_after(self, request: Request) -> bool:
        return not request.keep_alive or self.service.stopping

    def _write(self, reply: Reply, *, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(response_bytes(reply, self.service.clock.date(), close=close))
        if close:
            self.close()

    def _refuse(self, reply: Reply) -> None:
        """Answer a request that cannot be read, after every request before it; then close."""
        self.queue.append(Refusal(reply))
        self._stop_reading()

    def _stop_reading(self) -> None:
        self.reading = False
        self._flow()

    def _flow(self) -> None:
        """Read only while the next request can be answered and the client takes our answers."""
        if self.transport is None:
            return
        paused = not self.reading or self.busy or self.write_paused
        if paused != self.read_paused:
            self.read_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        """Close after what was written; abort if the client does not read it in time."""
        self.queue.clear()
        self.reading = False
        if self.transport is None or self.closing:
            return
        self.closing = True
        # It carries no more requests, so it no longer counts against the cap; the timer below
        # bounds how long it may still hold its socket.
        self.service.connections.discard(self)
        self.service.closing.add(self)
        self._disarm()
        self.phase = Phase.WRITE
        self.timer = self.runtime.call_later(self.limits.body_timeout, self._abort)
        self.transport.close()

    def close_if_idle(self) -> None:
        if not self.busy and not self.queue and not self.started:
            self.close()

    # --- deadlines --------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def _current_phase(self) -> Phase | None:
        if self.write_paused:
            return Phase.WRITE
        if self.busy or self.queue or not self.reading:
            return None  # answering: the review's deadline; closing: close() armed its own
        return Phase.BODY if self.headers_done else Phase.HEAD

    def _rearm(self, *, restart: bool = False) -> None:
        """Start the deadline of the state the connection is in, unless it already runs.

        `restart` after an answer: the keep-alive idle time counts from the end of it.
        """
        if self.transport is None or self.closing:
            return
        phase = self._current_phase()
        if phase is self.phase and not (restart and phase is Phase.HEAD):
            return
        self._disarm()
        self.phase = phase
        if phase is Phase.HEAD:
            self.idle_since = None if self.started else self.runtime.now()
            self.timer = self.runtime.call_later(self.limits.header_timeout, self._head_expired)
        elif phase is Phase.BODY:
            self.timer = self.runtime.call_later(self.limits.body_timeout, self._body_expired)
        elif phase is Phase.WRITE:
            self.timer = self.runtime.call_later(self.limits.body_timeout, self._abort)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.phase = None
        self.idle_since = None

    def _head_expired(self) -> None:
        self.timer = None
        if not self.started:  # idle keep-alive: nothing to answer
            self.close()
            return
        self._refuse(error_reply(408, "the request head did not arrive in time"))
        self._drain()

    def _body_expired(self) -> None:
        self.timer = None
        self._refuse(error_reply(408, "the request body did not arrive in time"))
        self._drain()

    def _abort(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()


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
    probe_sockets: Sequence[socket.socket] = (),
) -> None:
    """Serve `sockets` until `until_stopped` returns, then drain for up to `graceful_timeout`.

    With `probe_sockets`, those serve /healthz, /readyz and /metrics over plain HTTP (no client
    certificate needed), and `sockets` only POST /mutate.
    """
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_tls_errors)
    runtime = LoopRuntime(loop, threads=threads)
    served = MUTATE if probe_sockets else EVERYTHING
    service = Service(endpoints, runtime=runtime, limits=limits, served=served)
    services = [service]
    servers = [
        await loop.create_server(
            lambda: Connection(service),
            sock=sock,
            ssl=context,
            ssl_handshake_timeout=limits.handshake_timeout,
        )
        for sock in sockets
    ]
    if probe_sockets:
        probes = Service(endpoints, runtime=runtime, limits=limits, served=PROBES)
        services.append(probes)
        servers += [
            await loop.create_server(lambda: Connection(probes), sock=sock)
            for sock in probe_sockets
        ]
    try:
        await until_stopped()
    finally:
        await _drain_and_stop(loop, servers, services, graceful_timeout)
        runtime.pool.shutdown(wait=False)


async def _drain_and_stop(
    loop: asyncio.AbstractEventLoop,
    servers: Sequence[asyncio.Server],
    services: Sequence[Service],
    graceful_timeout: float,
) -> None:
    """Stop accepting, close idle connections, give the others up to `graceful_timeout`."""
    for service in services:
        service.stopping = True
    for server in servers:
        server.close()

    def connections() -> list[Connection]:
        """Every connection still open, closing ones too (their last answers must get out)."""
        return [c for service in services for c in (*service.connections, *service.closing)]

    for connection in connections():
        connection.close_if_idle()
    deadline = loop.time() + graceful_timeout
    while connections() and loop.time() < deadline:
        await asyncio.sleep(0.05)
        for connection in connections():
            connection.close_if_idle()
    for connection in connections():
        if connection.transport is not None:
            connection.transport.abort()
