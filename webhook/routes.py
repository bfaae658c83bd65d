"""HTTP routes: decode -> Admission.review -> encode. Nothing else lives here."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from webhook import review
from webhook.admission import Admission
from webhook.errors import BadReviewError

log = logging.getLogger("webhook.routes")
blueprint = Blueprint("webhook", __name__)


def _admission() -> Admission:
    admission: Admission = current_app.extensions["kubectl-dra"]
    return admission


@blueprint.post("/mutate")
def mutate() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if body is None:
        if not request.is_json:
            return jsonify(error="expected Content-Type: application/json"), 400
        return jsonify(error="body is not valid JSON"), 400
    try:
        parsed = review.parse_request(body)
    except BadReviewError as exc:
        return jsonify(error=str(exc)), exc.status
    try:
        outcome = _admission().review(parsed)
    except Exception:
        log.exception("review %s failed", parsed.uid)
        return jsonify(review.build_errored(parsed.uid))
    log.info(
        "review uid=%s namespace=%s pod=%s decision=%s",
        parsed.uid,
        parsed.namespace,
        parsed.object.get("metadata", {}).get("name")
        or parsed.object.get("metadata", {}).get("generateName", ""),
        outcome.decision,
    )
    return jsonify(outcome.response)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    return jsonify(status="ok")
