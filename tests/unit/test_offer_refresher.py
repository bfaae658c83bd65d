"""webhook.apiclient.offer: the snapshot of what the cluster offers, read off the request path."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from dracore.paths import NOTHING
from webhook.apiclient.offer import OfferRefresher
from webhook.deadline import Deadline
from webhook.errors import GatewayError

CLASS = {"metadata": {"name": "kubectl-dra-gpu"}, "spec": {"selectors": []}}


class Api:
    def __init__(self) -> None:
        self.failing = False
        self.version_reads = 0
        self.lists = 0
        self.listed = threading.Event()
        self.classes: list[dict[str, Any]] = [CLASS]

    def version(self, deadline: Deadline) -> str:
        self.version_reads += 1
        return "v1.37.2"

    def list_classes(self, deadline: Deadline) -> list[dict[str, Any]]:
        self.lists += 1
        self.listed.set()
        if self.failing:
            raise GatewayError("the API server was unreachable")
        return self.classes


def test_a_failed_read_keeps_the_last_good_snapshot_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api()
    refresher = OfferRefresher(read_version=api.version, list_classes=api.list_classes)
    assert refresher.read_once().version == (1, 37)
    good = refresher.read_once()
    assert [c.name for c in good.classes] == ["kubectl-dra-gpu"]
    api.failing = True
    with caplog.at_level(logging.INFO, logger="webhook.apiclient.offer"):
        assert refresher.read_once() is good
        assert refresher.read_once() is good
        api.failing = False
        api.classes = []
        assert refresher.read_once().classes == ()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read DeviceClasses" in m for m in messages) == 1
    assert sum("keeping the last good read" in m for m in messages) == 1
    assert sum("0 DeviceClasses" in m for m in messages) == 1
    assert api.version_reads == 1  # the version is read once


def test_nothing_is_offered_until_the_background_read_answers() -> None:
    api = Api()
    gate = threading.Event()

    def slow_version(deadline: Deadline) -> str:
        gate.wait(5)
        return "v1.37.2"

    refresher = OfferRefresher(
        read_version=slow_version, list_classes=api.list_classes, interval=60
    )
    assert refresher.offer() is NOTHING  # the first call starts the thread, never waits
    gate.set()
    assert api.listed.wait(5)
    for _ in range(100):
        if refresher.offer() is not NOTHING:
            break
        threading.Event().wait(0.02)
    assert refresher.offer().version == (1, 37)
    # A policy change wakes the thread at once instead of after the interval.
    api.listed.clear()
    refresher.refresh()
    assert api.listed.wait(5)
    assert api.lists == 2
