"""Pipelined requests, split at random byte boundaries, against the protocol's invariants.

Whatever the split, and whenever the threads finish: every request before the first one that
ends the connection is answered exactly once and in order, with its own status; the one that
ends it gets its own answer with `connection: close`, and nothing after it is answered; a
connection that nothing ended stays open with everything answered.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.harness import LIMITS, World, get, post
from tests.reviews import gpu_review
from webhook.admission.gateway import MemoryGateway


@dataclass(frozen=True)
class Kind:
    data: bytes
    status: int
    ends: bool = False  # the connection closes after this request's answer
    uid: str | None = None


def _review(index: int, gpus: int) -> Kind:
    uid = f"00000000-0000-0000-0000-{index:012d}"
    return Kind(post(json.dumps(gpu_review(gpus=gpus, uid=uid)).encode()), 200, uid=uid)


KINDS = {
    "probe": Kind(get("/healthz"), 200),
    "metrics": Kind(get("/metrics"), 200),  # answered on a thread
    "missing": Kind(get("/nowhere?x=1"), 404),
    "method": Kind(get("/mutate"), 405),
    "not-json": Kind(post(b"{", extra=""), 400),
    "http10": Kind(get("/readyz", version="1.0"), 200, ends=True),
    "close": Kind(get("/healthz", extra="Connection: close\r\n"), 200, ends=True),
    "garbage": Kind(b"\x00\x01garbage\r\n\r\n", 400, ends=True),
    "too-large": Kind(
        f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMITS.max_body + 1}\r\n\r\n".encode(),
        413,
        ends=True,
    ),
    "upgrade": Kind(get("/", extra="Connection: upgrade\r\nUpgrade: h2c\r\n"), 400, ends=True),
}

requests = st.lists(
    st.one_of(
        st.sampled_from(sorted(KINDS)),
        st.tuples(st.just("review"), st.integers(1, 3)),  # GPUs: a new shape goes to a thread
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(requests=requests, cuts=st.lists(st.integers(0, 4000), max_size=8), data=st.data())
def test_every_request_answered_once_in_order_or_closed_with_its_own_status(
    requests: list[str | tuple[str, int]], cuts: list[int], data: st.DataObject
) -> None:
    kinds = [
        _review(index, item[1]) if isinstance(item, tuple) else KINDS[item]
        for index, item in enumerate(requests)
    ]
    stream = b"".join(kind.data for kind in kinds)
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    world = World(gateway=MemoryGateway())
    client = world.connect()
    for start, end in itertools.pairwise(bounds):
        client.send(stream[start:end])
        if data.draw(st.booleans(), label="threads finish now"):
            world.runtime.finish()
    world.runtime.finish()

    expected = []
    for kind in kinds:
        expected.append(kind)
        if kind.ends:
            break
    responses = client.responses()
    assert [r.status for r in responses] == [k.status for k in expected]
    assert [r.closes for r in responses] == [k.ends for k in expected]
    for response, kind in zip(responses, expected, strict=True):
        if kind.uid:
            assert response.json()["response"]["uid"] == kind.uid
    assert client.transport.closed == expected[-1].ends
    assert world.runtime.work == type(world.runtime.work)()  # no thread work left behind
