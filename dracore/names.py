"""Kubernetes name rules (DNS labels and subdomains) and a way to derive valid names."""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# An extended resource name: a DNS-subdomain prefix and a name, e.g. nvidia.com/mig-1g.10gb.
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def is_dns_label(value: object) -> bool:
    return isinstance(value, str) and len(value) <= DNS_LABEL_MAX and bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= DNS_SUBDOMAIN_MAX
        and bool(_DNS_SUBDOMAIN.match(value))
    )


def is_extended_resource_name(value: object) -> bool:
    if not isinstance(value, str) or value.count("/") != 1:
        return False
    prefix, name = value.split("/")
    return is_dns_subdomain(prefix) and len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def to_dns_label(text: str, *, fallback: str = "x") -> str:
    """Lower-case, map every other character to '-', and cut to 63 with a hash suffix if needed."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or fallback
    if len(label) > DNS_LABEL_MAX:
        label = f"{label[: DNS_LABEL_MAX - 11].rstrip('-')}-{short_hash(text)}"
    return label


def unique_label(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first DNS label not in `taken`."""
    if base not in taken:
        return base
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = f"{base[: DNS_LABEL_MAX - len(suffix)].rstrip('-')}{suffix}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free name derived from {base!r}")
