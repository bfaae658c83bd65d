"""X.509 material for the webhook and the local control plane, built with `cryptography`.

Keys are ECDSA P-256 (small, fast to generate, accepted by Go's TLS stack and by the API
server). Validity uses timezone-aware datetimes. Private keys are written 0600 and never
printed; file names follow a `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = dt.timedelta(days=365)
# Backdating absorbs small clock skew between the issuer and the API server.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, in memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def generate_ca(
    common_name: str = "kubectl-dra-ca", *, validity: dt.timedelta = DEFAULT_VALIDITY
) -> KeyPair:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may dial a Service by: svc, svc.ns, svc.ns.svc, and the FQDN."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def issue_cert(
    ca: KeyPair,
    common_name: str,
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    organizations: Iterable[str] = (),
    server: bool = True,
    client: bool = False,
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> KeyPair:
    """A leaf certificate signed by `ca`, for TLS serving and/or client authentication.

    For client certificates the API server maps CN to the user and O to groups.
    """
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a certificate needs server=True, client=True or both")
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + validity, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)  # atomic, so a watcher never reads half a key


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_tls_dir(out_dir: Path, *, leaf: KeyPair, ca: KeyPair) -> None:
    """Write tls.crt, tls.key and ca.crt, as in a `kubernetes.io/tls` Secret."""
    write_public(out_dir / "ca.crt", ca.cert_pem)
    write_private(out_dir / "tls.key", leaf.key_pem)
    write_public(out_dir / "tls.crt", leaf.cert_pem)


def load_key_pair(cert_path: Path, key_path: Path) -> KeyPair:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: expected an ECDSA private key")
    return KeyPair(cert, key)


def write_ca_dir(out_dir: Path, ca: KeyPair) -> None:
    """Keep the CA next to the serving pair (ca.key 0600) so `certs rotate` can re-issue with it."""
    write_public(out_dir / "ca.crt", ca.cert_pem)
    write_private(out_dir / "ca.key", ca.key_pem)


def subject_alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses (as text) a certificate is valid for."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = sans.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return dns, ips


def expires_within(
    cert: x509.Certificate, window: dt.timedelta, *, now: dt.datetime | None = None
) -> bool:
    """True if `cert` is no longer valid `window` from now (renewal is due)."""
    now = now or dt.datetime.now(dt.UTC)
    return cert.not_valid_after_utc <= now + window


def renew_cert(
    ca: KeyPair, current: x509.Certificate, *, validity: dt.timedelta = DEFAULT_VALIDITY
) -> KeyPair:
    """A fresh key and certificate with the same subject CN and SANs as `current`, signed by `ca`."""
    dns, ips = subject_alt_names(current)
    cn = current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cn[0].value) if cn else (dns[0] if dns else "kubectl-dra-webhook")
    return issue_cert(ca, common_name, dns_names=dns, ip_addresses=ips, validity=validity)


def ca_bundle(ca_pem: bytes) -> str:
    """The `caBundle` field of a webhook clientConfig: base64 of the CA PEM."""
    return base64.b64encode(ca_pem).decode()
