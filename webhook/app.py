"""create_app(settings): the Flask application. Registers routes and error handlers; no logic."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from webhook.admission import Admission
from webhook.gateway import ClusterGateway
from webhook.policy import Policy
from webhook.routes import blueprint
from webhook.settings import Settings

log = logging.getLogger("webhook")


def create_app(
    settings: Settings | None = None,
    *,
    policy: Policy | None = None,
    gateway: ClusterGateway | None = None,
) -> Flask:
    """The webhook app. `policy` defaults to settings.policy_file, else the built-in policy."""
    settings = settings or Settings()
    if policy is None:
        policy = (
            Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
        )
    active = policy
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_review_bytes
    app.extensions["kubectl-dra"] = Admission(policy=lambda: active, gateway=gateway)
    app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        # 413 and 405 and the like: a one-line reason, never an HTML page.
        if exc.code == 413:
            return jsonify(
                error=f"review too large: the limit is {settings.max_review_bytes} bytes"
            ), 413
        return jsonify(error=exc.description or exc.name), exc.code or 500

    return app
