"""Following a task to its end: when to poll, push events, deadlines, and waiting with a timeout.

Polls are timed from the task's own clock (its record in `_tracking`: submitted, last polled,
status last changed, expected to finish), through the pure `_policy.poll_gap`/`poll_due`, so a
task that finished while nobody waited is polled at once, and several waiters on one task share
one schedule. A polled task sleeps towards its due time, counting it anew at least every backoff
cap (a budget's widening at peak demand shrinks as tasks end) and, while its model's durations
are unknown, whenever a task of that model ends (only a few scouts poll meanwhile; see
`_policy.cold_gap`). A passed deadline cancels where the provider can (`DeadlineExceeded`).
Where the adapter offers the task's own event stream (`_events.TaskStream`), its messages are the
snapshots and no poll is made while it is open; the schedule runs whenever it is not.

While a submit waits for a slot of a full account, a slot watcher polls that account's in-flight
tasks that nobody follows yet (a loop of submits, a gather of them): a slot frees when a task
ends at the provider, not when its caller gets round to waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from ._accounts import Accounts
from ._events import EventStream, StreamView
from ._exceptions import DeadlineExceeded, GenError, WaitTimeout
from ._models import Status, Task
from ._operations import Operations
from ._policy import PollSchedule, cold_gap, is_transient, poll_due, poll_gap, snapshot_changed
from ._tracking import Followed, Tracker
from .providers._errors import error_context

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["Following"]

log = logging.getLogger("genwidgets")

#: Longest single wait on the local engine before looking at the deadline again, in seconds.
LOCAL_WAIT = 5.0
#: Seconds a poll may come late (a busy loop, a slow answer) before the task counts as one that
#: nobody watched, whose duration is then not learned (see `_tracking.Followed.unwatched`).
UNWATCHED_SLACK = 1.0
#: Longest sleep of a slot watcher before it looks again for newly submitted or unfollowed tasks.
SLOT_RESCAN = 1.0


class Following:
    """The poll loop of one client: it drives the client's `get` and `cancel`, and hands every
    other snapshot to `seen` (tracking, journal, observers)."""

    def __init__(
        self,
        client: AsyncClient,
        parts: tuple[Accounts, Operations, Tracker],
        seen: Callable[[Task], Task],
        poll_interval: tuple[float, float] | None,
    ) -> None:
        self._client = client
        self._accounts, self._operations, self._tracker = parts
        self._seen = seen
        self._poll_interval = poll_interval
        self._followers: Counter[tuple[str, str]] = Counter()  # tasks `updates` follows now
        self._ended: dict[tuple[str, str], Task] = {}  # ended while only a slot watcher polled
        self._slot_waits: Counter[str] = Counter()  # submits waiting for a slot, by provider
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._operations.slot_watch = self.watching_slots
        self._operations.stop_watching = self.aclose

    async def updates(self, task: Task) -> AsyncIterator[Task]:
        """Yield `task`, then every changed snapshot until (and including) a terminal one."""
        yield task
        if task.done and (task.outputs or task.status is not Status.SUCCEEDED):
            return  # nothing left to ask the provider (also: replayed tasks need no key)
        key = (task.provider, task.id)
        self._followers[key] += 1
        try:
            async for snapshot in self._follow(task, key):
                yield snapshot
        finally:
            self._followers[key] -= 1
            if self._followers[key] <= 0:
                del self._followers[key]

    async def _follow(self, task: Task, key: tuple[str, str]) -> AsyncIterator[Task]:
        """The changed snapshots of a task `updates` follows, until a terminal one."""
        ended = self._ended.pop(key, None)
        if ended is not None:  # a slot watcher saw it end: nothing left to ask
            yield ended
            return
        client = self._client
        budget = client.budget(task.provider)
        if budget is not None and not task.done:
            budget.adopt(task.id)  # re-attached or resumed tasks are in flight too
        if task.status is Status.SUCCEEDED and not task.outputs:  # resumed before its result
            completed = await client.get(task)
            if snapshot_changed(task, completed):
                yield completed
        schedule = self._schedule(task.provider)
        stream = self._operations.events(task.provider) if task.provider != "local" else None
        own = self._operations.task_events(task)  # the task's own event stream, if any
        loose = Followed(task)  # for a task this client does not follow (nor kept by it)
        try:
            while not task.done:
                record = self._tracker.get(task) or loose
                left = record.deadline_left(time.monotonic())
                if left is not None and left <= 0:
                    await self._enforce_deadline(record)
                new = await self._next_snapshot(record, schedule, (stream, own), left)
                new = self._ended.pop(key, new)  # a slot watcher's poll that ended it meanwhile
                if snapshot_changed(task, new):
                    task = loose.task = new
                    yield task
        finally:
            if own is not None:  # ended, cancelled, past its deadline, or no longer waited on
                self._operations.task_streams.release(own)

    async def _next_snapshot(
        self,
        record: Followed,
        schedule: PollSchedule,
        streams: tuple[EventStream | None, StreamView | None],
        deadline_left: float | None,
    ) -> Task:
        """Wait for the next thing worth knowing about the task, then return its snapshot."""
        task, client = record.task, self._client
        stream, own = streams
        cap = max(0.0, deadline_left) if deadline_left is not None else None
        if task.provider == "local":
            wait = LOCAL_WAIT if cap is None else min(LOCAL_WAIT, cap)
            engine = self._operations.local_engine()
            return self._seen(await engine.wait_change(task, timeout=wait))
        delay = self._delay(record, schedule)
        if stream is None and (own is None or not own.alive):  # polled only: nothing pushes
            delay, cap = await self._pause(record, schedule, delay, cap)
        at_deadline = cap is not None and delay >= cap
        if cap is not None:
            delay = min(delay, cap)
        if own is not None and own.alive:
            pushed = await self._own_stream(record, own, delay, cap)
            if pushed is not None:
                return pushed
        elif stream is not None:
            event = await stream.wait(task.id, delay)
            if event is not None:
                pushed = client.provider(task.provider).apply_event(task, event)
                if pushed.done:
                    return self._seen(await self._operations.complete(pushed))
        else:
            await asyncio.sleep(delay)
        if at_deadline:
            return task  # the caller cancels now; a last poll would only delay the cancel
        try:
            new = await client.get(task)
        except GenError as exc:
            if not is_transient(exc):
                raise
            # The task is still out there: a flaky network or provider must not lose it.
            log.warning("poll of %s failed (%s); will poll again", task.id, exc)
            new = task
            record.polled(new, time.monotonic())
        else:
            if self._tracker.get(task) is not record:  # client.get timed the tracked ones
                record.polled(new, time.monotonic())
        if own is not None:
            own.polled(new)
        return new

    async def _own_stream(
        self, record: Followed, own: StreamView, delay: float, cap: float | None
    ) -> Task | None:
        """The task's next snapshot from its own stream (the result fetched once it says done);
        the task unchanged to look again (the stream opened or closed, the deadline came); None
        when the poll is due: the stream is still opening, so polling goes on meanwhile."""
        streaming = own.streaming
        changed = await own.wait(cap if streaming else delay)  # open: no poll is ever due
        new = own.take()
        if new is None:
            return record.task if changed or streaming else None
        if new.done:
            async with own.stream.completing:  # the task's other followers: one result fetch
                new = own.take() or new  # fetched by one of them meanwhile
                try:
                    completed = await self._operations.complete(new)
                except GenError as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("result of %s failed (%s); will poll again", new.id, exc)
                    return record.task  # the stream closed at the end: the poll sees it again
                if completed is not new:
                    own.polled(new := completed)
        if not snapshot_changed(record.task, new):
            return record.task  # another follower of the task passed it on already
        now = time.monotonic()
        record.first_poll = False  # a pushed message is no poll: it says nothing of the aim
        if new.done and streaming:  # watched running until this message: durations learn that
            self._tracker.polled(record.task, now)
        self._tracker.polled(new, now)
        new = self._seen(new)
        record.polled(new, now)
        return new

    def _schedule(self, provider: str) -> PollSchedule:
        first, cap = self._poll_interval or self._client.provider(provider).poll_interval
        return PollSchedule(first=first, cap=cap)

    def _delay(self, record: Followed, schedule: PollSchedule) -> float:
        """Seconds until the task's next poll is due, on its own clock."""
        task, now = record.task, time.monotonic()
        age = 0.0
        if record.polled_at is not None and record.changed_at is not None:
            age = record.polled_at - record.changed_at
        expected_at = None
        if record.submitted_at is not None:
            expected_at = record.expected_at(self._tracker.estimate(task), schedule.cap)
        gap = poll_gap(schedule.interval(age), record.polled_at, expected_at)
        if expected_at is not None and task.progress is not None and self._tracker.few(task):
            gap = min(gap, schedule.interval(age))  # a card's progress bar moves between aims
        cold = self._tracker.cold(record) if expected_at is None else None
        if cold is not None and record.submitted_at is not None:
            gap = cold_gap(gap, schedule.cap, *cold, age=now - record.submitted_at)
        budget = self._accounts.known_budget(task.provider)
        if budget is not None:
            gap = budget.poll_delay(task.id, gap)
        if record.polled_at is not None and now - record.polled_at > 2 * gap + UNWATCHED_SLACK:
            record.unwatched = True  # overdue by a whole gap: nobody was waiting on it
        due = poll_due(now, record.polled_at, gap)
        if record.first_poll and due > 0 and record.submitted_at is not None:
            # What the first poll is timed for (it steers the aim): not an overdue one's.
            aimed = expected_at is not None and abs(record.polled_at + gap - expected_at) < 1e-6
            record.first_aim = expected_at - record.submitted_at if aimed else None
        return due

    async def _pause(
        self, record: Followed, schedule: PollSchedule, delay: float, cap: float | None
    ) -> tuple[float, float | None]:
        """Sleep towards the task's next poll, counting the delay anew whenever it may have
        shrunk: at least every backoff cap (a budget widened it at peak demand, and demand falls
        as tasks end), and, while its model is still being learned, whenever a task of that model
        ends (it may teach the duration, or make this one a scout). Returns (delay left, deadline
        left) once either is due."""
        ends = None if cap is None else time.monotonic() + cap
        while True:
            left = None if ends is None else max(0.0, ends - time.monotonic())
            wait = min(delay, schedule.cap) if left is None else min(delay, left, schedule.cap)
            if wait <= 0:
                return delay, left
            if self._tracker.cold(record):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._tracker.ended(record.task).wait(), wait)
            else:
                await asyncio.sleep(wait)
            delay = self._delay(record, schedule)

    async def _enforce_deadline(self, record: Followed) -> None:
        """The deadline passed: cancel where possible, record why, raise `DeadlineExceeded`."""
        task, client = record.task, self._client
        record.deadline = None  # enforced once; the task may still be followed without one
        reason = f"deadline of {record.deadline_seconds:g} s passed"
        context = error_context(task.provider, task)
        if client.can_cancel(task):
            stopped = await client.cancel(task)
            if stopped.status is Status.CANCELLED:
                self._seen(stopped.evolve(error=reason))
            raise DeadlineExceeded(f"Task cancelled: {reason}", **context)
        budget = self._accounts.known_budget(task.provider)
        if budget is not None:  # we stop following it; the provider's own limit may still count it
            budget.release(task.id)
        raise DeadlineExceeded(
            f"{reason}; {task.provider} cannot cancel, so the task may still run and bill: its "
            f"id {task.id} is kept (journal) to fetch or resume it later",
            **context,
        )

    async def wait(self, task: Task, timeout: float | timedelta | None = None) -> Task:
        """Follow `task` to a terminal snapshot; `WaitTimeout` after `timeout` seconds (the task
        keeps running)."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        latest = task

        async def follow() -> Task:
            nonlocal latest
            async for snapshot in self.updates(task):
                latest = snapshot
            return latest

        try:
            return await asyncio.wait_for(follow(), seconds)
        except asyncio.TimeoutError as exc:
            if isinstance(exc, GenError):  # DeadlineExceeded is a TimeoutError too
                raise
            raise WaitTimeout(
                f"Still {latest.status.value} after {seconds:g} s; the task keeps running "
                "(wait again, or cancel it)",
                provider=task.provider,
                model=task.model,
                task_id=task.id,
            ) from None

    # ------------------------------------------------------------------ slot watchers
    @contextlib.asynccontextmanager
    async def watching_slots(self, provider: str) -> AsyncIterator[None]:
        """Around a submit's wait for a slot: while any submit of this client waits for one of
        `provider`'s slots, a watcher polls its in-flight tasks nobody follows, so they free."""
        self._slot_waits[provider] += 1
        watcher = self._watchers.get(provider)
        if watcher is None or watcher.done():
            watcher = asyncio.ensure_future(self._watch_slots(provider))
            self._watchers[provider] = watcher
        try:
            yield
        finally:
            self._slot_waits[provider] -= 1
            if self._slot_waits[provider] <= 0:
                del self._slot_waits[provider]
                if self._watchers.get(provider) is watcher:
                    del self._watchers[provider]
                watcher.cancel()
                await asyncio.wait([watcher])  # leave no pending task behind

    async def _watch_slots(self, provider: str) -> None:
        """Poll the in-flight tasks of `provider` that nobody follows, each on its own clock
        (as `updates` would), until cancelled; snapshots go through the client's `get`."""
        schedules: dict[str, PollSchedule] = {}
        while True:
            budget = self._accounts.known_budget(provider)
            due, sleep = [], SLOT_RESCAN
            for record in self._tracker.records(provider):
                task_id = record.task.id
                if budget is None or task_id not in budget.in_flight:
                    continue
                if (provider, task_id) in self._followers:
                    continue  # its follower polls it
                schedule = schedules.setdefault(task_id, self._schedule(provider))
                delay = self._delay(record, schedule)
                if delay <= 0:
                    due.append(record)
                else:
                    sleep = min(sleep, delay)
            if due:
                await asyncio.gather(*(self._watch_poll(record) for record in due))
            else:
                await asyncio.sleep(sleep)

    async def _watch_poll(self, record: Followed) -> None:
        task = record.task
        try:
            new = await self._client.get(task)
        except Exception as exc:  # the watcher must go on: the task's follower will see it
            log.warning("slot watcher: poll of %s failed (%s); will poll again", task.id, exc)
            record.polled(task, time.monotonic())
            return
        if new.done and (task.provider, task.id) not in self._followers:
            self._ended[(task.provider, task.id)] = new

    async def aclose(self) -> None:
        """Stop the slot watchers (the client is closing)."""
        watchers = list(self._watchers.values())
        self._watchers.clear()
        for watcher in watchers:
            watcher.cancel()
        if watchers:
            await asyncio.wait(watchers)
