"""Kubernetes objects that carry our TLS material, as plain dicts (pure; no API calls).

- `tls_secret`: a `kubernetes.io/tls` Secret with tls.crt, tls.key and ca.crt. It holds the
  private key, so callers print it only when asked and never log it.
- `inject_ca_bundle`: set `clientConfig.caBundle` on the webhooks of a
  MutatingWebhookConfiguration or ValidatingWebhookConfiguration (the API server trusts only
  that CA when it calls us).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Collection, Mapping
from typing import Any, Final

WEBHOOK_CONFIG_KIND: Final = "MutatingWebhookConfiguration"
# The policy check (/validate-policy) is registered by a configuration of this kind.
VALIDATING_CONFIG_KIND: Final = "ValidatingWebhookConfiguration"
WEBHOOK_CONFIG_KINDS: Final = (WEBHOOK_CONFIG_KIND, VALIDATING_CONFIG_KIND)


def tls_secret(
    name: str, *, namespace: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes
) -> dict[str, Any]:
    """A Secret in the shape the Deployment mounts (and cert-manager writes)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "kubectl-dra-webhook"},
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem), "ca.crt": b64(ca_pem)},
    }


def inject_ca_bundle(
    config: Mapping[str, Any], bundle: str, *, webhooks: Collection[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """A copy of `config` with `bundle` in each webhook's clientConfig, and the names changed.

    `webhooks` limits the change to those webhook names (default: all of them).
    """
    if config.get("kind") not in WEBHOOK_CONFIG_KINDS:
        wanted = " or ".join(WEBHOOK_CONFIG_KINDS)
        raise ValueError(f"expected a {wanted}, got kind {config.get('kind')!r}")
    patched = copy.deepcopy(dict(config))
    changed: list[str] = []
    for hook in patched.get("webhooks") or []:
        name = str(hook.get("name", ""))
        if webhooks and name not in webhooks:
            continue
        hook.setdefault("clientConfig", {})["caBundle"] = bundle
        changed.append(name)
    return patched, changed


def ca_bundle_patch(config: Mapping[str, Any], bundle: str) -> list[dict[str, Any]]:
    """JSON Patch ops that set caBundle on every webhook, guarded by a `test` on each name.

    The guard makes the patch fail (rather than hit the wrong entry) if someone reordered the
    webhooks between our read and our write.
    """
    ops: list[dict[str, Any]] = []
    for i, hook in enumerate(config.get("webhooks") or []):
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")})
        if "clientConfig" not in hook:
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig", "value": {}})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle})
    return ops
