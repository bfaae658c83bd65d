"""certs.py and tls_objects.py: certificate contents, rotation helpers, Secret and caBundle."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.ops import certs
from webhook.ops.certs_cli import parse_duration
from webhook.ops.tls_objects import ca_bundle_patch, inject_ca_bundle, tls_secret


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.generate_ca()


@pytest.fixture(scope="module")
def leaf(ca: certs.KeyPair) -> certs.KeyPair:
    return certs.issue_cert(
        ca,
        "wh.ns.svc",
        dns_names=certs.service_dns_names("wh", "ns"),
        ip_addresses=["127.0.0.1", "::1"],
    )


def test_serving_cert_sans_are_the_service_names_and_ips(leaf: certs.KeyPair) -> None:
    dns, ips = certs.subject_alt_names(leaf.cert)
    assert dns == ["wh", "wh.ns", "wh.ns.svc", "wh.ns.svc.cluster.local"]
    assert ips == ["127.0.0.1", "::1"]


def test_serving_cert_key_usage_is_digital_signature_and_server_auth(
    leaf: certs.KeyPair,
) -> None:
    usage = leaf.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    basic = leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False


def test_ca_may_sign_leaves_only(ca: certs.KeyPair) -> None:
    basic = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is True and basic.path_length == 0
    assert ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_validity_is_timezone_aware_and_capped_by_the_ca(ca: certs.KeyPair) -> None:
    long = certs.issue_cert(ca, "x", dns_names=["x"], validity=dt.timedelta(days=5000))
    assert long.cert.not_valid_after_utc.tzinfo is not None
    assert long.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_chain_verifies_with_ssl_when_trusting_only_the_ca(
    ca: certs.KeyPair, leaf: certs.KeyPair, tmp_path: Path
) -> None:
    """An in-memory TLS handshake: the client trusts only ca.crt and checks the hostname."""
    certs.write_tls_dir(tmp_path, leaf=leaf, ca=ca)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    for hostname, ok in [("wh.ns.svc", True), ("wh.other.svc", False)]:
        client_ctx = ssl.create_default_context(cadata=(tmp_path / "ca.crt").read_text())
        assert _handshake(server_ctx, client_ctx, hostname) is ok


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> bool:
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError:
                return False
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return True
    return False


def test_private_keys_are_written_0600(
    ca: certs.KeyPair, leaf: certs.KeyPair, tmp_path: Path
) -> None:
    certs.write_tls_dir(tmp_path, leaf=leaf, ca=ca)
    certs.write_ca_dir(tmp_path, ca)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes["tls.key"] == 0o600 and modes["ca.key"] == 0o600
    assert not any(name.endswith(".tmp") for name in modes)


def test_renewed_cert_keeps_sans_and_cn_with_a_new_key(
    ca: certs.KeyPair, leaf: certs.KeyPair
) -> None:
    renewed = certs.renew_cert(ca, leaf.cert, validity=dt.timedelta(days=10))
    assert certs.subject_alt_names(renewed.cert) == certs.subject_alt_names(leaf.cert)
    assert renewed.cert.subject == leaf.cert.subject
    assert renewed.cert.serial_number != leaf.cert.serial_number
    assert renewed.key_pem != leaf.key_pem
    renewed.cert.verify_directly_issued_by(ca.cert)


@pytest.mark.parametrize(
    ("days_left", "window", "due"),
    [(40, 30, False), (20, 30, True), (30, 30, True), (1, 0, False)],
)
def test_expires_within(ca: certs.KeyPair, days_left: int, window: int, due: bool) -> None:
    cert = certs.issue_cert(ca, "x", dns_names=["x"], validity=dt.timedelta(days=days_left)).cert
    now = cert.not_valid_after_utc - dt.timedelta(days=days_left)
    assert certs.expires_within(cert, dt.timedelta(days=window), now=now) is due


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("12h", dt.timedelta(hours=12)),
        ("45m", dt.timedelta(minutes=45)),
        (" 90s", dt.timedelta(seconds=90)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "3w", "-1d", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_tls_secret_holds_the_three_files(ca: certs.KeyPair, leaf: certs.KeyPair) -> None:
    secret = tls_secret(
        "s", namespace="ns", cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, ca_pem=ca.cert_pem
    )
    assert secret["type"] == "kubernetes.io/tls"
    decoded = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert decoded == {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem}


def _config() -> dict[str, object]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "kubectl-dra"},
        "webhooks": [
            {"name": "a.kubectl-dra.io", "clientConfig": {"service": {"name": "wh"}}},
            {"name": "b.kubectl-dra.io"},
        ],
    }


def test_inject_ca_bundle_sets_every_webhook_and_leaves_the_input(ca: certs.KeyPair) -> None:
    original = _config()
    bundle = certs.ca_bundle(ca.cert_pem)
    patched, changed = inject_ca_bundle(original, bundle)
    assert changed == ["a.kubectl-dra.io", "b.kubectl-dra.io"]
    assert [h["clientConfig"]["caBundle"] for h in patched["webhooks"]] == [bundle, bundle]
    assert patched["webhooks"][0]["clientConfig"]["service"] == {"name": "wh"}
    assert "caBundle" not in original["webhooks"][0]["clientConfig"]  # type: ignore[index]
    assert base64.b64decode(bundle) == ca.cert_pem


def test_inject_ca_bundle_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="MutatingWebhookConfiguration"):
        inject_ca_bundle({"kind": "Deployment"}, "x")


def test_ca_bundle_patch_applies_like_inject() -> None:
    import jsonpatch

    config = _config()
    ops = ca_bundle_patch(config, "QUJD")
    assert jsonpatch.apply_patch(config, ops) == inject_ca_bundle(config, "QUJD")[0]
    moved = {**config, "webhooks": list(reversed(config["webhooks"]))}  # type: ignore[call-overload]
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)


def test_ip_sans_are_real_ip_addresses(leaf: certs.KeyPair) -> None:
    sans = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
