"""HTTP routes: decode -> Admission.review -> encode, plus health, readiness and metrics.

Each review is logged once (uid, namespace, pod, operation, decision as JSON fields) and counted
in the metrics by operation and outcome, with its latency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from webhook import metrics
from webhook.admission import Admission
from webhook.core import review
from webhook.core.errors import BadReviewError

log = logging.getLogger("webhook.routes")
blueprint = Blueprint("webhook", __name__)

ADMISSION: Final = "kubectl-dra"
STATUS: Final = "kubectl-dra.status"


def _admission() -> Admission:
    admission: Admission = current_app.extensions[ADMISSION]
    return admission


def _invalid(reason: str, status: int, started: float) -> ResponseReturnValue:
    metrics.observe_review("", "invalid", time.perf_counter() - started, 0)
    log.warning("review rejected: %s", reason, extra={"decision": "invalid"})
    return jsonify(error=reason), status


@blueprint.post("/mutate")
def mutate() -> ResponseReturnValue:
    started = time.perf_counter()
    if not request.is_json:
        return _invalid("expected Content-Type: application/json", 400, started)
    try:
        parsed = review.parse_request(review.decode_body(request.get_data(cache=False)))
    except BadReviewError as exc:
        return _invalid(str(exc), exc.status, started)
    metadata = parsed.object.get("metadata") or {}
    fields: dict[str, Any] = {
        "uid": parsed.uid,
        "namespace": parsed.namespace,
        "pod": metadata.get("name") or metadata.get("generateName", ""),
        "operation": parsed.operation,
    }
    try:
        outcome = _admission().review(parsed)
    except Exception:
        elapsed = time.perf_counter() - started
        metrics.observe_review(parsed.operation, "error", elapsed, 0)
        log.exception("review %s failed", parsed.uid, extra={**fields, "decision": "error"})
        return jsonify(review.build_errored(parsed.uid))
    elapsed = time.perf_counter() - started
    metrics.observe_review(parsed.operation, outcome.decision, elapsed, outcome.templates_created)
    log.info(
        "review uid=%s namespace=%s pod=%s decision=%s",
        parsed.uid,
        fields["namespace"],
        fields["pod"],
        outcome.decision,
        extra={**fields, "decision": outcome.decision, "durationMs": round(elapsed * 1000, 3)},
    )
    return jsonify(outcome.response)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready while a policy and a certificate are in force, even a stale one.

    A rejected policy or certificate edit is reported (`status: degraded` and the error), but
    stays 200: every replica sees the same bad file, and failing readiness on all of them would
    take the webhook away and hand every GPU pod to the failurePolicy instead.
    """
    reporters: Sequence[Any] = current_app.extensions.get(STATUS, ())
    checks = {item.name: item.status() for item in reporters}
    degraded = any(not check.get("ok", True) for check in checks.values())
    return jsonify(status="degraded" if degraded else "ok", checks=checks)


@blueprint.get("/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    data, content_type = metrics.render()
    return Response(data, content_type=content_type)
