"""How a provider pushes task changes, if it does: the push half of the adapter interface.

Two shapes exist, and the client follows both without a special case for any provider:

- **one stream per provider** (Oxen's ``GET /api/events``): `has_events`, `build_events`,
  `parse_event` and `apply_event`; the client keeps one subscription and hands events out by id.
- **one stream per task** (fal's ``.../requests/{id}/status/stream``): `build_task_events` names
  the stream to open while a task is followed, `parse_task_event` turns one message into the
  task's next snapshot. The client polls whenever the stream is not open (refused, cut, silent),
  so a provider may offer it wherever it works and nothing is lost where it does not.

Like the rest of an adapter these are pure: they build `Request`s and read strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .._exceptions import NotSupported
from .._models import Task
from ._fields import appended
from ._wire import Event, Request, Response

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["PushHooks"]


class PushHooks:
    """The push hooks of `Provider` (its base class), all off by default: a provider is polled."""

    name: ClassVar[str]
    has_events: ClassVar[bool] = False  # one shared stream of events for every task

    # ------------------------------------------------------------------ one stream per provider
    def build_events(self) -> Request:
        raise NotSupported(f"{self.name} has no push events endpoint", provider=self.name)

    def parse_event(
        self, event: str, data: str, *, received_at: datetime | None = None
    ) -> Event | None:
        """Decode one SSE message; None for events that concern no task (keep-alives, others)."""
        return None

    def apply_event(self, task: Task, event: Event) -> Task:
        raise NotSupported(f"{self.name} has no push events endpoint", provider=self.name)

    # ------------------------------------------------------------------ one stream per task
    def build_task_events(self, task: Task) -> Request | None:
        """The SSE stream that reports `task`'s changes, to open while it is followed; None (the
        default): the task is polled only."""
        return None

    def parse_task_event(self, task: Task, event: str, data: str, at: datetime) -> Task | None:
        """The next snapshot of `task` from one message of its stream (`event` type, `data`,
        received `at`), or None for one that says nothing about it.

        By default a message's data is what a poll answers with 200 (fal's status records), read
        by `state_in` and `snapshot` as `parse_poll` reads an answer, except that its log lines
        are added to those known: a stream may send only the new ones (fal's does, as fal-js
        reads it); one that repeats the whole log is read right too (see `appended`)."""
        answer = Response(200, {"content-type": "application/json"}, data.encode(), received_at=at)
        record = self.state_in(answer, task)
        if record is None:
            return None
        new = self.snapshot(task.evolve(logs=()), record, at)
        return new.evolve(logs=appended(task.logs, new.logs))

    if TYPE_CHECKING:  # provided by `Provider`

        def state_in(
            self, response: Response, task: Task | None = None
        ) -> Mapping[str, Any] | None:
            raise NotImplementedError

        def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
            raise NotImplementedError
