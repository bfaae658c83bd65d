"""One connection of the HTTP/1.1 server, byte by byte, with a fake clock: order, errors, deadlines.

Every test drives `webhook.serving.http11.Connection` through the real `Endpoints` (the
in-memory gateway where a review needs the API) and reads back exactly what was written.
"""

from __future__ import annotations

import json

from tests.protocol.harness import LIMITS, Client, World, get, post
from tests.reviews import gpu_review
from webhook.admission.gateway import MemoryGateway
from webhook.serving.http11 import CONTINUE, Limits


def review(uid_digit: int, *, gpus: int = 1) -> bytes:
    return json.dumps(
        gpu_review(gpus=gpus, uid=f"00000000-0000-0000-0000-00000000000{uid_digit}")
    ).encode()


def uid_of(client: Client, index: int) -> str:
    uid: str = client.responses()[index].json()["response"]["uid"]
    return uid[-1]


def test_a_request_after_one_on_a_thread_waits_for_it() -> None:
    world = World(gateway=MemoryGateway())
    client = world.connect()
    # 1 needs a template (a thread), 2 is a probe, 3 a review of another shape (a thread too).
    client.send(post(review(1)) + get("/healthz") + post(review(3, gpus=2)))
    assert client.responses() == []
    assert not client.transport.reading  # nothing more is read while the thread works
    world.runtime.finish(1)
    assert client.statuses() == [200, 200]
    world.runtime.finish()
    assert client.statuses() == [200, 200, 200]
    assert [uid_of(client, 0), uid_of(client, 2)] == ["1", "3"]
    assert client.transport.reading and not client.transport.closed


def test_garbage_after_a_review_is_refused_after_the_review_is_answered() -> None:
    world = World(gateway=MemoryGateway())
    client = world.connect()
    client.send(post(review(1)) + b"\x00\x01 not HTTP\r\n\r\n")
    assert client.responses() == []  # the review is on a thread: its error must wait
    world.runtime.finish()
    first, second = client.responses()
    assert (first.status, uid_of(client, 0)) == (200, "1")
    assert second.status == 400 and second.closes
    assert second.json() == {"error": "malformed HTTP request"}
    assert client.transport.closed


def test_an_oversized_post_after_a_review_gets_413_and_only_it() -> None:
    world = World()
    client = world.connect()
    too_big = f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMITS.max_body + 1}\r\n\r\n"
    client.send(post(review(1)) + too_big.encode())
    first, second = client.responses()
    assert first.status == 200 and not first.closes
    assert second.status == 413 and second.closes
    assert f"the limit is {LIMITS.max_body} bytes" in second.json()["error"]


def test_data_after_an_http_1_0_request_is_ignored_and_the_request_answered() -> None:
    world = World()
    client = world.connect()
    client.send(get("/healthz", version="1.0") + get("/healthz"))
    [only] = client.responses()
    assert only.status == 200 and only.closes
    assert client.transport.closed


def test_a_thousandth_request_closes_the_connection_and_later_ones_are_not_read() -> None:
    world = World()
    client = world.connect()
    client.send(get("/healthz") * 1001)
    responses = client.responses()
    assert len(responses) == 1000
    assert [r.closes for r in responses].index(True) == 999


def test_an_upgrade_is_refused_in_its_turn() -> None:
    world = World()
    client = world.connect()
    client.send(get("/healthz") + get("/healthz", extra="Connection: upgrade\r\nUpgrade: h2c\r\n"))
    assert client.statuses() == [200, 400]
    assert client.responses()[1].json() == {"error": "protocol upgrades are not served"}


# --- deadlines --------------------------------------------------------------------------------


def test_an_idle_connection_closes_after_the_keepalive() -> None:
    world = World()
    client = world.connect()
    world.runtime.advance(LIMITS.header_timeout - 0.01)
    assert not client.transport.closed
    world.runtime.advance(0.02)
    assert client.transport.closed and client.responses() == []


def test_idle_after_an_answer_from_a_thread_has_a_deadline() -> None:
    world = World(gateway=MemoryGateway())
    client = world.connect()
    client.send(post(review(1)))
    world.runtime.advance(3)
    world.runtime.finish()
    assert client.statuses() == [200]
    world.runtime.advance(LIMITS.header_timeout - 0.01)  # counted from the answer
    assert not client.transport.closed
    world.runtime.advance(0.02)
    assert client.transport.closed


def test_half_a_head_after_an_answer_from_a_thread_gets_408() -> None:
    world = World(gateway=MemoryGateway())
    client = world.connect()
    client.send(post(review(1)) + b"POST /mutate HTTP/1.1\r\nHost:")
    world.runtime.finish()
    world.runtime.advance(LIMITS.header_timeout + 0.01)
    assert client.statuses() == [200, 408]
    assert client.responses()[1].json()["error"] == "the request head did not arrive in time"
    assert client.transport.closed


def test_a_body_that_stops_gets_408_after_the_body_timeout() -> None:
    world = World()
    client = world.connect()
    client.send(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    world.runtime.advance(LIMITS.body_timeout - 0.01)
    client.send(b'"a')  # more bytes do not extend it
    assert client.responses() == []
    world.runtime.advance(0.02)
    assert client.statuses() == [408] and client.transport.closed


def test_a_client_that_reads_no_answer_is_aborted() -> None:
    world = World()
    client = world.connect(client_reads=False)
    client.connection.pause_writing()  # the transport's buffer is full
    assert not client.transport.reading
    world.runtime.advance(LIMITS.body_timeout + 0.01)
    assert client.transport.aborted


def test_a_closing_connection_whose_answer_is_not_read_is_aborted() -> None:
    world = World()
    client = world.connect(client_reads=False)
    client.send(get("/healthz", extra="Connection: close\r\n"))
    assert client.transport.closed and not client.transport.lost
    world.runtime.advance(LIMITS.body_timeout + 0.01)
    assert client.transport.aborted and client.transport.lost


def test_the_review_deadline_starts_when_its_head_arrives() -> None:
    gateway = MemoryGateway()
    world = World(gateway=gateway)
    client = world.connect()
    body = review(1)
    head, _, _ = post(body).partition(b"\r\n\r\n")
    client.send(head + b"\r\n\r\n")
    world.runtime.advance(3.0)  # the body takes 3 s
    client.send(body)
    world.runtime.advance(1.0)  # and the thread starts a second later
    world.runtime.finish()
    assert client.statuses() == [200]
    # 5 s timeoutSeconds - 0.5 s margin - 4 s gone: the template's create had 0.5 s.
    assert gateway.budgets == [0.5]


def test_expect_100_continue_is_answered_before_the_body_in_its_turn() -> None:
    world = World(gateway=MemoryGateway())
    client = world.connect()
    body = review(2)
    head = post(body, extra="Expect: 100-continue\r\n")[: -len(body)]
    client.send(post(review(1)) + head)  # the first review is on a thread
    assert bytes(client.transport.written) == b""
    world.runtime.finish()
    assert bytes(client.transport.written).endswith(CONTINUE)
    client.send(body)
    world.runtime.finish()
    assert client.statuses() == [200, 100, 200]
    assert uid_of(client, 2) == "2"


# --- the connection cap -----------------------------------------------------------------------


def test_at_the_cap_the_longest_idle_goes_then_new_ones_are_refused_until_deadlines_free_room() -> (
    None
):
    limits = Limits(
        handshake_timeout=5, header_timeout=10, body_timeout=20, max_body=65536, max_connections=4
    )
    world = World(limits=limits, gateway=MemoryGateway())
    idle = world.connect()
    world.runtime.advance(1)
    head = world.connect()
    head.send(b"POST /mutate HTTP/1.1\r\nHost:")
    body = world.connect()
    body.send(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    busy = world.connect()
    busy.send(post(review(1)))  # on a thread until the test finishes it
    assert len(world.service.connections) == 4

    fifth = world.connect()
    assert idle.transport.closed and not fifth.transport.closed  # the idle one made room
    fifth.send(b"GET /heal")  # now no connection is idle
    sixth = world.connect()
    assert sixth.transport.aborted and sixth.transport.written == b""  # refused
    assert not any(c.transport.closed for c in (head, body, busy, fifth))

    world.runtime.advance(10)  # the head deadline of both half heads: 408
    assert head.statuses() == [408] and fifth.statuses() == [408]
    world.runtime.finish()
    assert busy.statuses() == [200]
    world.runtime.advance(10)  # the body deadline: 408; busy idled out after its answer
    assert body.statuses() == [408] and busy.transport.closed
    assert world.service.connections == set() and world.service.closing == set()

    recovered = world.connect()
    recovered.send(get("/healthz"))
    assert recovered.statuses() == [200]


def test_a_closing_connection_no_longer_counts_against_the_cap() -> None:
    limits = Limits(
        handshake_timeout=5, header_timeout=10, body_timeout=20, max_body=65536, max_connections=1
    )
    world = World(limits=limits)
    leaving = world.connect(client_reads=False)  # it will not read its last answer
    leaving.send(get("/healthz", extra="Connection: close\r\n"))
    assert leaving.transport.closed and not leaving.transport.lost
    assert world.service.closing == {leaving.connection}  # the graceful stop still waits for it
    arriving = world.connect()
    assert not arriving.transport.closed
    arriving.send(get("/healthz"))
    assert arriving.statuses() == [200]
    world.runtime.advance(20)  # the leaving one's socket is bounded by its own timer
    assert leaving.transport.aborted and world.service.closing == set()
