"""One deadline per review, from the moment its request head arrived to the last API call.

The API server gives a review `timeoutSeconds` (the registration's) and then applies the
failurePolicy; an answer after that is wasted. The HTTP layer starts a `Deadline` when the
request head is in, a little shorter than that timeout, and every API call of the review gets
what is left of it as its whole budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

# Kept back from the registration's timeoutSeconds for what follows the decision: writing the
# answer, the network, the API server's own bookkeeping.
MARGIN_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class Deadline:
    expires_at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def for_review(
        cls, timeout_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> Deadline:
        """The budget of one review under a registration's `timeoutSeconds`."""
        return cls.after(max(timeout_seconds - MARGIN_SECONDS, 0.0), clock=clock)

    def remaining(self) -> float:
        return max(self.expires_at - self.clock(), 0.0)

    def budget(self, cap: float) -> float:
        """What one step may take: at most `cap`, never past the deadline."""
        return min(cap, self.remaining())
