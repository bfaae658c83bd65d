"""The webhook's Endpoints with a policy provider and status reporters; /readyz, /metrics, JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from dracore.policy import Policy
from tests.builders import webhook_client
from tests.reviews import gpu_review
from webhook.serving.logs import JsonFormatter
from webhook.serving.reload import PolicyReloader

GOOD = "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n  defaults:\n    maxGPUsPerPod: {n}\n"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_policy_provider_is_called_per_review(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    client = webhook_client(policy=reloader, status=[reloader])
    assert client.post("/mutate", json=gpu_review(gpus=3)).json()["response"]["allowed"] is False
    path.write_text(GOOD.format(n=4))
    reloader.check()
    assert client.post("/mutate", json=gpu_review(gpus=3)).json()["response"]["allowed"] is True


def test_readyz_reports_a_rejected_policy_but_stays_200(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    client = webhook_client(policy=reloader, status=[reloader])
    assert client.get("/readyz").json()["status"] == "ok"
    path.write_text(GOOD.format(n=2) + "    bogus: 1\n")
    reloader.check()
    resp = client.get("/readyz")
    body = resp.json()
    assert resp.status == 200
    assert body["status"] == "degraded"
    assert "spec.defaults.bogus" in body["checks"]["policy"]["error"]
    assert body["checks"]["policy"]["digest"] == reloader().digest


def test_a_plain_policy_still_works() -> None:
    client = webhook_client(policy=Policy.default())
    assert client.post("/mutate", json=gpu_review()).json()["response"]["patchType"] == "JSONPatch"
    assert client.get("/readyz").json() == {"status": "ok", "checks": {}}


def test_metrics_count_each_outcome_in_process() -> None:
    client = webhook_client()
    before = {
        o: sample("dra_webhook_reviews_total", operation="CREATE", outcome=o)
        for o in ("patched", "unchanged", "denied")
    }
    invalid = sample("dra_webhook_reviews_total", operation="UNKNOWN", outcome="invalid")
    count = sample("dra_webhook_review_duration_seconds_count")
    client.post("/mutate", json=gpu_review(gpus=1))
    client.post("/mutate", json=gpu_review(gpus=0))
    client.post("/mutate", json=gpu_review(gpus=40))
    client.post("/mutate", data="nope", content_type="application/json")
    assert sample("dra_webhook_reviews_total", operation="CREATE", outcome="patched") == (
        before["patched"] + 1
    )
    assert sample("dra_webhook_reviews_total", operation="CREATE", outcome="unchanged") == (
        before["unchanged"] + 1
    )
    assert sample("dra_webhook_reviews_total", operation="CREATE", outcome="denied") == (
        before["denied"] + 1
    )
    assert sample("dra_webhook_reviews_total", operation="UNKNOWN", outcome="invalid") == (
        invalid + 1
    )
    assert sample("dra_webhook_review_duration_seconds_count") == count + 4
    text = client.get("/metrics").text()
    assert "dra_webhook_reviews_total" in text and "dra_webhook_policy_reloads_total" in text


def test_a_bug_in_admission_is_counted_as_error_and_logged_with_uid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Policy:
        raise RuntimeError("bug")

    client = webhook_client(policy=broken)
    before = sample("dra_webhook_reviews_total", operation="CREATE", outcome="error")
    body = gpu_review()
    with caplog.at_level(logging.ERROR, logger="webhook.admission.handler"):
        resp = client.post("/mutate", json=body).json()["response"]
    assert resp["allowed"] is False and resp["status"]["code"] == 500
    assert "RuntimeError" not in resp["status"]["message"]
    assert sample("dra_webhook_reviews_total", operation="CREATE", outcome="error") == before + 1
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.__dict__["uid"] == body["request"]["uid"]


def test_json_formatter_writes_one_object_with_the_extra_fields() -> None:
    record = logging.LogRecord(
        "webhook.admission.handler", logging.INFO, __file__, 1, "a\nb %s", ("c",), None
    )
    record.__dict__.update(uid="u1", namespace="ns", pod="p-", decision="patched", other="x")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "a\nb c"
    assert {k: entry[k] for k in ("uid", "namespace", "pod", "decision", "level")} == {
        "uid": "u1",
        "namespace": "ns",
        "pod": "p-",
        "decision": "patched",
        "level": "info",
    }
    assert "other" not in entry


def test_json_formatter_includes_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]
