"""Fixtures for tests/tls; the helpers they use live in tls_support.py."""

from tests.tls.tls_support import ca, cert_dir, start_server

__all__ = ["ca", "cert_dir", "start_server"]
