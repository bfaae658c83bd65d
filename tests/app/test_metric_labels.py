"""Metric labels take values from fixed sets only: a caller's `operation` makes no new series."""

from __future__ import annotations

import re

from dracore.policy import Policy
from tests.builders import container, make_pod, make_review, webhook_client
from webhook import metrics
from webhook.settings import Settings


def operation_labels() -> set[str]:
    text = metrics.render()[0].decode()
    return set(re.findall(r'^dra_webhook_reviews_total\{operation="([^"]*)"', text, re.M))


def test_odd_operations_are_counted_under_fixed_label_values() -> None:
    client = webhook_client(Settings(), policy=Policy.default())
    review = make_review(make_pod(container("train", gpus=1)))
    for i in range(300):
        review["request"]["operation"] = f"CREATE-{i}\u202e{'x' * i}"
        assert client.post("/mutate", json=review).status == 200
    review["request"]["operation"] = "UPDATE"
    assert client.post("/mutate", json=review).status == 200
    labels = operation_labels()
    assert labels <= {"CREATE", "UPDATE", "DELETE", "CONNECT", "OTHER", "UNKNOWN"}
    assert {"OTHER", "UPDATE"} <= labels


def test_the_label_of_each_kind_of_operation() -> None:
    assert metrics.operation_label("CREATE") == "CREATE"
    assert metrics.operation_label("DELETE") == "DELETE"
    assert metrics.operation_label("create") == "OTHER"  # the API server sends upper case only
    assert metrics.operation_label("") == "UNKNOWN"
    assert metrics.operation_label(None) == "UNKNOWN"
    assert metrics.operation_label(["CREATE"]) == "OTHER"
