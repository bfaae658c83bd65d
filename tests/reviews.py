"""AdmissionReview builders shared by tests/app and tests/tls (on sys.path via pytest's pythonpath)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any


def make_review(
    *, gpus: int = 1, namespace: str = "ml", uid: str | None = None, operation: str = "CREATE"
) -> dict[str, Any]:
    """An AdmissionReview for a pod with one container asking for `gpus` nvidia.com/gpu."""
    limits = {"cpu": "1"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "train-", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "train",
                    "image": "registry.example/train:1",
                    "resources": {"limits": limits},
                }
            ]
        },
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "test"},
            "object": pod,
            "dryRun": False,
        },
    }


def rewritten_policy(response: dict[str, Any]) -> str | None:
    """The policy digest recorded in the patched pod's kubectl-dra.io/rewritten annotation."""
    patch = response["response"].get("patch")
    if not patch:
        return None
    for op in json.loads(base64.b64decode(patch)):
        value = op.get("value")
        if op["path"] == "/metadata/annotations" and isinstance(value, dict):
            note = value.get("kubectl-dra.io/rewritten")
            return str(json.loads(note)["policy"]) if note else None
        if op["path"] == "/metadata/annotations/kubectl-dra.io~1rewritten":
            return str(json.loads(value)["policy"])
    return None
