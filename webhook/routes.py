"""The Flask routes of `webhook.app`: each hands its request to `webhook.serving.endpoints.Endpoints`."""

from __future__ import annotations

from typing import Any, Final

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue

from webhook.admission.handler import Reply
from webhook.serving.endpoints import Endpoints

blueprint = Blueprint("webhook", __name__)

ENDPOINTS: Final = "kubectl-dra"


def endpoints_of(app: Any) -> Endpoints:
    endpoints: Endpoints = app.extensions[ENDPOINTS]
    return endpoints


def _response(reply: Reply) -> ResponseReturnValue:
    return Response(reply.body, status=reply.status, content_type=reply.content_type)


@blueprint.post("/mutate")
def mutate() -> ResponseReturnValue:
    body = request.get_data(cache=False)
    return _response(endpoints_of(current_app).mutate(body, request.content_type or ""))


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    return _response(endpoints_of(current_app).healthz())


@blueprint.get("/readyz")
def readyz() -> ResponseReturnValue:
    return _response(endpoints_of(current_app).readyz())


@blueprint.get("/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    return _response(endpoints_of(current_app).metrics())
