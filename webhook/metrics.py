"""Prometheus metrics, multiprocess-safe under gunicorn.

`dra-webhook serve` points PROMETHEUS_MULTIPROC_DIR at an empty folder before this module is
imported (prometheus_client decides its storage at import time). Each worker then writes its
values to mmap files there; `/metrics`, served by whichever worker, merges them, and gunicorn's
child_exit hook calls `mark_process_dead` so gauges of dead workers vanish. Without the
variable (tests that call the endpoints in-process) the default in-process registry is used.

Counters are per worker process and summed: a policy edit seen by 2 workers counts 2 reloads.
Gauges say the state: `..._policy_reload_failing` is the max over live workers, the
certificate expiry is the value a live worker set most recently (the latest reload).
"""

from __future__ import annotations

import os
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

OUTCOMES: Final = ("patched", "unchanged", "denied", "error", "invalid")
# Label values come only from these sets: whatever a caller writes as `operation`, it cannot
# create a new series (each series is a file per worker in multiprocess mode).
OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
OTHER_OPERATION: Final = "OTHER"
NO_OPERATION: Final = "UNKNOWN"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

if os.environ.get(MULTIPROC_ENV):
    # In multiprocess mode prometheus_client asks the OS for the pid on every update, to notice
    # a fork: a system call each time, several per review. The pid changes only at a fork, so
    # it is remembered, and refreshed in the child.
    _pid = [os.getpid()]
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _pid[0])  # type: ignore[no-untyped-call]

REVIEWS = Counter(
    "dra_webhook_reviews",
    "AdmissionReviews answered, by operation and outcome (invalid: undecodable review, HTTP 400).",
    ["operation", "outcome"],
)
REVIEW_SECONDS = Histogram(
    "dra_webhook_review_duration_seconds",
    "Time to decide one AdmissionReview, from parsed body to response dict.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TEMPLATES_CREATED = Counter(
    "dra_webhook_templates_created",
    "ResourceClaimTemplates and shared ResourceClaims the webhook created.",
)
# Who makes the claim of a rewritten pod: the webhook's template (or named claim), or the
# scheduler after the rename to a DeviceClass's implicit extended resource name.
PATHS: Final = ("templates", "scheduler")
REVIEW_PATHS = Counter(
    "dra_webhook_review_paths",
    "Pods rewritten at CREATE, by the path that serves their GPUs (templates or scheduler).",
    ["path"],
)
OFFER_READS = Counter(
    "dra_webhook_offer_reads",
    "Reads of the server version and DeviceClasses (what the cluster offers the scheduler's "
    "path), by result (success; failure: the last good read stays in use).",
    ["result"],
)
POLICY_RELOADS = Counter(
    "dra_webhook_policy_reloads",
    "Policy file changes seen, by result (success: now in force; failure: rejected).",
    ["result"],
)
POLICY_RELOAD_FAILING = Gauge(
    "dra_webhook_policy_reload_failing",
    "1 while the policy file on disk is invalid and the last good policy stays in force.",
    multiprocess_mode="livemax",
)
CERT_RELOADS = Counter(
    "dra_webhook_certificate_reloads",
    "Serving certificate changes seen, by result.",
    ["result"],
)
CERT_EXPIRY = Gauge(
    "dra_webhook_certificate_expiry_timestamp_seconds",
    "notAfter of the serving certificate in use (unix seconds).",
    multiprocess_mode="livemostrecent",
)

# The API calls of the serving path, and what came of each exchange: its HTTP status, or why
# there was none.
API_CALLS: Final = frozenset(
    {"get_namespace", "get_resourceclaimtemplate", "create_resourceclaimtemplate",
     "get_resourceclaim", "create_resourceclaim", "get_version", "list_deviceclasses"}
)  # fmt: skip
API_RESULTS: Final = frozenset(
    {"200", "201", "400", "401", "403", "404", "409", "422", "429", "500", "503",
     "timeout", "unreachable", "too-large"}
)  # fmt: skip
API_REQUESTS = Counter(
    "dra_webhook_api_requests",
    "Exchanges with the API server, by call and result (an HTTP status; timeout, unreachable, "
    "too-large; other-status for statuses not listed).",
    ["call", "result"],
)
API_SECONDS = Histogram(
    "dra_webhook_api_request_duration_seconds",
    "Time of one exchange with the API server, connecting included, by call.",
    ["call"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

CONNECTION_SHED_REASONS: Final = ("idle-closed", "refused")
CONNECTIONS_SHED = Counter(
    "dra_webhook_connections_shed",
    "Connections closed at a worker's connection cap: the longest idle one to make room "
    "(idle-closed), or the new one when none was idle (refused).",
    ["reason"],
)

for _outcome in OUTCOMES:
    REVIEWS.labels(operation="CREATE", outcome=_outcome)
for _reason in CONNECTION_SHED_REASONS:
    CONNECTIONS_SHED.labels(reason=_reason)
for _path in PATHS:
    REVIEW_PATHS.labels(path=_path)
for _result in ("success", "failure"):
    OFFER_READS.labels(result=_result)
    POLICY_RELOADS.labels(result=_result)
    CERT_RELOADS.labels(result=_result)


def operation_label(operation: object) -> str:
    """The `operation` label for a review's operation: one of a fixed set of values."""
    if not operation:
        return NO_OPERATION
    return operation if isinstance(operation, str) and operation in OPERATIONS else OTHER_OPERATION


# The labelled counters by (operation, outcome): at most 6 x 5, looked up once each.
_REVIEW_COUNTERS: dict[tuple[str, str], Any] = {}


def observe_review(operation: str, outcome: str, seconds: float, templates_created: int) -> None:
    if outcome not in OUTCOMES:
        outcome = "error"
    key = (operation_label(operation), outcome)
    counter = _REVIEW_COUNTERS.get(key)
    if counter is None:
        counter = _REVIEW_COUNTERS[key] = REVIEWS.labels(operation=key[0], outcome=key[1])
    counter.inc()
    REVIEW_SECONDS.observe(seconds)
    if templates_created:
        TEMPLATES_CREATED.inc(templates_created)


def observe_path(path: str) -> None:
    if path in PATHS:
        REVIEW_PATHS.labels(path=path).inc()


def observe_offer_read(ok: bool) -> None:
    OFFER_READS.labels(result="success" if ok else "failure").inc()


def observe_api_call(call: str, result: str, seconds: float) -> None:
    call = call if call in API_CALLS else "other"
    API_REQUESTS.labels(call=call, result=result if result in API_RESULTS else "other-status").inc()
    API_SECONDS.labels(call=call).observe(seconds)


def observe_connection_shed(reason: str) -> None:
    CONNECTIONS_SHED.labels(reason=reason if reason in CONNECTION_SHED_REASONS else "refused").inc()


def observe_policy_reload(ok: bool) -> None:
    POLICY_RELOADS.labels(result="success" if ok else "failure").inc()
    POLICY_RELOAD_FAILING.set(0 if ok else 1)


def observe_certificate(expiry_unix: float | None) -> None:
    """A certificate reload: its notAfter, or None when a changed pair failed to load."""
    CERT_RELOADS.labels(result="failure" if expiry_unix is None else "success").inc()
    if expiry_unix is not None:
        CERT_EXPIRY.set(expiry_unix)


def publish_state(*, policy_failing: bool, cert_expiry_unix: float | None) -> None:
    """Set the gauges of a fresh worker process (they are per process in multiprocess mode)."""
    POLICY_RELOAD_FAILING.set(1 if policy_failing else 0)
    if cert_expiry_unix is not None:
        CERT_EXPIRY.set(cert_expiry_unix)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type, merged over workers when multiprocess."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
