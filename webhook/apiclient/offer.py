"""What the cluster offers the scheduler's path, read in the background.

A review never waits for the API server on this account: `OfferRefresher.offer()` returns the
last good snapshot (nothing until the first read answered, which sends every pod to the
template path). A daemon thread reads the server's version once and the DeviceClasses every
`interval` seconds, and at once when asked (`refresh()`, on a policy change). A failed read
keeps the last good snapshot; a change between failing and working is logged once.

The thread belongs to the process that first asks: the server forks its workers after building
the API client, and a thread does not survive a fork, so each worker starts its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Final

from dracore.paths import NOTHING, ClusterOffer
from webhook import metrics
from webhook.deadline import Deadline
from webhook.errors import GatewayError

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 30.0
# Each read's whole budget: well under the refresh interval, as for a review's API call.
READ_SECONDS: Final = 5.0


class OfferRefresher:
    def __init__(
        self,
        *,
        read_version: Callable[[Deadline], str],
        list_classes: Callable[[Deadline], list[dict[str, Any]]],
        interval: float = REFRESH_SECONDS,
    ) -> None:
        self._read_version = read_version
        self._list_classes = list_classes
        self._interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._offer = NOTHING
        self._version: str | None = None
        self._failing: bool | None = None  # None: no read finished yet
        self._owner: int | None = None  # the pid whose thread reads

    def offer(self) -> ClusterOffer:
        self._ensure_running()
        return self._offer

    def refresh(self) -> None:
        self._ensure_running()
        self._wake.set()

    def read_once(self) -> ClusterOffer:
        """One read, on the caller's thread (the background loop, and tests)."""
        try:
            if self._version is None:
                self._version = self._read_version(Deadline.after(READ_SECONDS))
            classes = self._list_classes(Deadline.after(READ_SECONDS))
        except GatewayError as exc:
            metrics.observe_offer_read(False)
            if self._failing is not True:
                log.warning(
                    "cannot read DeviceClasses for the scheduler's path (%s); %s",
                    exc,
                    "keeping the last good read"
                    if self._offer is not NOTHING
                    else "every pod takes the template path until a read succeeds",
                )
            self._failing = True
            return self._offer
        metrics.observe_offer_read(True)
        offer = ClusterOffer.from_cluster(self._version, classes)
        if self._failing is not False or offer != self._offer:
            log.info(
                "the cluster offers the scheduler's path: Kubernetes %s, %d DeviceClasses",
                self._version,
                len(offer.classes),
            )
        self._failing = False
        self._offer = offer
        return offer

    def _ensure_running(self) -> None:
        pid = os.getpid()
        if self._owner == pid:
            return
        with self._lock:
            if self._owner == pid:
                return
            self._owner = pid
            self._wake = threading.Event()
            threading.Thread(target=self._run, name="offer-refresher", daemon=True).start()

    def _run(self) -> None:
        wake = self._wake
        while True:
            try:
                self.read_once()
            except Exception:  # a bug must not end the loop: the next read may do better
                log.exception("reading what the cluster offers failed")
            wake.wait(self._interval)
            wake.clear()
