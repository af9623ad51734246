"""A card's state: one small immutable value, and the pure transitions between its values.

The card (`_card.StatusCard`) holds one `CardState`; every event (a snapshot from the client, an
error, a wait notice, a retry, a cancel request, the media being ready) makes a new value through
a function here, and the view renders the value in one place (`_render.card_html`). Nothing here
imports ipywidgets or does IO, so the lifecycle is tested with plain values.

Time is the caller's `time.monotonic()`: one start per attempt and one end, so the elapsed time
only grows while the card is live and stays put once it ends (a server's clock never moves it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .._models import Output, Status, Task
from ._preview import MediaPreview

__all__ = ["LIVE_STATES", "TERMINAL_STATES", "CardState", "WaitInfo", "wait_info"]

#: Card phases: the task statuses, plus "submitting" (no task yet), "waiting" (the submit waits
#: locally for the account's budget) and "error" (the client raised: the submit was refused or
#: tracking was lost; the error text says which).
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "expired", "error"})
LIVE_STATES = frozenset({"submitting", "waiting", "queued", "running"})

#: How far back a task's server-side creation time may lie to be trusted for a resumed card.
_MAX_AGE = 7 * 86400.0


@dataclass(frozen=True)
class WaitInfo:
    """Why a submit waits, and when it expects to go on (a `time.monotonic()` value, if known)."""

    message: str
    until: float | None = None
    at: datetime | None = None  # the same moment on the wall clock, for the card to show


def wait_info(notice: Any, now: float, wall: datetime | None = None) -> WaitInfo:
    """Read the client's `on_wait` notice: a plain message, or an object with a `message` (or
    `reason`) and an expected time (`until`/`expected_at`/`resume_at` as a datetime, or
    `seconds`/`expected_in`/`retry_after` as seconds from now)."""
    if isinstance(notice, str):
        return WaitInfo(notice)
    message = getattr(notice, "message", None) or getattr(notice, "reason", None) or str(notice)
    wall = wall or datetime.now(timezone.utc)
    seconds: float | None = None
    for name in ("until", "expected_at", "resume_at"):
        when = getattr(notice, name, None)
        if isinstance(when, datetime):
            aware = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            seconds = max(0.0, (aware - wall).total_seconds())
            break
    for name in ("seconds", "expected_in", "retry_after", "eta"):
        value = getattr(notice, name, None)
        if seconds is None and isinstance(value, (int, float)) and value >= 0:
            seconds = float(value)
    if seconds is None:
        return WaitInfo(str(message))
    return WaitInfo(str(message), now + seconds, wall + timedelta(seconds=seconds))


@dataclass(frozen=True)
class CardState:
    """What one card shows. `started`/`ended` are monotonic times of the current attempt."""

    phase: str
    name: str | None = None
    prompt: str | None = None
    task: Task | None = None
    error: str | None = None
    wait: WaitInfo | None = None
    note: str | None = None
    cancel_requested: bool = False
    downloading: bool = False
    previews: tuple[MediaPreview, ...] = ()
    request: tuple[tuple[str, Any], ...] = ()  # the parameters asked for, before a task exists
    started: float = 0.0
    ended: float | None = None

    # ------------------------------------------------------------------ reading
    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_STATES

    @property
    def live(self) -> bool:
        return self.phase in LIVE_STATES

    @property
    def status(self) -> Status | str:
        """The task's `Status` once there is a task, else the phase ('submitting', ...)."""
        if self.task is not None and self.phase not in ("error",):
            return self.task.status
        return self.phase

    @property
    def outputs(self) -> tuple[Output, ...]:
        return self.task.outputs if self.task is not None else ()

    def elapsed(self, now: float) -> float:
        """Seconds since the attempt started; frozen once it ended. Never decreases."""
        return max(0.0, (self.ended if self.ended is not None else now) - self.started)

    # ------------------------------------------------------------------ transitions
    @classmethod
    def submitting(
        cls,
        name: str | None,
        prompt: str | None,
        now: float,
        params: Mapping[str, Any] | None = None,
    ) -> CardState:
        request = tuple(sorted((params or {}).items()))
        return cls(phase="submitting", name=name, prompt=prompt, request=request, started=now)

    @classmethod
    def following(cls, task: Task, now: float, wall: datetime | None = None) -> CardState:
        """A card for a task submitted elsewhere (resume, `%gen`): its age counts once, from
        the task's creation time when that is plausible."""
        started = now
        if task.created_at is not None:
            age = ((wall or datetime.now(timezone.utc)) - task.created_at).total_seconds()
            if 0 <= age < _MAX_AGE:
                started = now - age
        return cls(phase="submitting", name=task.name, prompt=task.prompt, started=started)

    def snapshot(self, task: Task, now: float) -> CardState:
        """Apply one snapshot. A late poll after the end (a cancel landed first) is ignored; a
        different task replaces the previous result."""
        current = self.task
        changes: dict[str, Any] = {}
        if current is not None and (current.provider, current.id) == (task.provider, task.id):
            if current.done and not task.done:
                return self
        elif current is not None:
            changes.update(previews=(), error=None, note=None, ended=None)
        changes.update(task=task, name=task.name, phase=task.status.value, wait=None)
        if task.prompt is not None:
            changes["prompt"] = task.prompt
        state = dataclasses.replace(self, **changes)
        if task.done:
            state = state.end(now)
        return state

    def waiting(self, info: WaitInfo) -> CardState:
        """The client holds the submit for a slot (ignored once a task exists)."""
        if self.task is not None or self.terminal:
            return self
        return dataclasses.replace(self, phase="waiting", wait=info)

    def failed(self, error: str, now: float) -> CardState:
        """The client raised. A task that already ended keeps its status (a download error)."""
        if self.task is not None and self.task.done:
            return dataclasses.replace(self, error=error, downloading=False)
        return dataclasses.replace(self, phase="error", error=error, downloading=False).end(now)

    def withdrawn(self, now: float) -> CardState:
        """Cancelled while waiting for a slot: nothing was sent."""
        note = "withdrawn while waiting for a slot: nothing was sent"
        return dataclasses.replace(
            self, phase="cancelled", wait=None, note=note, cancel_requested=False
        ).end(now)

    def cancel_asked(self) -> CardState:
        return self if self.terminal else dataclasses.replace(self, cancel_requested=True)

    def cancel_done(self, error: str | None = None) -> CardState:
        return dataclasses.replace(self, cancel_requested=False, error=error or self.error)

    def retried(self, now: float) -> CardState:
        """A new attempt with the same request: a fresh start, nothing of the last result."""
        return CardState.submitting(self.name, self.prompt, now, dict(self.request))

    def fetching(self) -> CardState:
        return dataclasses.replace(self, downloading=True)

    def shown(self, task: Task, previews: tuple[MediaPreview, ...]) -> CardState:
        """The files are downloaded and prepared."""
        return dataclasses.replace(self, task=task, previews=previews, downloading=False)

    def end(self, now: float) -> CardState:
        if self.ended is not None:
            return self
        return dataclasses.replace(self, ended=max(now, self.started), cancel_requested=False)
