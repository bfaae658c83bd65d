"""AdmissionReview v1 in and out, as plain dicts typed by TypedDicts (pure; no I/O).

`parse_request` turns a decoded body into an AdmissionRequest or raises BadReviewError (the
review itself is broken: HTTP 400). The builders make the four answers, each an
`AdmissionReviewOut`: allowed, patched (the JSONPatch of dracore.patch from the old to the new
pod), denied (a policy decision, HTTP 200 with allowed: false, code 403) and errored (a bug on
our side, code 500, generic message).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NotRequired, TypedDict

from dracore import dra, jsonio
from dracore.errors import BadReviewError, shown
from dracore.patch import make_patch

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
# The API server shortens warnings over this; keep ours readable whole.
MAX_WARNING_LENGTH: Final = 256
# A pod nests about 10 levels (20 with managedFields); anything far deeper is not a pod, and
# refusing it up front keeps every later walk (copy, diff) cheap and recursion-safe.
MAX_DEPTH: Final = 100

# What the API server sends. `AdmissionRequest.operation` keeps the raw string: a review with
# another value is still answered (allowed, unchanged) and counted apart, not refused.
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
# The one-word result of a decision, for logs and metrics.
Decision = Literal["patched", "unchanged", "denied", "error"]


class GroupVersionKind(TypedDict, total=False):
    group: str
    version: str
    kind: str


class AdmissionRequestIn(TypedDict, total=False):
    """The fields of `request` we read, as the API server sends them; `parse_request` checks
    each before use (any string passes as `operation`)."""

    uid: str
    kind: GroupVersionKind
    operation: Operation
    namespace: str
    name: str
    object: dict[str, Any]
    oldObject: dict[str, Any]
    dryRun: bool


class AdmissionReviewIn(TypedDict, total=False):
    apiVersion: str
    kind: str
    request: AdmissionRequestIn


class ReviewStatus(TypedDict):
    code: int
    message: str
    reason: Literal["Forbidden", "InternalError"]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[ReviewStatus]


class AdmissionReviewOut(TypedDict):
    apiVersion: str
    kind: str
    response: AdmissionResponse


def decode_body(data: bytes) -> Any:
    """The JSON of a request body, or BadReviewError saying why it cannot be read."""
    try:
        body = jsonio.loads(data)
    except jsonio.DecodeError as exc:
        reason = jsonio.decode_problem(exc)
        if reason == "nested too deep":
            raise BadReviewError(f"body is nested more than {MAX_DEPTH} levels deep") from None
        if reason == "not UTF-8":
            raise BadReviewError("body is not UTF-8 JSON") from None
        raise BadReviewError(f"body is not valid JSON: {shown(reason, 120)}") from None
    problem = dra.nesting_problem(body, MAX_DEPTH)
    if problem:
        raise BadReviewError(f"body is {problem}")
    return body


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, Any]
    dry_run: bool
    old_object: Mapping[str, Any] | None = None


def parse_request(body: AdmissionReviewIn | Any) -> AdmissionRequest:
    """Check the shape of a decoded body (untrusted JSON) field by field."""
    if not isinstance(body, Mapping):
        raise BadReviewError("body is not a JSON object; expected an AdmissionReview")
    if body.get("kind") != KIND:
        raise BadReviewError(f"kind is {json.dumps(body.get('kind'))}; expected AdmissionReview")
    api_version = body.get("apiVersion")
    if api_version != API_VERSION:
        raise BadReviewError(
            f"apiVersion is {json.dumps(api_version)}; only {API_VERSION} is served"
        )
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise BadReviewError("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReviewError("request.uid is missing")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise BadReviewError("request.operation is missing")
    obj = request.get("object")
    if operation in ("CREATE", "UPDATE") and not isinstance(obj, Mapping):
        raise BadReviewError("request.object is missing or not an object")
    kind = request.get("kind") or {}
    kind_name = kind.get("kind", "") if isinstance(kind, Mapping) else ""
    old = request.get("oldObject")
    for field, value in (("object", obj), ("oldObject", old)):
        if not isinstance(value, Mapping):
            continue
        if kind_name in ("Pod", ""):
            problem = dra.pod_shape_problem(value)
        elif not isinstance(value.get("metadata", {}), Mapping):
            # The API server sends object metadata as an object, whatever the kind.
            problem = "metadata: expected an object"
        else:
            problem = None
        if problem:
            raise BadReviewError(f"request.{field}.{problem}")
    return AdmissionRequest(
        uid=uid,
        kind=kind_name if isinstance(kind_name, str) else "",
        operation=operation,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        object=obj if isinstance(obj, Mapping) else {},
        dry_run=bool(request.get("dryRun")),
        old_object=old if isinstance(old, Mapping) else None,
    )


def _review(response: AdmissionResponse) -> AdmissionReviewOut:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def _clip(warnings: Sequence[str]) -> list[str]:
    return [
        w if len(w) <= MAX_WARNING_LENGTH else w[: MAX_WARNING_LENGTH - 1] + "…" for w in warnings
    ]


def build_allowed(
    uid: str, *, warnings: Sequence[str] = (), audit: Mapping[str, str] | None = None
) -> AdmissionReviewOut:
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = _clip(warnings)
    if audit:
        response["auditAnnotations"] = dict(audit)
    return _review(response)


def build_patched(
    uid: str, *, old: Mapping[str, Any], new: Mapping[str, Any], warnings: Sequence[str] = ()
) -> AdmissionReviewOut:
    """Allowed, with the RFC 6902 patch from old to new (linear in the pod's size; see
    dracore.patch); no `patch` key if nothing changed."""
    review = build_allowed(uid, warnings=warnings)
    operations = make_patch(old, new)
    if operations:
        review["response"]["patchType"] = "JSONPatch"
        review["response"]["patch"] = base64.b64encode(jsonio.dumps(operations)).decode()
    return review


def build_denied(uid: str, message: str, *, code: int = 403) -> AdmissionReviewOut:
    return _review(
        {
            "uid": uid,
            "allowed": False,
            "status": {"code": code, "message": message, "reason": "Forbidden"},
        }
    )


def build_errored(uid: str) -> AdmissionReviewOut:
    message = "internal error in the kubectl-dra webhook; the details are in its log"
    return _review(
        {
            "uid": uid,
            "allowed": False,
            "status": {"code": 500, "message": message, "reason": "InternalError"},
        }
    )


def decode_patch(review: AdmissionReviewOut | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSONPatch operations of a response (for tests and `convert`)."""
    patch = (review.get("response") or {}).get("patch")
    operations: list[dict[str, Any]] = json.loads(base64.b64decode(patch)) if patch else []
    return operations
