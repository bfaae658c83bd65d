"""create_app(settings): the webhook's endpoints as a Flask app, for WSGI servers and tests.

The production server (`dra-webhook serve`) calls the same `Endpoints` from its own event loop
(`webhook.serving.http11`) and never imports Flask; this app exists so that any WSGI server can host
the webhook and so that tests can drive it with Flask's test client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flask import Flask, Response, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from dracore.policy import Policy
from webhook.admission.gateway import ClusterGateway
from webhook.admission.handler import too_large_reply
from webhook.routes import ENDPOINTS, blueprint
from webhook.serving.endpoints import Endpoints
from webhook.serving.reload import Reloadable
from webhook.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    policy: Policy | Callable[[], Policy] | None = None,
    gateway: ClusterGateway | None = None,
    status: Sequence[Reloadable] = (),
) -> Flask:
    """The webhook app; the arguments are those of `Endpoints.build`."""
    settings = settings or Settings()
    app = Flask("webhook")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_review_bytes
    app.extensions[ENDPOINTS] = Endpoints.build(
        settings, policy=policy, gateway=gateway, status=status
    )
    app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        # 413 and 405 and the like: a one-line reason, never an HTML page.
        if exc.code == 413:
            refusal = too_large_reply(settings.max_review_bytes)
            return Response(refusal.body, status=413, content_type=refusal.content_type)
        return jsonify(error=exc.description or exc.name), exc.code or 500

    return app
