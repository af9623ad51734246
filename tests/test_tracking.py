"""What the tracker learns from a followed task's polls: which polls steer a model's first aim,
and what a finished task teaches about durations (no HTTP: the tracker's own bookkeeping)."""

from __future__ import annotations

import time

import pytest

from genwidgets import Status, Task
from genwidgets._policy import FIRST_DONE, STEER
from genwidgets._tracking import Tracker

#: OpenRouter's videos carry no finish time: its durations are what the client saw.
PROVIDER, MODEL = "openrouter", "google/veo-3.1"


def tracker(seconds: float = 10.0) -> Tracker:
    """A tracker whose journal says this model's tasks took `seconds` (25 of them)."""
    return Tracker(None, lambda provider, model, limit: [seconds] * 25)


def task(status: Status = Status.RUNNING, tid: str = "t1") -> Task:
    return Task(id=tid, provider=PROVIDER, model=MODEL, status=status)


def submitted(track: Tracker, tid: str, ago: float, aim: float | None) -> None:
    """Follow a task submitted `ago` s ago whose first poll was timed for `aim`."""
    track.follow(task(tid=tid), None, submitted=True)
    record = track.get(task(tid=tid))
    assert record is not None
    record.submitted_at = record.polled_at = record.changed_at = time.monotonic() - ago
    record.first_aim = aim


def test_a_first_poll_sent_at_its_aim_steers_the_first_aim() -> None:
    track = tracker()
    estimate = track.estimate(task())
    first = estimate.expected()
    assert first == pytest.approx(10.0)
    submitted(track, "t1", ago=10.0, aim=10.0)
    now = time.monotonic()
    track.polled(task(Status.SUCCEEDED, "t1"), now, sent=now)  # done at its aim: earlier
    assert estimate.expected() == pytest.approx(10.0 * (1 - STEER * (1 - FIRST_DONE)))


def test_only_the_first_poll_steers_and_only_when_it_was_timed_for_an_aim() -> None:
    track = tracker()
    estimate = track.estimate(task())
    submitted(track, "late", ago=30.0, aim=10.0)  # released 20 s after its aim
    submitted(track, "cold", ago=10.0, aim=None)  # timed by the backoff, not by an aim
    submitted(track, "twice", ago=10.0, aim=10.0)
    now = time.monotonic()
    track.polled(task(Status.SUCCEEDED, "late"), now, sent=now)
    track.polled(task(Status.SUCCEEDED, "cold"), now, sent=now)
    assert estimate.expected() == pytest.approx(10.0)
    track.polled(task(Status.RUNNING, "twice"), now, sent=now)  # running at its aim: later...
    assert estimate.expected() == pytest.approx(10.0)  # ... but the samples bound it (10 s)
    track.polled(task(Status.SUCCEEDED, "twice"), now, sent=now)  # a second poll: no steer
    assert estimate.expected() == pytest.approx(10.0)


def test_a_finished_task_teaches_when_the_provider_looked() -> None:
    track = tracker()
    submitted(track, "t1", ago=10.0, aim=10.0)
    record = track.get(task(tid="t1"))
    assert record is not None
    base = record.submitted_at
    assert base is not None
    track.polled(task(Status.RUNNING, "t1"), base + 9.0, sent=base + 8.0)  # looked at 8.5 s
    track.polled(task(Status.SUCCEEDED, "t1"), base + 12.0, sent=base + 10.0)  # ... at 11 s
    track.seen(task(Status.SUCCEEDED, "t1"))
    # Between the last look that found it running and the first that found it done: the
    # midpoint of 8.5 and 11 s, not of the answers' arrival (9 and 12 s) nor "learned now".
    assert track.estimate(task()).samples[-1] == pytest.approx(9.75)


def test_few_tasks_of_a_model_are_a_notebooks_cards_many_a_batch() -> None:
    """`few` decides whether a task that reports progress also polls on the backoff (its card's
    progress bar moves) or at the aims alone (a batch)."""
    track = tracker()
    for i in range(5):
        submitted(track, f"t{i}", ago=1.0, aim=None)
    assert not track.few(task(tid="t0"))  # five of its model: a batch
    for i in range(1, 5):  # the others end: three or fewer left
        track.seen(task(Status.SUCCEEDED, f"t{i}"))
        assert track.few(task(tid="t0")) is (i >= 2)
    submitted(track, "t0", ago=1.0, aim=None)  # followed again: counted once
    assert track.few(task(tid="t0"))


@pytest.mark.parametrize(
    ("provider", "model", "from_request"),
    [("onerouter", "bytedance/seedance", True), (PROVIDER, MODEL, False)],
)
def test_a_submit_is_timed_from_its_request_where_durations_are_the_providers(
    provider: str, model: str, from_request: bool
) -> None:
    """OneRouter reports finish times (its durations run on its clock, which starts at the
    request); OpenRouter's videos do not (durations, and so aims, count from the answer)."""
    track = tracker()
    sent = time.monotonic() - 2.0  # the answer took 2 s
    new = Task(id="t1", provider=provider, model=model, status=Status.RUNNING)
    track.follow(new, None, submitted=True, sent_at=sent)
    record = track.get(new)
    assert record is not None and record.submitted_at is not None
    assert (record.submitted_at == sent) is from_request
    assert record.submitted_at >= sent
