"""create_app(settings): the Flask application. Registers routes and error handlers; no logic."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from webhook.admission import Admission
from webhook.core.policy import Policy
from webhook.gateway import ClusterGateway
from webhook.reload import Reloadable
from webhook.routes import ADMISSION, STATUS, blueprint
from webhook.settings import Settings

log = logging.getLogger("webhook")


def create_app(
    settings: Settings | None = None,
    *,
    policy: Policy | Callable[[], Policy] | None = None,
    gateway: ClusterGateway | None = None,
    status: Sequence[Reloadable] = (),
) -> Flask:
    """The webhook app.

    `policy` is a Policy, or a provider called once per review (e.g. a PolicyReloader, so a
    reloaded policy takes effect on the next review); default: settings.policy_file, else the
    built-in policy. `status` items report their state in /readyz.
    """
    settings = settings or Settings()
    if policy is None:
        policy = (
            Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
        )
    if isinstance(policy, Policy):
        active = policy
        provider: Callable[[], Policy] = lambda: active  # noqa: E731
    else:
        provider = policy
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_review_bytes
    app.extensions[ADMISSION] = Admission(policy=provider, gateway=gateway)
    app.extensions[STATUS] = tuple(status)
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
