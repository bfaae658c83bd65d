"""Hook Job of the kubectl-dra chart (certificates.mode=selfSigned).

Makes sure the webhook's serving certificate Secret exists, issuing it once with
`dra-webhook certs generate` (an existing Secret is kept, so upgrades do not change the CA), and
sets the Secret's ca.crt as the caBundle of every webhook of the MutatingWebhookConfiguration
(and of the policy check's ValidatingWebhookConfiguration, when KUBECTL_DRA_POLICY_CHECK_CONFIG
names it).
Settings come from the environment (the Job sets them); KUBECONFIG is used when set (tests),
else the Job's service account.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


def ensure_secret(core: client.CoreV1Api, namespace: str, name: str, service: str, days: str) -> bytes:
    """The CA certificate (PEM) of the Secret, creating the Secret first if it does not exist."""
    try:
        return base64.b64decode(core.read_namespaced_secret(name, namespace).data["ca.crt"])
    except ApiException as exc:
        if exc.status != 404:
            raise
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["dra-webhook", "certs", "generate", "--service", service, "--namespace", namespace,
             "--out", out, "--days", days],
            check=True,
        )  # fmt: skip
        printed = subprocess.run(
            ["dra-webhook", "certs", "secret", "--dir", out, "--name", name,
             "--namespace", namespace, "-o", "json"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        try:
            core.create_namespaced_secret(namespace, json.loads(printed))
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile (a concurrent upgrade): use that one
                raise
            return base64.b64decode(core.read_namespaced_secret(name, namespace).data["ca.crt"])
        return Path(out, "ca.crt").read_bytes()


def set_ca_bundle(
    api: client.AdmissionregistrationV1Api, name: str, ca_pem: bytes, kind: str = "mutating"
) -> int:
    """Set the caBundle on every webhook of the `kind` ("mutating" or "validating")
    configuration `name`; how many webhooks there are."""
    current = getattr(api, f"read_{kind}_webhook_configuration")(name)
    bundle = base64.b64encode(ca_pem).decode()
    ops = []
    for i, hook in enumerate(current.webhooks or []):
        # Guarded by the webhook's name: a concurrent edit that reorders them fails the patch.
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": hook.name})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle})
    if ops:
        getattr(api, f"patch_{kind}_webhook_configuration")(name, ops)
    return len(ops) // 2


def main() -> int:
    env = os.environ
    if env.get("KUBECONFIG"):
        config.load_kube_config()
    else:
        config.load_incluster_config()
    namespace = env["KUBECTL_DRA_NAMESPACE"]
    ca_pem = ensure_secret(
        client.CoreV1Api(), namespace, env["KUBECTL_DRA_SECRET"], env["KUBECTL_DRA_SERVICE"],
        env.get("KUBECTL_DRA_DAYS", "365"),
    )  # fmt: skip
    admission = client.AdmissionregistrationV1Api()
    hooks = set_ca_bundle(admission, env["KUBECTL_DRA_WEBHOOK_CONFIG"], ca_pem)
    if env.get("KUBECTL_DRA_POLICY_CHECK_CONFIG"):
        hooks += set_ca_bundle(admission, env["KUBECTL_DRA_POLICY_CHECK_CONFIG"], ca_pem, "validating")
    print(f"Secret {namespace}/{env['KUBECTL_DRA_SECRET']} in place; caBundle set on {hooks} webhook(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
