"""Every timing and retry decision, as pure functions (no IO, no sleeping).

The client only awaits what these functions decide, so the schedule is testable without a clock and
the sync twin cannot drift from the async one.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from dataclasses import dataclass, field

from ._exceptions import (
    GenError,
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from ._models import Task

__all__ = [
    "DurationEstimate",
    "PollSchedule",
    "leaky_bucket",
    "recovered",
    "retry_decision",
    "scaled_poll_delay",
    "snapshot_changed",
]


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


@dataclass
class DurationEstimate:
    """How long a model's tasks take, learned from the ones this process saw finish.

    A task polled every 3 s until done costs ceil(T / 3) status requests; one polled first when it
    is expected to be done costs about one. The estimate is a little under the recent median, so a
    poll that comes too early (cheap: one request, then fast polls) is likelier than one that comes
    late (a slot held, a result shown late), and an estimate inflated by poll lag shrinks back.
    """

    window: int = 25
    minimum_samples: int = 3
    margin: float = 0.9
    samples: deque[float] = field(default_factory=deque)

    def observe(self, seconds: float) -> None:
        if seconds > 0:
            self.samples.append(seconds)
            while len(self.samples) > self.window:
                self.samples.popleft()

    def expected(self) -> float | None:
        """Seconds a task of this model is expected to take, or None while still learning."""
        if len(self.samples) < self.minimum_samples:
            return None
        return self.margin * statistics.median(self.samples)

    def remaining(self, elapsed: float) -> float:
        """Seconds until a task `elapsed` s old is expected to be done (0: now, or unknown)."""
        expected = self.expected()
        return 0.0 if expected is None else max(0.0, expected - elapsed)


def leaky_bucket(requests_per_minute: float, safety: float = 0.98) -> tuple[float, float]:
    """(capacity, period) for `aiolimiter.AsyncLimiter` so that no 60 s window sees more than
    `requests_per_minute`: a burst of about one second's worth plus the steady rate, together
    kept under the limit (a plain `AsyncLimiter(600, 60)` would allow 600 at once, then 600 more
    in the same minute). Up to 60/min there is no burst: requests are spaced evenly."""
    target = safety * requests_per_minute
    if requests_per_minute <= 60:
        return 1.0, 60.0 / target
    capacity = requests_per_minute / 60.0
    return capacity, capacity * 60.0 / (target - capacity)


def recovered(
    rate_factor: float, cap: int | None, max_in_flight: int | None
) -> tuple[float, int | None]:
    """One recovery step after a quiet period: the rate doubles, the cap grows by a quarter."""
    factor = min(1.0, rate_factor * 2)
    if max_in_flight is None or cap is None:
        return factor, max_in_flight
    return factor, min(max_in_flight, cap + max(1, max_in_flight // 4))


def scaled_poll_delay(desired: float, total_share: float, poll_rate: float) -> float:
    """Widen `desired` when the polling tasks together (`total_share` polls/s, the sum of their
    1/desired) ask for more than `poll_rate` allows. Every delay scales by the same factor, so a
    task that asked for fast polls (young, about to finish) keeps the larger share."""
    if poll_rate <= 0:
        return desired
    return desired * max(1.0, total_share / poll_rate)
