"""The card's state as a plain value: pure transitions, tested without ipywidgets."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from genwidgets import Output, Status, Task
from genwidgets.widgets._state import CardState, WaitInfo, wait_info

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def task(status: Status = Status.QUEUED, task_id: str = "t-1", **changes: object) -> Task:
    base = Task(
        id=task_id,
        provider="fake",
        model="image",
        status=Status.QUEUED,
        params={"prompt": "a rose", "seed": 3},
        created_at=T0,
    )
    return base.model_copy(update={"status": status, **changes})


def test_values_are_immutable() -> None:
    state = CardState.submitting("fake:image", "a rose", now=10.0)
    with pytest.raises(FrozenInstanceError):
        state.phase = "running"  # type: ignore[misc]


def test_lifecycle_from_submit_to_success() -> None:
    state = CardState.submitting("fake:image", "a rose", now=10.0)
    assert (state.phase, state.live, state.terminal, state.status) == (
        "submitting",
        True,
        False,
        "submitting",
    )
    queued = state.snapshot(task(queue_position=2), now=11.0)
    assert queued.phase == "queued" and queued.status is Status.QUEUED
    assert queued.task is not None and queued.task.queue_position == 2
    running = queued.snapshot(task(Status.RUNNING, progress=0.5), now=12.0)
    done = running.snapshot(
        task(Status.SUCCEEDED, outputs=(Output(kind="image", url="u"),)), now=14.0
    )
    assert done.terminal and not done.live and done.ended == 14.0
    assert done.outputs == (Output(kind="image", url="u"),)
    assert state.phase == "submitting"  # the old values are untouched


def test_the_elapsed_time_never_goes_back() -> None:
    """One monotonic start per attempt: a submit does not reset it, the end freezes it, and a
    server clock (the task's own timestamps) never moves it."""
    state = CardState.submitting("fake:image", None, now=100.0)
    assert state.elapsed(103.0) == 3.0
    queued = state.snapshot(task(), now=104.0)
    assert queued.elapsed(105.0) == 5.0  # not reset when the task id arrives
    finished = queued.snapshot(
        task(Status.SUCCEEDED, finished_at=T0 + timedelta(seconds=1)), now=107.0
    )
    assert finished.elapsed(107.0) == 7.0 and finished.elapsed(500.0) == 7.0
    seen = [queued.elapsed(t) for t in (104.0, 105.0, 106.0)] + [finished.elapsed(108.0)]
    assert seen == sorted(seen)


def test_a_followed_task_counts_its_age_once() -> None:
    state = CardState.following(task(), now=50.0, wall=T0 + timedelta(seconds=30))
    assert state.elapsed(50.0) == 30.0
    skewed = CardState.following(task(), now=50.0, wall=T0 - timedelta(seconds=30))
    assert skewed.elapsed(50.0) == 0.0  # a server clock ahead of ours is not trusted


def test_a_late_poll_after_the_end_is_ignored() -> None:
    cancelled = CardState.submitting("fake:image", None, 0.0).snapshot(
        task(Status.CANCELLED), now=1.0
    )
    assert cancelled.snapshot(task(Status.RUNNING, progress=0.5), now=2.0) is cancelled


def test_another_task_replaces_the_previous_result() -> None:
    first = CardState.submitting("fake:image", None, 0.0).snapshot(task(Status.FAILED), 1.0)
    first = first.failed("DownloadError: gone", 1.5)
    second = first.snapshot(task(Status.QUEUED, task_id="t-2"), now=2.0)
    assert second.phase == "queued" and second.error is None and second.ended is None


def test_waiting_then_submitted_then_withdrawn() -> None:
    state = CardState.submitting("fake:image", None, 0.0)
    waiting = state.waiting(WaitInfo("waiting for a slot: 1 of 1 in flight"))
    assert waiting.phase == "waiting" and waiting.live
    assert waiting.wait is not None and "slot" in waiting.wait.message
    withdrawn = waiting.withdrawn(now=3.0)
    assert withdrawn.phase == "cancelled" and withdrawn.terminal
    assert "nothing was sent" in (withdrawn.note or "")
    running = waiting.snapshot(task(Status.RUNNING), now=1.0)
    assert running.wait is None
    assert running.waiting(WaitInfo("late notice")) is running  # a task exists: ignored


def test_errors_keep_a_finished_status() -> None:
    state = CardState.submitting("fake:image", None, 0.0)
    refused = state.failed("InvalidParams: no prompt", now=1.0)
    assert refused.phase == "error" and refused.terminal and refused.ended == 1.0
    succeeded = state.snapshot(task(Status.SUCCEEDED), now=2.0).fetching()
    broken = succeeded.failed("DownloadError: URL expired", now=3.0)
    assert broken.phase == "succeeded" and broken.error == "DownloadError: URL expired"
    assert not broken.downloading


def test_cancel_requested_then_answered() -> None:
    running = CardState.submitting("fake:image", None, 0.0).snapshot(task(Status.RUNNING), 1.0)
    asked = running.cancel_asked()
    assert asked.cancel_requested and not running.cancel_requested
    assert asked.cancel_done().cancel_requested is False
    ended = asked.snapshot(task(Status.CANCELLED), now=2.0)
    assert ended.cancel_requested is False and ended.cancel_asked() is ended


def test_retry_is_a_fresh_attempt() -> None:
    failed = CardState.submitting("fake:image", "a rose", 0.0).snapshot(task(Status.FAILED), 5.0)
    again = failed.retried(now=9.0)
    assert again.phase == "submitting" and again.task is None and again.error is None
    assert again.name == "fake:image" and again.prompt == "a rose"
    assert again.elapsed(10.0) == 1.0


def test_wait_notices_plain_and_structured() -> None:
    assert wait_info("waiting for a slot", now=5.0) == WaitInfo("waiting for a slot")
    wall = T0
    by_seconds = wait_info(SimpleNamespace(message="rate limit", seconds=12.0), 5.0, wall)
    assert by_seconds.until == 17.0 and by_seconds.at == wall + timedelta(seconds=12)
    by_time = wait_info(
        SimpleNamespace(reason="budget", until=wall + timedelta(seconds=30)), 5.0, wall
    )
    assert by_time.message == "budget" and by_time.until == 35.0
