"""Every timing and retry decision, as pure functions (no IO, no sleeping).

The client only awaits what these functions decide, so the schedule is testable without a clock and
the sync twin cannot drift from the async one.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from ._exceptions import (
    MalformedResponse,
    RateLimited,
    ServerError,
    TransportError,
)
from ._models import Task

__all__ = [
    "AIMS",
    "FIRST_DONE",
    "SCOUTS",
    "DurationEstimate",
    "PollSchedule",
    "cold_gap",
    "duration_sample",
    "is_transient",
    "leaky_bucket",
    "poll_due",
    "poll_gap",
    "recovered",
    "retry_decision",
    "scaled_poll_delay",
    "snapshot_changed",
    "submit_retry",
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

    def interval(self, age: float) -> float:
        """The poll interval for a state `age` seconds old, with jitter.

        The n-th delay of `next_delay`, first * factor**n, comes first * (factor**n - 1) /
        (factor - 1) seconds after the first poll, so it equals first + (factor - 1) * age: the
        same backoff as a function of the task's own clock, not of how many polls one waiter
        made. That is what lets a task that finished while nobody waited be polled at once."""
        base = min(self.cap, self.first + (self.factor - 1) * max(0.0, age))
        rng = self.rng or random
        return max(0.0, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


def poll_gap(interval: float, polled_at: float | None, aim: float | None) -> float:
    """Seconds from the last poll to the next: at the task's next `aim` (when tasks of its model
    are usually done, on the same clock as `polled_at`; see `DurationEstimate.next_aim`), else
    the backoff `interval`."""
    if polled_at is None or aim is None or aim <= polled_at:
        return interval
    return aim - polled_at


def poll_due(now: float, polled_at: float | None, gap: float) -> float:
    """Seconds from `now` until the next poll, `gap` after the last one (0: poll at once).

    Anchored to the task's clock, not the waiter's: a task nobody polled yet in this process,
    or one overdue (it finished while nobody waited), is polled at once."""
    return 0.0 if polled_at is None else max(0.0, polled_at + gap - now)


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


#: A submit that certainly did not reach the provider (the connection was refused) is sent
#: again after first * 2**n seconds, at most the cap.
SUBMIT_CONNECT_BACKOFF = (0.5, 10.0)
#: A submit refused with 429 and no Retry-After: first * 2**n seconds, at most the cap.
SUBMIT_RATE_BACKOFF = (1.0, 60.0)


def submit_retry(
    attempt: int,
    attempts: int,
    *,
    refused: bool = False,
    status_code: int | None = None,
    retry_after: float | None = None,
    time_left: float | None = None,
) -> float | None:
    """Seconds to wait before sending submit `attempt` (0-based) again, or None: do not.

    A submit POST is sent again only when the provider certainly did not accept it: the
    connection was `refused` (the request never left), or it answered 429 (rejected before any
    work; Retry-After wins when it says). Never after an ambiguous failure (a 5xx, a timeout
    while waiting for the answer): the task may exist and bill. Not when the attempts are spent,
    nor when the wait would outlast the caller's deadline (`time_left` seconds)."""
    if attempt + 1 >= attempts:
        return None
    if refused:
        first, cap = SUBMIT_CONNECT_BACKOFF
        delay = min(cap, first * 2**attempt)
    elif status_code == 429:
        first, cap = SUBMIT_RATE_BACKOFF
        delay = min(cap, retry_after if retry_after is not None else first * 2**attempt)
    else:
        return None
    if time_left is not None and delay >= time_left:
        return None
    return delay


def snapshot_changed(old: Task, new: Task) -> bool:
    """True when anything a user could see changed (the snapshot time alone does not count)."""
    return old.model_dump(exclude={"updated_at"}) != new.model_dump(exclude={"updated_at"})


#: The share of a model's tasks its first poll should find done. Most tasks then cost one status
#: request; the rest are close to done and get the short gaps of the later aims.
FIRST_DONE = 0.8
#: Where a task of a model whose durations are known gets polled: the quantiles of the learned
#: durations, counted from its submit. Past the last, the gaps grow with how late the task is
#: (`TAIL`): it is slower than any seen, and polling it at the provider's generic backoff (8-30 s)
#: would detect a task just past the slowest sample very late.
AIMS: tuple[float, ...] = (FIRST_DONE, 0.97, 1.0)
#: Aims closer than this fraction of the median to the last poll are skipped (no poll storms
#: when the learned durations are tight).
AIM_SPACING = 0.05
#: Past the last aim, the next poll comes this share of max(median, lateness) after the last.
TAIL = 0.1
#: How far each first poll moves the first aim when the samples are upper bounds (see `steer`).
STEER = 0.02


@dataclass
class DurationEstimate:
    """How long a model's tasks take, learned from the ones that finished (here or, through the
    journal, in earlier processes), and where that puts a new task's polls.

    A task polled every 3 s until done costs ceil(T / 3) status requests; one polled first when
    most tasks of its model are done costs about one. With the provider's own start and finish
    times (`exact`) the samples are true durations, and the aims are their quantiles (`AIMS`).
    Without them a sample is only what this client saw: between the last poll that found the task
    running and the first that found it done, or just "done by then" when the first poll found it
    done. Those samples are all later than the first aim, so an aim taken from them could only
    creep later (each round by the poll lag). There the first aim is steered instead, by what
    first polls find (`steer`): earlier when more than `FIRST_DONE` of them find the task done,
    later when fewer do. That converges on the true `FIRST_DONE` quantile however coarse the
    samples (a stochastic approximation: Robbins and Monro, 1951).
    """

    # The last tasks to finish are not a fair sample: a batch's tasks finish in waves, and the
    # last of a wave are its slowest. The window holds more than a wave of a large batch: with
    # 25, the 80th-percentile aim sat near the 95th for 300 tasks in flight.
    window: int = 500
    minimum_samples: int = 3
    exact: bool = False  # the samples are the provider's own times, not "first seen done"
    samples: deque[float] = field(default_factory=deque)
    first: float | None = None  # without exact samples: the steered first aim

    _ordered: tuple[int, list[float]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def observe(self, seconds: float) -> None:
        if seconds > 0:
            self.samples.append(seconds)
            while len(self.samples) > self.window:
                self.samples.popleft()
            self._ordered = None

    def _sorted(self) -> list[float]:
        """The samples in order (kept until the next sample: aims are asked on every poll)."""
        if self._ordered is None or self._ordered[0] != len(self.samples):
            self._ordered = (len(self.samples), sorted(self.samples))
        return self._ordered[1]

    @property
    def learned(self) -> bool:
        return len(self.samples) >= self.minimum_samples

    def steer(self, elapsed: float, aim: float, done: bool) -> None:
        """A task's first poll, timed for `aim` and sent `elapsed` s after its submit, found it
        `done` (or not): the first aim moves a step earlier (done), or later (not). Only a poll
        sent at its aim counts (one released late, e.g. after its model was learned, would only
        say "done by then"), and only while it still tells something of the current first aim
        (done by an aim well after it, or running at one well before, does not): a wave of
        tasks all timed for one aim moves the first aim by about `AIM_SPACING`, not a step each.
        """
        first = self.expected()
        if self.exact or first is None or abs(elapsed - aim) > AIM_SPACING * aim:
            return
        if done and aim <= first * (1 + AIM_SPACING):
            self.first = first * (1 - STEER * (1 - FIRST_DONE))
        elif not done and aim >= first * (1 - AIM_SPACING):
            self.first = first * (1 + STEER * FIRST_DONE)

    def aims(self) -> tuple[float, ...]:
        """Seconds after its submit at which a new task is polled, before the tail's gaps
        (empty while still learning)."""
        if not self.learned:
            return ()
        ordered = self._sorted()
        quantiles = [_quantile(ordered, q) for q in AIMS]
        if self.exact:
            return tuple(quantiles)
        # The samples are upper bounds: their quantile bounds the first aim (tasks that got
        # faster, or journal samples from slower days, pull it down at once).
        first = quantiles[0] if self.first is None else min(self.first, quantiles[0])
        self.first = first
        return (first, *(aim for aim in quantiles[1:] if aim > first))

    def next_aim(self, elapsed: float, cap: float = float("inf")) -> float | None:
        """When to poll a task last polled `elapsed` s after its submit (None: still learning):
        the next aim at least `AIM_SPACING` of the median after that poll, else, past them all,
        a `TAIL` share of how late it is (at most `cap`, the provider's longest poll gap)."""
        aims = self.aims()
        if not aims:
            return None
        median = _quantile(self._sorted(), 0.5)
        spacing = AIM_SPACING * median if elapsed > 0 else 0.0
        aim = next((aim for aim in aims if aim >= elapsed + spacing), None)
        if aim is not None:
            return aim
        late = max(median, elapsed - aims[-1])
        return elapsed + min(cap, max(spacing, TAIL * late))

    def expected(self) -> float | None:
        """Seconds after its submit of a new task's first poll, or None while still learning."""
        aims = self.aims()
        return aims[0] if aims else None

    def remaining(self, elapsed: float) -> float:
        """Seconds until a task `elapsed` s old is expected to be done (0: now, or unknown)."""
        expected = self.expected()
        return 0.0 if expected is None else max(0.0, expected - elapsed)


def _quantile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted values, interpolated between neighbours."""
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def duration_sample(
    reported: float | None, resolution: float, seen: tuple[float, float] | None
) -> float | None:
    """How long a finished task took, for `DurationEstimate.observe` (None: nothing learned).

    `reported`: the provider's own finish minus creation time (None: it gave none), true up to
    `resolution` s (1 for whole-second stamps). `seen`: seconds after the submit between which
    this client saw it finish (the last poll that found it running, or 0; the first that found it
    done), None when nobody watched. The provider's time wins; whole-second stamps are narrowed
    by what was seen. Without any provider time: the midpoint of what was seen (so poll lag does
    not inflate it), or the first-seen-done time when no poll found it running."""
    if reported is None or reported < 0:
        if seen is None:
            return None
        low, high = seen
        return high if low <= 0 else (low + high) / 2
    if resolution <= 0 or seen is None:
        return reported
    low, high = max(reported - resolution, seen[0]), min(reported + resolution, seen[1])
    if low > high:  # the two clocks disagree: the provider's own times win
        return reported
    if (low, high) == seen:  # coarse stamps of a task shorter than they can tell: what was seen
        return duration_sample(None, 0.0, seen)
    return (low + high) / 2


#: While a model's durations are still unknown and more of its tasks are in flight than this, only
#: the oldest `SCOUTS` poll, often: every `SCOUT_SHARE` of their age, at least `SCOUT_FLOOR` s
#: apart (never slower than the backoff): their finish teaches the rest, and how late they are
#: seen done is how late the whole first wave is released. The others wait until a scout ends, at
#: most `SCOUT_NAP` backoff caps at a time. A batch's first wave then costs about one poll a task,
#: not a backoff each, and three tasks' polls.
SCOUTS = 3
SCOUT_SHARE = 0.1
SCOUT_FLOOR = 0.5
SCOUT_NAP = 3.0


def cold_gap(interval: float, cap: float, rank: int, count: int, age: float = 0.0) -> float:
    """The gap of a task of a model still being learned, `age` s after its submit: the
    `rank`-th oldest (0-based) of the `count` tasks of that model in flight. A few tasks poll on
    the backoff, as before."""
    if count <= SCOUTS:
        return interval
    if rank < SCOUTS:
        return min(interval, max(SCOUT_FLOOR, SCOUT_SHARE * age))
    return SCOUT_NAP * cap


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
