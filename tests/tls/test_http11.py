"""The server's own HTTP/1.1 (webhook.serving.http11) over real TLS: framing, ordering and refusals.

Raw bytes on a TLS socket, so each test controls exactly what the server receives: pipelined
requests answered in order (one decided on the loop, one on a thread), wrong methods and paths,
an oversized head, HTTP/1.0, garbage, and the Connection: close after 1,000 requests.
"""

from __future__ import annotations

import json
import socket
import ssl

from tests.builders import container, make_pod, make_review
from tests.reviews import gpu_review
from tests.tls.tls_support import Server, StartServer


def tls(server: Server) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return server.context.wrap_socket(raw, server_hostname="127.0.0.1")


def post(body: bytes, *, extra: str = "") -> bytes:
    head = (
        "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class Responses:
    """Reads responses one at a time off a socket (Content-Length framed)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a response: {self.buffer[:200]!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            assert self._fill(), "closed in the middle of a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    def closed(self) -> bool:
        try:
            return not self.buffer and not self._fill()
        except (ssl.SSLError, ConnectionError):
            return True


def test_pipelined_requests_are_answered_in_order(start_server: StartServer) -> None:
    server = start_server(workers=1, threads=1)
    # A pod over the inline limit (decided on a thread) between two small ones (on the loop).
    big = make_pod(
        *(container(f"c{i}", gpus=1, limits={"cpu": "1"}) for i in range(300)),
        name="big",
        namespace="ml",
    )
    bodies = [
        json.dumps(gpu_review(uid="00000000-0000-0000-0000-000000000001")).encode(),
        json.dumps(make_review(big, namespace="ml")).encode(),
        json.dumps(gpu_review(uid="00000000-0000-0000-0000-000000000003")).encode(),
    ]
    big_uid = json.loads(bodies[1])["request"]["uid"]
    assert len(bodies[1]) > 32 * 1024
    with tls(server) as sock:
        sock.sendall(b"".join(post(body) for body in bodies))
        responses = Responses(sock)
        uids = []
        for _ in bodies:
            status, _, body = responses.next()
            assert status == 200
            uids.append(json.loads(body)["response"]["uid"])
    assert uids == [
        "00000000-0000-0000-0000-000000000001",
        big_uid,
        "00000000-0000-0000-0000-000000000003",
    ]


def test_wrong_methods_and_paths_get_json_errors(start_server: StartServer) -> None:
    server = start_server(workers=1)
    requests = [
        (b"GET /mutate HTTP/1.1\r\nHost: x\r\n\r\n", 405, "use POST for /mutate"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "use GET"),
        (b"GET /nothing?a=b HTTP/1.1\r\nHost: x\r\n\r\n", 404, "serves POST /mutate"),
        (b"GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, ""),
    ]
    with tls(server) as sock:
        sock.sendall(b"".join(request for request, _, _ in requests))
        responses = Responses(sock)
        for _, status, words in requests:
            got, headers, body = responses.next()
            assert got == status
            assert headers["content-type"] == "application/json"
            if words:
                assert words in json.loads(body)["error"]


def test_an_oversized_head_is_431_and_the_connection_closes(start_server: StartServer) -> None:
    server = start_server(workers=1)
    with tls(server) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n")
        responses = Responses(sock)
        status, headers, body = responses.next()
        assert status == 431 and headers["connection"] == "close"
        assert "16384 bytes" in json.loads(body)["error"]
        assert responses.closed()


def test_garbage_is_400_and_the_connection_closes(start_server: StartServer) -> None:
    server = start_server(workers=1)
    with tls(server) as sock:
        sock.sendall(b"\x00\x01 not HTTP at all\r\n\r\n")
        responses = Responses(sock)
        status, _, body = responses.next()
        assert status == 400 and json.loads(body)["error"] == "malformed HTTP request"
        assert responses.closed()


def test_http_1_0_gets_its_answer_then_the_connection_closes(start_server: StartServer) -> None:
    server = start_server(workers=1)
    body = json.dumps(gpu_review()).encode()
    with tls(server) as sock:
        sock.sendall(post(body).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        responses = Responses(sock)
        status, headers, _ = responses.next()
        assert status == 200 and headers["connection"] == "close"
        assert responses.closed()


def test_a_connection_closes_after_1000_requests(start_server: StartServer) -> None:
    server = start_server(workers=1)
    probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with tls(server) as sock:
        responses = Responses(sock)
        for batch in range(10):
            sock.sendall(probe * 100)
            for i in range(100):
                status, headers, _ = responses.next()
                assert status == 200
                last = batch * 100 + i + 1 == 1000
                assert (headers.get("connection") == "close") == last
        assert responses.closed()


def test_a_header_that_never_ends_is_cut_off(start_server: StartServer) -> None:
    """The parser keeps an unfinished header in memory: it must not grow past the head limit."""
    server = start_server(workers=1)
    with tls(server) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        responses = Responses(sock)
        try:
            for _ in range(64):  # 512 KiB in 8 KiB pieces, never a line end
                sock.sendall(b"a" * 8192)
        except (ssl.SSLError, ConnectionError):
            pass  # the server may close once it has answered
        status, headers, _ = responses.next()
        assert status == 431 and headers["connection"] == "close"


def test_a_review_pipelined_before_garbage_is_answered_first(start_server: StartServer) -> None:
    server = start_server(workers=1)
    body = json.dumps(gpu_review(uid="00000000-0000-0000-0000-000000000001")).encode()
    with tls(server) as sock:
        sock.sendall(post(body) + b"\x00\x01 not HTTP at all\r\n\r\n")
        responses = Responses(sock)
        status, _, answer = responses.next()
        assert status == 200
        assert json.loads(answer)["response"]["uid"].endswith("1")
        status, headers, answer = responses.next()
        assert status == 400 and headers["connection"] == "close"
        assert responses.closed()


def test_data_after_an_http_1_0_request_does_not_cost_it_its_answer(
    start_server: StartServer,
) -> None:
    server = start_server(workers=1)
    body = json.dumps(gpu_review()).encode()
    with tls(server) as sock:
        sock.sendall(post(body).replace(b"HTTP/1.1", b"HTTP/1.0", 1) + post(body))
        responses = Responses(sock)
        status, headers, answer = responses.next()
        assert status == 200 and headers["connection"] == "close"
        assert json.loads(answer)["response"]["allowed"] is True
        assert responses.closed()
