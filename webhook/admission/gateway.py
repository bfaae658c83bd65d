"""What the webhook needs from the API server, as a Protocol, plus an in-memory fake.

The production implementation is `webhook.apiclient.kubeapi.ApiGateway`; unit tests use
`MemoryGateway`, which keeps objects in dicts and counts calls. Every call takes the review's
`Deadline`: the call may take what is left of it, and no more.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

from dracore.paths import NOTHING, ClusterOffer
from webhook.deadline import Deadline
from webhook.errors import GatewayError


class ClusterGateway(Protocol):
    def create_template(self, template: Mapping[str, Any], *, deadline: Deadline) -> bool:
        """Create a ResourceClaimTemplate; False if one of that name already exists."""

    def get_template(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None:
        """A ResourceClaimTemplate, or None if there is none of that name."""

    def get_claim(self, namespace: str, name: str, *, deadline: Deadline) -> dict[str, Any] | None:
        """A ResourceClaim, or None if there is none of that name."""

    def create_claim(self, claim: Mapping[str, Any], *, deadline: Deadline) -> bool:
        """Create a ResourceClaim; False if one of that name already exists."""

    def namespace_labels(self, name: str, *, deadline: Deadline) -> dict[str, str]:
        """The labels of a namespace ({} if it has none)."""

    def offer(self) -> ClusterOffer:
        """What the cluster offers the scheduler's path, as last read; never blocks (nothing
        until the first read has answered)."""

    def refresh_offer(self) -> None:
        """Read the offer again soon (the policy changed); returns at once."""


class MemoryGateway:
    """An in-memory ClusterGateway for tests; `calls` counts API round trips."""

    def __init__(self, *, namespaces: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.namespaces = {k: dict(v) for k, v in (namespaces or {}).items()}
        self.calls = 0
        self.refuse: str | None = None
        self.budgets: list[float] = []  # what each call had left of its deadline
        self.offered: ClusterOffer = NOTHING
        self.offer_refreshes = 0

    def _key(self, obj: Mapping[str, Any]) -> tuple[str, str]:
        metadata = obj["metadata"]
        return metadata.get("namespace", ""), metadata["name"]

    def create_template(self, template: Mapping[str, Any], *, deadline: Deadline) -> bool:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        if self.refuse:
            raise GatewayError(self.refuse)
        key = self._key(template)
        if key in self.templates:
            return False
        self.templates[key] = copy.deepcopy(dict(template))
        return True

    def get_template(
        self, namespace: str, name: str, *, deadline: Deadline
    ) -> dict[str, Any] | None:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        return self.templates.get((namespace, name))

    def get_claim(self, namespace: str, name: str, *, deadline: Deadline) -> dict[str, Any] | None:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        return self.claims.get((namespace, name))

    def create_claim(self, claim: Mapping[str, Any], *, deadline: Deadline) -> bool:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        if self.refuse:
            raise GatewayError(self.refuse)
        key = self._key(claim)
        if key in self.claims:
            return False
        self.claims[key] = copy.deepcopy(dict(claim))
        return True

    def namespace_labels(self, name: str, *, deadline: Deadline) -> dict[str, str]:
        self.calls += 1
        self.budgets.append(deadline.remaining())
        return dict(self.namespaces.get(name, {}))

    def offer(self) -> ClusterOffer:
        return self.offered

    def refresh_offer(self) -> None:
        self.offer_refreshes += 1
