"""The real server over HTTPS, attacked at the connection level: stalled handshakes, headers and
bodies, bursts of new connections, oversized chunked bodies, ALPN, and client certificates.

The server runs with 1 worker and 1 review thread, so if a stalled connection held a thread (as
with one thread per connection), the probe review behind it could not be answered at all.
Every client socket has a timeout, so a failure shows up as an error, not a hung test.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.builders import wait_for
from tests.reviews import gpu_review
from tests.tls.tls_support import Server, StartServer
from webhook.ops import certs

HEAD = "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def raw_tls(server: Server, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return (context or server.context).wrap_socket(raw, server_hostname="127.0.0.1")


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket timeout)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    return data


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    except TimeoutError:
        return False


def test_connections_stalled_in_every_phase_do_not_stop_reviews(start_server: StartServer) -> None:
    server = start_server(workers=1, threads=1)
    held: list[socket.socket] = []
    try:
        for _ in range(20):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            raw.sendall(b"\x16\x03\x01")  # a ClientHello's first bytes, then nothing
            held.append(raw)
        for _ in range(20):
            tls = raw_tls(server)
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            held.append(tls)
        for _ in range(20):
            tls = raw_tls(server)
            tls.sendall((HEAD + "Content-Length: 5000\r\n\r\n{").encode())
            held.append(tls)
        for _ in range(5):  # 60 stalled connections, one thread: reviews still go through
            status, body = server.post(gpu_review())
            assert status == 200 and body["response"]["allowed"] is True
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("phase", ["handshake", "headers", "body"])
def test_each_phase_has_a_deadline(start_server: StartServer, phase: str) -> None:
    server = start_server(
        "--handshake-timeout", "1", "--keepalive", "1", "--body-timeout", "1", workers=1
    )
    if phase == "handshake":
        sock: socket.socket = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"\x16\x03\x01")
    else:
        sock = raw_tls(server)
        if phase == "headers":
            sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        else:
            sock.sendall((HEAD + "Content-Length: 5000\r\n\r\n{").encode())
    with sock:
        # The socket timeout (10 s) is far above the server's 1 s deadline: the server, not
        # the client, ends the connection; a request cut off halfway is told why.
        if phase != "handshake":
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"did not arrive in time" in answer
        else:
            assert closed_by_server(sock)


def test_a_burst_of_new_tls_connections_is_answered(start_server: StartServer) -> None:
    server = start_server()
    statuses: list[int] = []
    lock = threading.Lock()
    gate = threading.Barrier(32)

    def client() -> None:
        gate.wait()
        status, _ = server.post(gpu_review())
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 32


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_body_over_the_limit_gets_413(start_server: StartServer, framing: str) -> None:
    server = start_server(workers=1)
    limit = 7 * 1024 * 1024
    with raw_tls(server) as tls:
        if framing == "content-length":
            tls.sendall((HEAD + f"Content-Length: {limit + 1}\r\n\r\n").encode())
        else:
            tls.sendall((HEAD + "Transfer-Encoding: chunked\r\n\r\n").encode())
            chunk = b"x" * (1024 * 1024)
            try:
                for _ in range(8):  # 8 MiB in 1 MiB chunks, never a length up front
                    tls.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (ssl.SSLError, ConnectionError):
                pass  # the server may stop reading once it has answered
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body == {"error": f"review too large: the limit is {limit} bytes"}


def test_a_client_preferring_http2_is_served_http_1_1(start_server: StartServer) -> None:
    """The server offers only HTTP/1.1 by ALPN (cheaper per review than HTTP/2 framing in
    Python); a client that asks for h2 first, as the API server does, still gets its answer."""
    server = start_server(workers=1)
    context = ssl.create_default_context(cadata=server.ca_pem)
    context.set_alpn_protocols(["h2", "http/1.1"])
    payload = json.dumps(gpu_review(uid="22222222-0000-0000-0000-000000000002")).encode()
    with raw_tls(server, context) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        head = HEAD + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        tls.sendall(head.encode() + payload)
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    response = json.loads(answer.split(b"\r\n\r\n", 1)[1])["response"]
    assert response["uid"] == "22222222-0000-0000-0000-000000000002"
    assert response["patchType"] == "JSONPatch"


def _client_pair(tmp_path: Path, ca: certs.KeyPair, name: str) -> tuple[Path, Path]:
    leaf = certs.issue_cert(ca, name, server=False, client=True)
    out = tmp_path / f"client-{name}"
    certs.write_tls_dir(out, leaf=leaf, ca=ca)
    return out / "tls.crt", out / "tls.key"


@pytest.fixture
def client_ca(tmp_path: Path) -> certs.KeyPair:
    ca = certs.generate_ca("api-server-clients")
    certs.write_public(tmp_path / "client-ca.crt", ca.cert_pem)
    return ca


def _refused(server: Server, pair: tuple[Path, Path] | None) -> bool:
    """True if a review sent with `pair` (or no client certificate) gets no HTTP answer."""
    context = ssl.create_default_context(cadata=server.ca_pem)
    if pair is not None:
        context.load_cert_chain(*pair)
    try:
        with raw_tls(server, context) as tls:
            body = json.dumps(gpu_review()).encode()
            # Connection: close, so the answer is followed by the end of the stream, not by the
            # keep-alive timeout (as long as the socket's own timeout: a race).
            head = HEAD + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            tls.sendall(head.encode() + body)
            return not read_all(tls).startswith(b"HTTP/1.1")
    except (ssl.SSLError, ConnectionError):
        return True


def test_client_ca_accepts_its_clients_and_refuses_everyone_else(
    start_server: StartServer, client_ca: certs.KeyPair, tmp_path: Path
) -> None:
    api_server = _client_pair(tmp_path, client_ca, "kube-apiserver")
    server = start_server(
        "--client-ca", str(tmp_path / "client-ca.crt"), workers=1, client_pair=api_server
    )
    status, body = server.post(gpu_review())
    assert status == 200 and body["response"]["allowed"] is True
    assert _refused(server, None)  # no client certificate
    stranger_ca = certs.generate_ca("someone-else")
    assert _refused(server, _client_pair(tmp_path, stranger_ca, "kube-apiserver"))
    reviews = 'dra_webhook_reviews_total{operation="CREATE",outcome="patched"}'
    wait_for(lambda: server.metrics()[reviews] == 1, what="only the accepted review counted")


def test_client_name_limits_which_certificates_of_the_ca_are_accepted(
    start_server: StartServer, client_ca: certs.KeyPair, tmp_path: Path
) -> None:
    api_server = _client_pair(tmp_path, client_ca, "kube-apiserver")
    server = start_server(
        "--client-ca",
        str(tmp_path / "client-ca.crt"),
        "--client-name",
        "kube-apiserver",
        workers=1,
        client_pair=api_server,
    )
    assert server.post(gpu_review())[0] == 200
    assert _refused(server, _client_pair(tmp_path, client_ca, "some-controller"))
    assert not _refused(server, api_server)


def test_a_rotated_client_ca_is_trusted_and_a_removed_one_no_longer(
    start_server: StartServer, client_ca: certs.KeyPair, tmp_path: Path
) -> None:
    old_client = _client_pair(tmp_path, client_ca, "kube-apiserver")
    bundle = tmp_path / "client-ca.crt"
    server = start_server("--client-ca", str(bundle), workers=1, client_pair=old_client)
    rotated_ca = certs.generate_ca("api-server-clients-2")
    new_client = _client_pair(tmp_path / "rotated", rotated_ca, "kube-apiserver")
    assert _refused(server, new_client)

    bundle.write_bytes(client_ca.cert_pem + rotated_ca.cert_pem)  # the rotation's overlap
    wait_for(lambda: not _refused(server, new_client), what="the added client CA trusted")
    assert not _refused(server, old_client)

    bundle.write_bytes(rotated_ca.cert_pem)  # the old CA retired
    wait_for(lambda: _refused(server, old_client), what="the removed client CA distrusted")
    assert not _refused(server, new_client)


def test_at_the_connection_cap_the_worker_sheds_then_recovers(start_server: StartServer) -> None:
    """--max-connections 3: an idle connection makes room; with none idle a new one is closed;
    connections held in the head and body states end at their deadlines, and the worker serves
    again."""
    server = start_server(
        "--max-connections", "3", "--keepalive", "2", "--body-timeout", "2", workers=1
    )
    idle = raw_tls(server)
    head = raw_tls(server)
    head.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    body = raw_tls(server)
    body.sendall((HEAD + "Content-Length: 5000\r\n\r\n{").encode())
    newest = raw_tls(server)  # the fourth: the idle one is closed to make room
    assert closed_by_server(idle)
    newest.sendall(b"GET /heal")  # now nothing is idle
    refused = raw_tls(server)
    assert closed_by_server(refused)  # closed at once, nothing answered
    for held in (head, body, newest):
        assert read_all(held).startswith(b"HTTP/1.1 408")  # each at its own deadline
    status, answer = server.post(gpu_review())
    assert status == 200 and answer["response"]["allowed"] is True
    samples = server.metrics()
    assert samples['dra_webhook_connections_shed_total{reason="idle-closed"}'] == 1
    assert samples['dra_webhook_connections_shed_total{reason="refused"}'] == 1
    for sock in (idle, head, body, newest, refused):
        sock.close()
