"""Every timing and retry decision, as pure functions (no IO, no sleeping).

The client only awaits what these functions decide, so the schedule is testable without a clock and
the sync twin cannot drift from the async one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._exceptions import (
    GenError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from ._models import Task

__all__ = ["PollSchedule", "retry_decision", "snapshot_changed"]


@dataclass
class PollSchedule:
    """Fast first, then back off geometrically to a cap, with jitter so many tasks do not align.

    A generation usually takes seconds to minutes: polling at the cap from the start makes short
    jobs feel slow, polling fast forever wastes the provider's rate limit (fal_client's 0.1 s loop).
    """

    first: float = 1.0
    cap: float = 8.0
    factor: float = 1.5
    jitter: float = 0.1
    attempt: int = 0
    rng: random.Random | None = None

    def next_delay(self, server_hint: float | None = None) -> float:
        """Seconds to wait before the next poll; a server's Retry-After wins when it is longer."""
        base = min(self.cap, self.first * self.factor**self.attempt)
        self.attempt += 1
        rng = self.rng or random
        delay = base * (1.0 + rng.uniform(-self.jitter, self.jitter))
        if server_hint is not None:
            delay = max(delay, server_hint)
        return max(0.0, delay)

    def reset(self) -> None:
        """Start fast again (the task changed state, e.g. queued -> running)."""
        self.attempt = 0


#: Errors that say nothing about the task itself; a GET may simply be asked again.
TRANSIENT = (ServerError, RateLimited, TransportError, MalformedResponse)


def retry_decision(exc: Exception) -> bool | float:
    """stamina's `on=` hook for idempotent requests: False, True, or a delay in seconds.

    Only GET/DELETE go through here. A submit POST is never retried blindly: it could bill twice.
    """
    if isinstance(exc, RateLimited):
        return exc.retry_after if exc.retry_after is not None else True
    return isinstance(exc, TRANSIENT)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def snapshot_changed(old: Task, new: Task) -> bool:
    """True when anything a user could see changed (the snapshot time alone does not count)."""
    return old.model_dump(exclude={"updated_at"}) != new.model_dump(exclude={"updated_at"})


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, GenError) else f"{type(exc).__name__}: {exc}"
