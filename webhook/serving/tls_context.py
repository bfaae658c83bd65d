"""Server TLS contexts: TLS 1.2+, HTTP/1.1 by ALPN, optional client-certificate auth.

With a client CA the handshake requires a certificate that CA signed; with allowed names too, a
client whose certificate's subject common name (or DNS SAN) is not listed is cut off right after
the handshake, before a byte of HTTP is read. Only the API server holds such a certificate
(AdmissionConfiguration `kubeConfigFile`), so nothing else can make the webhook act.

The event loop is handed one `dispatching` context for its whole life; its SNI hook (which
OpenSSL calls on every ClientHello, with or without a server name) switches each new connection
to the context in force, so a rotated serving certificate applies from the next handshake on.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any


class ClientAuth:
    """Who may call: the CA that signs client certificates, and optionally the allowed names."""

    def __init__(self, ca_file: Path, names: Collection[str] = ()) -> None:
        self.ca_file = ca_file
        self.names = frozenset(names)

    def allows(self, peer: dict[str, Any] | None) -> bool:
        if not peer:
            return False
        if not self.names:
            return True
        common = {v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"}
        dns = {v for k, v in peer.get("subjectAltName", ()) if k == "DNS"}
        return bool((common | dns) & self.names)


def server_context(cert: Path, key: Path, client: ClientAuth | None = None) -> ssl.SSLContext:
    """A server SSLContext that speaks TLS 1.2 and 1.3 only, and HTTP/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    if client is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client.ca_file)
        if client.names:
            context.sslobject_class = _checked_object_class(client)
    return context


def _checked_object_class(client: ClientAuth) -> type[ssl.SSLObject]:
    class CheckedSSLObject(ssl.SSLObject):
        """Ends the handshake with an error when the verified client is not an allowed name."""

        def do_handshake(self) -> None:
            super().do_handshake()
            if not client.allows(self.getpeercert()):
                raise ssl.SSLError("client certificate names no allowed client")

    return CheckedSSLObject


def dispatching(current: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """A context whose connections each switch to `current()` during their ClientHello."""
    first = current()
    outer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    outer.minimum_version = ssl.TLSVersion.TLSv1_2
    outer.set_alpn_protocols(["http/1.1"])
    outer.verify_mode = first.verify_mode
    outer.sslobject_class = first.sslobject_class

    def switch(connection: Any, _server_name: str | None, _context: ssl.SSLContext) -> None:
        connection.context = current()

    outer.sni_callback = switch
    return outer
