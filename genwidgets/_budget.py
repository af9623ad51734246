"""Rate and concurrency budgets: one per provider and API key, shared by every task in the process.

Providers answer a burst with 429s (OneRouter: 600 requests/min and 30 tasks in flight for
community accounts; Segmind: 5 or 50 generation requests/min by plan). A gallery of 60 cells or a
batch of 10,000 lines must not draw those: tasks over budget wait here, in a state the card can
show ("waiting for a slot", "waiting for segmind's rate limit"), and the requests the provider
counts (`_limits.PROVIDER_LIMITS`: every request at OneRouter, generation requests only at
Segmind) spend from one leaky bucket (aiolimiter). Polls widen to fit where they count: with 30
tasks in flight under 600/min none can be polled faster than every ~3.3 s, and tasks that asked
for quick polls keep the larger share.

A 429 still happens (another process on the same key, a plan below the default): it pauses the
budget for the server's Retry-After (or Segmind's reset time), halves the rate and, on a submit,
shrinks the tasks-in-flight cap to what the server evidently accepts; both recover step by step
after `recover_after` seconds without another 429. A 429 on a kind of request the table says the
provider does not count means it does: from then on every request counts.

Budgets hold asyncio futures, which belong to one event loop, so the registry is per loop (a
kernel has one). The arithmetic is in `_policy` and is pure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiolimiter import AsyncLimiter

from ._limits import DEFAULT_LIMITS, PROVIDER_LIMITS, BudgetSetting, Limits, resolve_limits
from ._policy import leaky_bucket, recovered, scaled_poll_delay
from ._team import team_url

__all__ = [
    "DEFAULT_LIMITS",
    "Budget",
    "BudgetSetting",
    "Limits",
    "budget_for",
    "resolve_limits",
]

log = logging.getLogger("genwidgets")

#: Share of the request rate polls may use; the rest keeps submits from starving.
POLL_SHARE = 0.9
#: Seconds without a 429 before the rate and the cap take one step back up.
RECOVER_AFTER = 30.0
#: The longest pause a 429 may impose, whatever its Retry-After says; and the pause without one.
MAX_PAUSE, DEFAULT_PAUSE = 300.0, 1.0
#: A 429 divides the rate by this, down to this floor (a share of the limit).
RATE_DIVISOR, RATE_FLOOR = 2.0, 0.1


class Budget:
    """The requests-per-minute bucket and tasks-in-flight count of one provider account.

    Slots: `reserve()` before a submit (waits while the account is full), then `bind(task_id)`
    once the provider answered, or `unreserve()` if it refused; `release(task_id)` when the task
    ends. Tasks found running at the provider (re-attached, resumed) are `adopt`ed even over the
    cap, since they are in flight whether we like it or not.
    """

    def __init__(
        self,
        provider: str,
        limits: Limits,
        *,
        recover_after: float = RECOVER_AFTER,
        counts: frozenset[str] | None = None,
    ) -> None:
        self.provider = provider
        self.limits = limits
        self.recover_after = recover_after
        self.counts = counts  # the kinds of request the rate limit counts; None: all
        self.rate_factor = 1.0
        self.cap = limits.max_in_flight
        self.in_flight: set[str] = set()
        self.reserved = 0
        self.limited = 0  # 429s seen
        self._paused_until = 0.0
        self._granted_at: float | None = None  # when the bucket last let a request go
        self._queued = 0  # requests waiting in the bucket
        self._last_penalty: float | None = None
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._poll_shares: dict[str, float] = {}
        self._poll_total = 0.0
        self._limiter: AsyncLimiter | None = None
        self._other_limiter: AsyncLimiter | None = None  # the uncounted requests' own bucket
        self._configure_limiter()

    # ------------------------------------------------------------------ configuration
    def reconfigure(self, limits: Limits) -> None:
        """Apply new limits (the newest client's `budgets=` wins for a shared account)."""
        if limits != self.limits:
            self.limits = limits
            self.cap = limits.max_in_flight
            self.rate_factor = 1.0
            self._configure_limiter()
            self._wake_slot_waiters()

    def _configure_limiter(self) -> None:
        self._limiter = self._bucket(self.limits.requests_per_minute)
        self._other_limiter = self._bucket(self.limits.other_requests_per_minute)

    def _bucket(self, rpm: float | None) -> AsyncLimiter | None:
        if rpm is None:
            return None
        capacity, period = leaky_bucket(rpm * self.rate_factor)
        return AsyncLimiter(capacity, period)

    @property
    def requests_per_second(self) -> float | None:
        """The rate requests may go out at now (lower after a 429), or None for unlimited."""
        rpm = self.limits.requests_per_minute
        return None if rpm is None else rpm * self.rate_factor / 60.0

    def rate_of(self, kind: str | None) -> float | None:
        """Requests/s a request of `kind` may go out at now: the counted bucket's rate, the
        second bucket's for the kinds it takes, or None where nothing limits that kind."""
        if self.counted(kind):
            return self.requests_per_second
        rpm = self.limits.other_requests_per_minute
        return None if rpm is None else rpm * self.rate_factor / 60.0

    # ------------------------------------------------------------------ tasks in flight
    def _used(self) -> int:
        return len(self.in_flight) + self.reserved

    def has_slot(self) -> bool:
        return self.cap is None or self._used() < self.cap

    async def reserve(
        self,
        on_wait: Callable[[str], None] | None = None,
        while_waiting: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        """Take a slot for one submit, waiting (and saying so, once) while the account is full;
        a wait runs inside `while_waiting()` (the client polls the tasks holding the slots)."""
        self._maybe_recover()
        if not self.has_slot() and while_waiting is not None:
            async with while_waiting():
                await self._wait_for_slot(on_wait)
        else:
            await self._wait_for_slot(on_wait)
        self.reserved += 1

    async def _wait_for_slot(self, on_wait: Callable[[str], None] | None) -> None:
        told = False
        loop = asyncio.get_running_loop()
        while not self.has_slot():
            if not told and on_wait is not None:
                on_wait(self.describe_wait())
            told = True
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                # Time out now and then: a cap shrunk by a 429 recovers by time, not by a release.
                await asyncio.wait_for(asyncio.shield(waiter), self.recover_after / 2)
            except asyncio.TimeoutError:
                self._maybe_recover()
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
                if not waiter.done():
                    waiter.cancel()

    async def requeue(self, on_wait: Callable[[str], None] | None = None) -> None:
        """A reserved submit was refused with a 429: queue it for a slot again, under the cap the
        429 shrank, instead of retrying over it. The caller still holds one reservation after."""
        self.reserved = max(0, self.reserved - 1)
        self._wake_slot_waiters()
        try:
            await self.reserve(on_wait)
        except BaseException:
            self.reserved += 1  # keep the caller's `unreserve()` balanced
            raise

    def describe_wait(self) -> str:
        return f"waiting for a slot: {self._used()} of {self.cap} {self.provider} tasks in flight"

    def bind(self, task_id: str) -> None:
        """The reserved submit was accepted as `task_id`."""
        self.reserved = max(0, self.reserved - 1)
        self.in_flight.add(task_id)

    def unreserve(self) -> None:
        """The reserved submit was refused or never sent: give the slot back."""
        self.reserved = max(0, self.reserved - 1)
        self._wake_slot_waiters()

    def adopt(self, task_id: str) -> None:
        """A task already running at the provider (re-attached or resumed) counts too."""
        self.in_flight.add(task_id)

    def release(self, task_id: str) -> None:
        """The task ended (or we stopped following it): its slot and poll share are free."""
        share = self._poll_shares.pop(task_id, None)
        if share is not None:
            self._poll_total = max(0.0, self._poll_total - share)
        if task_id in self.in_flight:
            self.in_flight.discard(task_id)
            self._wake_slot_waiters()

    def _wake_slot_waiters(self) -> None:
        free = len(self._slot_waiters) if self.cap is None else self.cap - self._used()
        for waiter in self._slot_waiters[: max(0, free)]:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ requests per minute
    def counted(self, kind: str | None) -> bool:
        """Whether a request of this kind spends from the rate (None: any request)."""
        return self.counts is None or kind is None or kind in self.counts

    async def spend(
        self, kind: str | None = None, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Wait until one more request of `kind` fits the budget (and any 429 pause is over);
        `on_wait(message)` is called once if it has to wait."""
        loop = asyncio.get_running_loop()
        tell = _once(on_wait)
        while True:
            pause = self._paused_until - loop.time()
            if pause > 0:
                tell(self._describe_rate(pause, "paused after a 429, going on"))
                await asyncio.sleep(pause)
            self._maybe_recover()
            limiter = self._limiter if self.counted(kind) else self._other_limiter
            if limiter is None:
                return
            if not limiter.has_capacity():
                tell(self._describe_rate(self._next_grant(loop.time())))
            self._queued += 1
            try:
                await limiter.acquire()
            finally:
                self._queued -= 1
            self._granted_at = loop.time()
            # A 429 while we waited replaced the limiter or paused the budget: wait again under
            # the new terms rather than go out at the old rate.
            current = self._limiter if self.counted(kind) else self._other_limiter
            if limiter is current and self._paused_until <= loop.time():
                return

    def _next_grant(self, now: float) -> float:
        """Seconds until the bucket lets the next request go, about (requests go out evenly)."""
        rate = self.requests_per_second
        if not rate or self._granted_at is None:
            return 0.0
        return max(0.0, self._granted_at + (self._queued + 1) / rate - now)

    def _describe_rate(self, seconds: float, why: str = "next request") -> str:
        rpm = (self.requests_per_second or 0.0) * 60
        return (
            f"waiting for {self.provider}'s rate limit ({rpm:.3g} requests/min): "
            f"{why} in ~{math.ceil(seconds)} s"
        )

    def penalize(
        self, retry_after: float | None, *, on_submit: bool = False, kind: str | None = None
    ) -> None:
        """A 429: pause for Retry-After, halve the rate, and on a submit shrink the cap. A 429
        on a kind of request not counted so far proves the provider counts it: count all."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.limited += 1
        self._last_penalty = now
        pause = retry_after if retry_after is not None else DEFAULT_PAUSE
        self._paused_until = max(self._paused_until, now + min(pause, MAX_PAUSE))
        if not self.counted(kind) and self.limits.other_requests_per_minute is None:
            log.info("%s limited a %s request: counting every request now", self.provider, kind)
            self.counts = None
        if self.limits.requests_per_minute or self.limits.other_requests_per_minute:
            self.rate_factor = max(RATE_FLOOR, self.rate_factor / RATE_DIVISOR)
            self._configure_limiter()
        if on_submit and self.limits.max_in_flight is not None:
            self.cap = max(1, min(self.cap or 1, len(self.in_flight)))
        log.info(
            "%s answered 429: pausing %.1f s, rate now %.0f%%, %s tasks in flight allowed",
            self.provider,
            pause,
            self.rate_factor * 100,
            self.cap,
        )

    def _maybe_recover(self) -> None:
        if self._last_penalty is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._last_penalty < self.recover_after:
            return
        self._last_penalty = now  # one step per quiet period
        self.rate_factor, self.cap = recovered(
            self.rate_factor, self.cap, self.limits.max_in_flight
        )
        self._configure_limiter()
        self._wake_slot_waiters()
        if self.rate_factor >= 1.0 and self.cap == self.limits.max_in_flight:
            self._last_penalty = None

    # ------------------------------------------------------------------ polls
    def poll_delay(self, task_id: str, desired: float) -> float:
        """`desired`, widened so that all polling tasks together fit the request budget (where
        the provider counts polls at all)."""
        rate = self.rate_of("poll")
        share = 1.0 / max(desired, 1e-3)
        self._poll_total += share - self._poll_shares.get(task_id, 0.0)
        self._poll_shares[task_id] = share
        if rate is None:
            return desired
        return scaled_poll_delay(desired, self._poll_total, rate * POLL_SHARE)

    def state(self) -> dict[str, Any]:
        """What a status line shows: in flight, the cap, waiting submits, rate, pause."""
        return {
            "provider": self.provider,
            "in_flight": len(self.in_flight),
            "reserved": self.reserved,
            "cap": self.cap,
            "waiting": len(self._slot_waiters),
            "requests_per_minute": None
            if self.requests_per_second is None
            else round(self.requests_per_second * 60, 1),
            "limited": self.limited,
        }

    def __repr__(self) -> str:
        s = self.state()
        return (
            f"<Budget {self.provider} in_flight={s['in_flight']}/{s['cap']} "
            f"rpm={s['requests_per_minute']} limited={s['limited']}>"
        )


def _once(on_wait: Callable[[str], None] | None) -> Callable[[str], None]:
    """`on_wait`, called for the first message only (a card shows what it waits for once)."""
    told = on_wait is None

    def tell(message: str) -> None:
        nonlocal told
        if not told:
            told = True
            on_wait(message)  # type: ignore[misc]

    return tell


_REGISTRY: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], Budget]] = (
    weakref.WeakKeyDictionary()
)


def budget_for(provider: str, account: str, limits: Limits) -> Budget | None:
    """The process-wide budget of this provider account on the running loop (None: unlimited).

    `account` is `Provider.account`, a hash of the key: the key itself is never kept here. What
    the rate counts comes from `PROVIDER_LIMITS`. With a team backend (`_team.team_url`) it is a
    `SharedBudget`: the account's budget shared by every process of the team."""
    if limits.unlimited:
        return None
    loop = asyncio.get_running_loop()
    url = team_url()
    budgets = _REGISTRY.setdefault(loop, {})
    key = (provider, account, url or "")
    budget = budgets.get(key)
    if budget is None:
        row = PROVIDER_LIMITS.get(provider)
        counts = row.counts if row is not None else None
        if url is None:
            budget = Budget(provider, limits, counts=counts)
        else:
            from ._team_budget import SharedBudget

            budget = SharedBudget(provider, limits, url=url, account=account, counts=counts)
        budgets[key] = budget
    else:
        budget.reconfigure(limits)
    return budget
