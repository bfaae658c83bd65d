"""A connection of `webhook.serving.http11` with nothing real around it but the endpoints.

`FakeRuntime` is the clock, the timers and the thread pool: time moves only when a test calls
`advance`, and work handed to a thread runs only when a test calls `finish`. `FakeTransport`
records what the server writes and whether it closed, aborted or paused reading; like asyncio's,
it reports the connection lost only once what was written has been read by the client (at
once, unless the test says the client reads nothing). `parse_responses` reads the written bytes
back as HTTP/1.1 responses, strictly, so a malformed or extra byte fails the test.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dracore.policy import Policy
from webhook.admission.gateway import MemoryGateway
from webhook.admission.handler import Reply
from webhook.serving.endpoints import Endpoints
from webhook.serving.http11 import Connection, Limits, Service
from webhook.settings import Settings

LIMITS = Limits(
    handshake_timeout=5.0,
    header_timeout=10.0,
    body_timeout=10.0,
    max_body=64 * 1024,
    max_connections=8,
    review_timeout=5.0,
)


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeRuntime:
    def __init__(self) -> None:
        self.clock = 0.0
        self.timers: list[FakeTimer] = []
        self.work: deque[tuple[Callable[[], Reply], Callable[[Reply], None]]] = deque()
        self.soon: deque[Callable[[], None]] = deque()

    def now(self) -> float:
        return self.clock

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.clock + delay, callback)
        self.timers.append(timer)
        return timer

    def run(self, work: Callable[[], Reply], done: Callable[[Reply], None]) -> None:
        self.work.append((work, done))

    def settle(self) -> None:
        while self.soon:
            self.soon.popleft()()

    def finish(self, count: int | None = None) -> int:
        """Run `count` (default: all) pieces of thread work in order; each reports back."""
        finished = 0
        while self.work and (count is None or finished < count):
            work, done = self.work.popleft()
            done(work())
            finished += 1
            self.settle()
        return finished

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in time order."""
        target = self.clock + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= target]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.clock = max(self.clock, timer.when)
            timer.callback()
            self.settle()
        self.clock = target
        self.timers = [t for t in self.timers if not t.cancelled]


@dataclass
class FakeTransport:
    runtime: FakeRuntime
    client_reads: bool = True
    written: bytearray = field(default_factory=bytearray)
    closed: bool = False
    aborted: bool = False
    reading: bool = True
    lost: bool = False
    protocol: Connection | None = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True
        if self.client_reads:
            self.runtime.soon.append(self._lose)

    def abort(self) -> None:
        self.closed = self.aborted = True
        self.runtime.soon.append(self._lose)

    def _lose(self) -> None:
        if not self.lost and self.protocol is not None:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class World:
    """One Service on a FakeRuntime; `connect` makes connections to it."""

    def __init__(
        self,
        *,
        limits: Limits = LIMITS,
        gateway: MemoryGateway | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.runtime = FakeRuntime()
        self.gateway = gateway
        endpoints = Endpoints.build(
            Settings(review_timeout=limits.review_timeout),
            policy=policy or Policy.default(),
            gateway=gateway,
        )
        self.service = Service(endpoints, runtime=self.runtime, limits=limits)

    def connect(self, *, client_reads: bool = True) -> Client:
        transport = FakeTransport(self.runtime, client_reads=client_reads)
        connection = Connection(self.service)
        transport.protocol = connection
        connection.connection_made(transport)  # type: ignore[arg-type]
        self.runtime.settle()
        return Client(self, connection, transport)


@dataclass
class Client:
    world: World
    connection: Connection
    transport: FakeTransport

    def send(self, data: bytes) -> None:
        self.connection.data_received(data)
        self.world.runtime.settle()

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.transport.written))

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses()]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection") == "close"

    def json(self) -> Any:
        return json.loads(self.body)


def parse_responses(data: bytes) -> list[Response]:
    responses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"an unfinished response head: {data[:200]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers = {}
        for line in lines:
            name, colon, value = line.partition(":")
            assert colon, line
            headers[name.strip().lower()] = value.strip()
        if status == "100":
            responses.append(Response(100, headers, b""))
            data = rest
            continue
        length = int(headers["content-length"])
        assert len(rest) >= length, "a response body cut short"
        responses.append(Response(int(status), headers, rest[:length]))
        data = rest[length:]
    return responses


def get(path: str, *, version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def post(body: bytes, *, path: str = "/mutate", extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body
