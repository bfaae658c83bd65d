"""A one-GPU-pod AdmissionReview and the policy digest a rewrite records (tests/app, tests/tls)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.builders import container, make_pod, make_review


def gpu_review(
    *, gpus: int = 1, namespace: str = "ml", uid: str | None = None, operation: str = "CREATE"
) -> dict[str, Any]:
    """A review of a generateName pod whose one container asks for `gpus` nvidia.com/gpu."""
    limits = {"cpu": "1"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    pod = make_pod(container("train", limits=limits), name=None, namespace=namespace)
    review = make_review(pod, operation=operation, namespace=namespace)
    if uid:
        review["request"]["uid"] = uid
    return review


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
