"""The tasks a client follows, one record each, and how long each model's tasks take.

A record holds what following one task needs: its newest snapshot (so `cancel_all` can reach it),
its deadline, when this process submitted it, when it was last polled and when its status last
changed (the poll schedule is anchored to these, the task's own clock), and the last poll that
found it still running. Durations are learned from the provider's own creation and finish times
where its adapter reads them (`time_fields`), else from when this client saw the task finish
(without poll lag: between the last poll that found it running and the first that found it
done). Records end with their task.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._exceptions import GenError
from ._models import Status, Task
from ._policy import SCOUTS, DurationEstimate, duration_sample
from .providers import get_provider_class

__all__ = ["DeadlineSetting", "Followed", "Tracker"]

DeadlineSetting = float | Mapping[str, float | None] | None
#: Where the learned durations start from: (provider, model, how many) -> seconds, oldest first.
DurationSource = Callable[[str, str, int], list[float]]


@dataclass
class Followed:
    """One followed task. Times are `time.monotonic()` seconds; None: not known."""

    task: Task
    deadline: float | None = None
    deadline_seconds: float | None = None
    submitted_at: float | None = None  # its submit left; None: re-attached or resumed
    polled_at: float | None = None  # the last answer from the provider about it
    changed_at: float | None = None  # its status last changed (the backoff starts afresh)
    seen_running: float | None = None  # the last poll that found it not done yet
    seen_done: float | None = None  # the first poll that found it done
    first_poll: bool = True  # no poll answered since its submit yet
    first_aim: float | None = None  # the aim its first poll was timed for (s after the submit)
    unwatched: bool = False  # nobody polled it for a while: when it finished is not known

    def deadline_left(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline - now

    def expected_at(self, estimate: DurationEstimate, cap: float) -> float | None:
        """When to poll next, from when tasks of its model are done (the next aim after its
        last poll, at most `cap` s after it past the aims; None: not submitted here, or still
        learning)."""
        if self.submitted_at is None:
            return None
        polled_at = self.submitted_at if self.polled_at is None else self.polled_at
        aim = estimate.next_aim(polled_at - self.submitted_at, cap)
        return None if aim is None else self.submitted_at + aim

    def polled(self, task: Task, now: float, at: float | None = None) -> None:
        """A poll answered (or was tried): the schedule counts from now. `at`: when the
        provider looked (between sending and the answer; default now), which is what the
        durations learn from."""
        if self.changed_at is None or task.status != self.task.status:
            self.changed_at = now
        self.polled_at = now
        if self.submitted_at is None:
            return
        if not task.done:
            self.seen_running, self.unwatched = now if at is None else at, False
        elif self.seen_done is None:
            self.seen_done = now if at is None else at


class Tracker:
    """The records of the tasks one client follows, by (provider, task id)."""

    def __init__(self, default_deadline: DeadlineSetting, durations: DurationSource) -> None:
        self._records: dict[tuple[str, str], Followed] = {}
        self._default_deadline = default_deadline
        self._durations = durations
        self._estimates: dict[tuple[str, str], DurationEstimate] = {}
        self._ended: dict[tuple[str, str], asyncio.Event] = {}  # set when a task of a model ends
        self._in_flight: Counter[tuple[str, str]] = Counter()  # followed tasks per model

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, task: Task) -> Followed | None:
        return self._records.get((task.provider, task.id))

    def latest(self, task: Task) -> Task:
        """The newest snapshot of `task` this client saw (the task itself if not followed)."""
        record = self.get(task)
        return task if record is None else record.task

    def deadline(
        self, provider: str, deadline: float | timedelta | None
    ) -> tuple[float, float] | None:
        """(when it passes on `time.monotonic()`, its length in seconds) for a deadline starting
        now; `deadline` defaults to the client's `default_deadline`. None: no deadline."""
        seconds = deadline.total_seconds() if isinstance(deadline, timedelta) else deadline
        if seconds is None:
            default = self._default_deadline
            seconds = default.get(provider) if isinstance(default, Mapping) else default
        return None if seconds is None else (time.monotonic() + seconds, seconds)

    def follow(
        self,
        task: Task,
        deadline: tuple[float, float] | None,
        *,
        submitted: bool = False,
        sent_at: float | None = None,
    ) -> None:
        """Follow `task` until it ends (a task that already ended needs no following).

        `submitted` here: its polls are timed from its submit. Where its model's durations are
        the provider's own times, from `sent_at`, when the submit request left (the provider's
        clock starts about then; timed from the answer, a late answer pushed every poll later
        by as much). Where they are what this client saw, from now, the answer, as the samples
        are: measured on Veo's protocol (1,000 tasks, 4 alternating runs each) that aimed better
        than timing those from the request too (lag 2.29 vs 2.51 s)."""
        if task.done:
            return
        now = time.monotonic()
        record = Followed(task)
        if submitted:
            record.submitted_at = record.polled_at = record.changed_at = now
            if sent_at is not None and self.estimate(task).exact:
                record.submitted_at = min(sent_at, now)
        if deadline is not None:
            record.deadline, record.deadline_seconds = deadline
        key = (task.provider, task.id)
        if key not in self._records:
            self._in_flight[task.provider, task.model] += 1
        self._records[key] = record

    def polled(self, task: Task, now: float, sent: float | None = None) -> None:
        """A poll of a followed task (`sent` then) answered: its schedule counts from `now`.
        A task's first poll after its submit steers its model's first aim (`steer`)."""
        record = self.get(task)
        if record is None:
            return
        if record.first_poll and record.submitted_at is not None:
            record.first_poll = False
            if record.first_aim is not None:
                elapsed = (now if sent is None else sent) - record.submitted_at
                self.estimate(task).steer(elapsed, record.first_aim, task.done)
        record.polled(task, now, None if sent is None else (sent + now) / 2)

    def seen(self, task: Task) -> Followed | None:
        """Keep the newest snapshot; a task that ended is no longer followed (its record is
        returned one last time, to learn from)."""
        key = (task.provider, task.id)
        record = self._records.get(key)
        if record is not None:
            record.task = task
            if task.done:
                del self._records[key]
                self._in_flight[task.provider, task.model] -= 1
                self._learn(record)
                ended = self._ended.pop((task.provider, task.model), None)
                if ended is not None:
                    ended.set()
        return record

    def records(self, provider: str) -> list[Followed]:
        """The records of `provider`'s followed tasks (a copy: polls may end some)."""
        return [r for (name, _), r in self._records.items() if name == provider]

    def live(self) -> list[Task]:
        """Newest snapshots of the followed tasks that have not ended."""
        return [r.task for r in self._records.values() if not r.task.done]

    def cold(self, record: Followed) -> tuple[int, int] | None:
        """While its model's durations are unknown: (its place by submit among the tasks of that
        model in flight submitted here, how many there are, counted up to `SCOUTS` + 1; see
        `_policy.cold_gap`). None: learned, or not submitted here."""
        task = record.task
        if record.submitted_at is None or self.estimate(task).learned:
            return None
        rank, count = None, 0
        for other in self._records.values():  # in submit order; stops early
            if other.submitted_at is None or other.task.model != task.model:
                continue
            if other.task.provider != task.provider:
                continue
            if other is record:
                rank = count
            elif rank is None and count >= SCOUTS:
                return SCOUTS, SCOUTS + 1  # SCOUTS older ones are in flight: it waits for them
            count += 1
            if rank is not None and count > SCOUTS:
                break
        return (count if rank is None else rank), count

    def few(self, task: Task) -> bool:
        """Whether few tasks of `task`'s model are followed (at most `SCOUTS`): a notebook's
        cards, whose progress bars are worth the backoff's polls too; a batch's tasks poll at
        the aims alone, progress or not."""
        return self._in_flight[task.provider, task.model] <= SCOUTS

    def ended(self, task: Task) -> asyncio.Event:
        """Set when the next task of `task`'s model ends (a scout that may teach its duration)."""
        return self._ended.setdefault((task.provider, task.model), asyncio.Event())

    def estimate(self, task: Task) -> DurationEstimate:
        """How long tasks of this model take: learned in this process, seeded from the journal
        (so a notebook re-run tomorrow times its first polls from today's runs)."""
        key = (task.provider, task.model)
        estimate = self._estimates.get(key)
        if estimate is None:
            estimate = DurationEstimate(exact=reports_finish(task.provider))
            self._estimates[key] = estimate
            for seconds in self._durations(task.provider, task.model, estimate.window):
                estimate.observe(seconds)
        return estimate

    def _learn(self, record: Followed) -> None:
        task = record.task
        if task.status is not Status.SUCCEEDED:
            return
        estimate = self.estimate(task)
        reported, resolution = None, 0.0
        if estimate.exact and task.created_at is not None and task.finished_at is not None:
            reported = (task.finished_at - task.created_at).total_seconds()
            resolution = 1.0 if _whole(task.created_at) and _whole(task.finished_at) else 0.0
        seen = None  # when this client saw it finish, unless it may have finished long before
        if record.submitted_at is not None and not record.unwatched:
            running = record.seen_running
            done = time.monotonic() if record.seen_done is None else record.seen_done
            seen = (
                0.0 if running is None else running - record.submitted_at,
                done - record.submitted_at,
            )
        sample = duration_sample(reported, resolution, seen)
        if sample is not None:
            estimate.observe(sample)


def reports_finish(provider: str) -> bool:
    """Whether the provider's adapter reads a finish time from the provider (`time_fields`),
    so a finished task's `finished_at - created_at` is a true duration."""
    try:
        cls = get_provider_class(provider)
    except GenError:  # unknown or broken: learn from what is seen
        return False
    return cls.time_fields[0] is not None and cls.time_fields[2] is not None


def _whole(at: datetime) -> bool:
    """A time stamped in whole seconds (Unix seconds, or text without a fraction)."""
    return at.microsecond == 0
