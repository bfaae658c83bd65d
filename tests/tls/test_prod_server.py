"""The gunicorn server over real HTTPS: TLS versions, certificate rotation under load, policy
reload (good, bad, kubelet symlink swap), metrics across workers, JSON logs, SIGTERM drain."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from dracore.policy import Policy
from tests.builders import wait_for
from tests.reviews import BAD_POLICY, POLICY, gpu_review, rewritten_policy
from tests.tls.tls_support import REPO, Server, StartServer
from webhook.ops import certs


def served_serial(server: Server) -> int:
    """The serial number of the certificate a new TLS connection is served."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        server.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def consistently(predicate: Any, times: int = 6) -> bool:
    """True if `predicate` holds for `times` calls in a row (each call may hit either worker)."""
    return all(predicate() for _ in range(times))


def test_tls_1_2_and_1_3_are_served(start_server: StartServer) -> None:
    """(TLS 1.1 refusal is checked on the context in tests/unit: this machine's OpenSSL will not
    offer TLS 1.1 at all, so a client-side attempt here would prove nothing.)"""
    server = start_server(workers=1)
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        ctx = ssl.create_default_context(cadata=server.ca_pem)
        ctx.minimum_version = ctx.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == name


def test_client_trusting_another_ca_is_refused(start_server: StartServer) -> None:
    server = start_server(workers=1)
    stranger = certs.generate_ca("someone-else")
    ctx = ssl.create_default_context(cadata=stranger.cert_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def test_certificate_rotation_under_load_fails_no_request(
    start_server: StartServer, cert_dir: Path, ca: certs.KeyPair
) -> None:
    server = start_server()
    stop = threading.Event()
    ok = [0]
    failures: list[str] = []
    lock = threading.Lock()

    def client(keepalive: bool) -> None:
        conn = server.connect() if keepalive else None
        while not stop.is_set():
            try:
                status, body = server.post(gpu_review(), conn)
                good = status == 200 and body["response"]["allowed"] is True
                with lock:
                    if good:
                        ok[0] += 1
                    else:
                        failures.append(f"{status} {body}")
            except (OSError, ValueError) as exc:
                with lock:
                    failures.append(repr(exc))
                if keepalive:
                    conn = server.connect()

    threads = [threading.Thread(target=client, args=(k,)) for k in (True, True, False, False)]
    for t in threads:
        t.start()
    try:
        current = certs.load_key_pair(cert_dir / "tls.crt", cert_dir / "tls.key").cert
        serials = [current.serial_number]
        for days in (20, 40, 60):
            leaf = certs.renew_cert(ca, current, validity=dt.timedelta(days=days))
            certs.write_tls_dir(cert_dir, leaf=leaf, ca=ca)
            serial = leaf.cert.serial_number
            wait_for(
                lambda s=serial: consistently(lambda: served_serial(server) == s),  # type: ignore[misc]
                what="the new certificate on new connections",
            )
            serials.append(serial)
            current = leaf.cert
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert failures == []
    assert ok[0] >= 50, f"only {ok[0]} reviews went through"
    assert len(set(serials)) == 4
    samples = server.metrics()
    assert samples["dra_webhook_certificate_expiry_timestamp_seconds"] == pytest.approx(
        current.not_valid_after_utc.timestamp()
    )
    assert samples['dra_webhook_certificate_reloads_total{result="success"}'] >= 3


def test_half_written_certificate_pair_keeps_the_old_one(
    start_server: StartServer, cert_dir: Path, ca: certs.KeyPair
) -> None:
    server = start_server()
    old = served_serial(server)
    leaf = certs.issue_cert(ca, "wh", dns_names=["wh"], ip_addresses=["127.0.0.1"])
    certs.write_private(cert_dir / "tls.key", leaf.key_pem)  # the key first, no matching cert yet

    def degraded() -> bool:
        body = json.loads(server.get("/readyz")[1])
        return body["status"] == "degraded" and "does not load" in body["checks"][
            "certificate"
        ].get("error", "")

    wait_for(lambda: consistently(degraded), what="/readyz to report the broken pair")
    assert served_serial(server) == old
    assert server.post(gpu_review())[0] == 200
    key = 'dra_webhook_certificate_reloads_total{result="success"}'
    before = server.metrics().get(key, 0)
    certs.write_public(cert_dir / "tls.crt", leaf.cert_pem)
    # Each of the 2 workers polls on its own: wait until both have loaded the completed pair.
    wait_for(lambda: server.metrics().get(key, 0) >= before + 2, what="2 workers: the new pair")
    wait_for(
        lambda: consistently(lambda: served_serial(server) == leaf.cert.serial_number),
        what="the completed pair",
    )
    assert json.loads(server.get("/readyz")[1])["status"] == "ok"
    assert server.metrics()['dra_webhook_certificate_reloads_total{result="failure"}'] >= 1


class KubeletVolume:
    """A ConfigMap volume as the kubelet lays it out: policy.yaml -> ..data/ -> ..<generation>/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        (root / "policy.yaml").symlink_to("..data/policy.yaml")

    def publish(self, text: str) -> None:
        self.generation += 1
        folder = self.root / f"..2026_11_27_{self.generation}"
        folder.mkdir()
        (folder / "policy.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(folder.name)
        tmp.replace(self.root / "..data")  # the atomic swap

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"


def test_policy_reload_good_edit_bad_edit_and_recovery(
    start_server: StartServer, tmp_path: Path
) -> None:
    volume = KubeletVolume(tmp_path / "policy")
    volume.publish(POLICY.format(max=8))
    digest_8 = Policy.from_yaml(POLICY.format(max=8)).digest
    digest_4 = Policy.from_yaml(POLICY.format(max=4)).digest
    server = start_server("--policy", str(volume.path))

    def digest() -> str | None:
        status, body = server.post(gpu_review())
        assert status == 200
        return rewritten_policy(body)

    assert digest() == digest_8
    assert server.post(gpu_review(gpus=6))[1]["response"]["allowed"] is True

    def publish(text: str, *, result: str) -> None:
        """Publish, then wait until each of the 2 workers has seen the edit: they poll on their
        own, and a review answered by one that has not would carry the previous policy."""
        key = f'dra_webhook_policy_reloads_total{{result="{result}"}}'
        before = server.metrics().get(key, 0)
        volume.publish(text)
        wait_for(lambda: server.metrics().get(key, 0) >= before + 2, what=f"2 workers: {result}")

    publish(POLICY.format(max=4), result="success")  # a good edit
    wait_for(lambda: consistently(lambda: digest() == digest_4), what="the edited policy")
    denied = server.post(gpu_review(gpus=6))[1]["response"]
    assert denied["allowed"] is False and "maxGPUsPerPod is 4" in denied["status"]["message"]

    publish(BAD_POLICY, result="failure")  # a bad edit: rejected, the last good policy stays

    def rejected() -> bool:
        body = json.loads(server.get("/readyz")[1])
        return body["status"] == "degraded" and "spec.defaults.sharingMode" in body["checks"][
            "policy"
        ].get("error", "")

    wait_for(lambda: consistently(rejected), what="/readyz to report the rejected policy")
    assert server.get("/readyz")[0] == 200  # degraded, still serving with the last good policy
    assert consistently(lambda: digest() == digest_4)
    samples = server.metrics()
    assert samples["dra_webhook_policy_reload_failing"] == 1
    assert samples['dra_webhook_policy_reloads_total{result="failure"}'] >= 1
    errors = [e for e in server.logs() if e.get("event") == "policy-reject"]
    assert errors and errors[0]["level"] == "error"
    assert any("spec.defaults.sharingMode" in p for p in errors[0]["problems"])

    publish(POLICY.format(max=8), result="success")  # fixed
    wait_for(
        lambda: consistently(lambda: json.loads(server.get("/readyz")[1])["status"] == "ok"),
        what="/readyz ok again",
    )
    assert consistently(lambda: digest() == digest_8)
    assert server.metrics()["dra_webhook_policy_reload_failing"] == 0


def test_metrics_count_reviews_by_outcome_across_workers(
    start_server: StartServer, cert_dir: Path
) -> None:
    server = start_server()
    sent = {"patched": 3, "unchanged": 2, "denied": 1}
    for outcome, count in sent.items():
        gpus = {"patched": 1, "unchanged": 0, "denied": 17}[outcome]
        for _ in range(count):
            assert server.post(gpu_review(gpus=gpus))[0] == 200
    assert server.post(gpu_review(operation="UPDATE"))[0] == 200
    conn = server.connect()
    conn.request("POST", "/mutate", body=b"{", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 400
    conn.close()

    samples = server.metrics()
    for outcome, count in sent.items():
        assert samples[f'dra_webhook_reviews_total{{operation="CREATE",outcome="{outcome}"}}'] == (
            count
        )
    assert samples['dra_webhook_reviews_total{operation="UPDATE",outcome="unchanged"}'] == 1
    assert samples['dra_webhook_reviews_total{operation="UNKNOWN",outcome="invalid"}'] == 1
    assert samples['dra_webhook_reviews_total{operation="CREATE",outcome="error"}'] == 0
    assert samples["dra_webhook_review_duration_seconds_count"] == 8
    assert samples["dra_webhook_templates_created_total"] == 0  # --offline
    leaf = x509.load_pem_x509_certificate((cert_dir / "tls.crt").read_bytes())
    assert samples["dra_webhook_certificate_expiry_timestamp_seconds"] == pytest.approx(
        leaf.not_valid_after_utc.timestamp()
    )


def test_a_killed_worker_is_replaced_and_the_counts_survive(start_server: StartServer) -> None:
    """child_exit marks the dead worker: its live gauges go, its counters stay in the totals."""
    server = start_server()
    for _ in range(4):
        assert server.post(gpu_review())[0] == 200
    patched = 'dra_webhook_reviews_total{operation="CREATE",outcome="patched"}'
    assert server.metrics()[patched] == 4
    booted = [e["message"] for e in server.logs() if "Booting worker" in e["message"]]
    victim = int(booted[0].rsplit(" ", 1)[1])
    assert list(server.metrics_dir.glob(f"gauge_live*_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: sum("Booting worker" in e["message"] for e in server.logs()) == 3,
        what="a replacement worker",
    )
    wait_for(lambda: not list(server.metrics_dir.glob(f"gauge_live*_{victim}.db")), what="cleanup")
    assert server.metrics()[patched] == 4
    assert server.post(gpu_review())[0] == 200
    assert server.metrics()[patched] == 5


def test_a_replacement_worker_serves_the_current_certificate_at_once(
    start_server: StartServer, cert_dir: Path, ca: certs.KeyPair
) -> None:
    """Workers fork from the master, whose copy is as old as the server: a worker started after
    a rotation must read the files before serving, not one reload interval later."""
    server = start_server("--reload-interval", "120", workers=1)
    current = certs.load_key_pair(cert_dir / "tls.crt", cert_dir / "tls.key").cert
    leaf = certs.renew_cert(ca, current)
    certs.write_tls_dir(cert_dir, leaf=leaf, ca=ca)
    assert served_serial(server) == current.serial_number  # the next check is 2 minutes away
    booted = [e["message"] for e in server.logs() if "Booting worker" in e["message"]]
    os.kill(int(booted[0].rsplit(" ", 1)[1]), signal.SIGKILL)
    wait_for(
        lambda: sum("Booting worker" in e["message"] for e in server.logs()) == 2,
        what="a replacement worker",
    )

    def serial_or_none() -> int | None:
        try:
            return served_serial(server)
        except OSError:
            return None  # the replacement is not accepting yet

    assert wait_for(serial_or_none, what="a TLS answer") == leaf.cert.serial_number


def test_logs_are_json_lines_with_the_review_fields(start_server: StartServer) -> None:
    server = start_server(workers=1)
    review = gpu_review(namespace="team-a", uid="0f0f0f0f-1111-2222-3333-444444444444")
    assert server.post(review)[0] == 200
    raw = server.log.read_text().splitlines()
    assert raw and all(json.loads(line) for line in raw)  # every line is one JSON object
    entries = [e for e in server.logs() if e.get("uid") == review["request"]["uid"]]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["namespace"] == "team-a"
    assert entry["pod"] == "train-"
    assert entry["decision"] == "patched"
    assert entry["operation"] == "CREATE"
    assert entry["level"] == "info" and entry["durationMs"] > 0
    assert not [e for e in server.logs() if e["logger"] == "gunicorn.access"]  # one line per review


def test_sigterm_lets_an_in_flight_review_finish(start_server: StartServer) -> None:
    server = start_server("--graceful-timeout", "10", workers=1)
    body = json.dumps(gpu_review(uid="aaaaaaaa-0000-0000-0000-000000000001")).encode()
    head = (
        "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    tls = server.context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        tls.sendall(head + body[: len(body) // 2])  # the request is now in flight
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "Handling signal: term" in server.log.read_text(), what="SIGTERM handling")
        time.sleep(1.0)
        assert server.proc.poll() is None, "the server quit with a review in flight"
        tls.sendall(body[len(body) // 2 :])
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    finally:
        tls.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200")
    payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert payload["response"]["uid"] == "aaaaaaaa-0000-0000-0000-000000000001"
    assert payload["response"]["patchType"] == "JSONPatch"
    assert server.proc.wait(15) == 0


def run_serve(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`dra-webhook serve ARGS` expected to exit at start-up (bounded by a 30 s timeout)."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "m")
    return subprocess.run(
        [sys.executable, "-m", "webhook", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=env,
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("bad-policy", "spec.defaults.sharingMode: unknown field"),
        ("no-policy-file", "cannot read"),
        ("no-certs", "tls.crt not found; create it with `dra-webhook certs generate`"),
        ("garbage-cert", "cannot load the certificate"),
        ("non-utf8-policy", "not UTF-8 text (byte 0): save the policy as UTF-8"),
        ("bad-kubeconfig", "cannot load API credentials from"),
        ("no-client-ca", "client CA file"),
        ("client-name-without-ca", "--client-name needs --client-ca"),
        ("probe-port-is-port", "--probe-port 9443 is also --port; give it a port of its own"),
    ],
)
def test_start_up_errors_are_one_line_without_traceback(
    setup: str, message: str, cert_dir: Path, tmp_path: Path
) -> None:
    args = ["--cert-dir", str(cert_dir), "--offline", "--host", "127.0.0.1"]
    args += ["--port", "9443" if setup == "probe-port-is-port" else "0"]
    if setup == "bad-policy":
        (tmp_path / "p.yaml").write_text(BAD_POLICY)
        args += ["--policy", str(tmp_path / "p.yaml")]
    elif setup == "no-policy-file":
        args += ["--policy", str(tmp_path / "missing.yaml")]
    elif setup == "no-certs":
        args[1] = str(tmp_path / "empty")
    elif setup == "non-utf8-policy":
        (tmp_path / "p.yaml").write_bytes(b"\xffkind: GPUPolicy\n")
        args += ["--policy", str(tmp_path / "p.yaml")]
    elif setup == "bad-kubeconfig":
        (tmp_path / "kubeconfig").write_bytes(b"\xff\xfe: [")
        args.remove("--offline")
        args += ["--kubeconfig", str(tmp_path / "kubeconfig")]
    elif setup == "no-client-ca":
        args += ["--client-ca", str(tmp_path / "missing-ca.crt")]
    elif setup == "client-name-without-ca":
        args += ["--client-name", "kube-apiserver"]
    elif setup == "probe-port-is-port":
        args += ["--probe-port", "9443"]
    else:
        (cert_dir / "tls.crt").write_text("not a certificate\n")
    done = run_serve(args, tmp_path)
    usage = setup in ("client-name-without-ca", "probe-port-is-port")
    assert done.returncode == (2 if usage else 1)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0]  # one line says what is wrong


def test_debug_shows_the_traceback_of_a_start_up_error(cert_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BAD_POLICY)
    argv = ["--cert-dir", str(cert_dir), "--offline", "--port", "0", "--host", "127.0.0.1"]
    argv += ["--policy", str(tmp_path / "p.yaml"), "--debug"]
    done = run_serve(argv, tmp_path)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "spec.defaults.sharingMode" in done.stderr
