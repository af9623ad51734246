import itertools
import random

from genwidgets import (
    AuthError,
    InvalidParams,
    MalformedResponse,
    RateLimited,
    ServerError,
    Status,
    Task,
    TransportError,
)
from genwidgets._policy import PollSchedule, retry_decision, snapshot_changed


def test_poll_schedule_starts_fast_backs_off_to_cap_with_jitter() -> None:
    schedule = PollSchedule(first=0.5, cap=4.0, factor=2.0, jitter=0.1, rng=random.Random(1))
    delays = [schedule.next_delay() for _ in range(8)]
    assert 0.45 <= delays[0] <= 0.55
    assert all(b >= a * 0.8 for a, b in itertools.pairwise(delays))  # grows (modulo jitter)
    assert max(delays) <= 4.0 * 1.1 and delays[-1] >= 4.0 * 0.9  # reaches the cap, never beyond
    schedule.reset()
    assert schedule.next_delay() <= 0.55


def test_server_hint_wins_when_longer() -> None:
    schedule = PollSchedule(first=0.5, cap=4.0, jitter=0.0)
    assert schedule.next_delay(server_hint=30.0) == 30.0
    assert schedule.next_delay(server_hint=0.01) == 0.75


def test_retry_decision_retries_only_transient_errors() -> None:
    assert retry_decision(RateLimited("slow down", retry_after=7.0)) == 7.0
    assert retry_decision(RateLimited("slow down")) is True
    assert retry_decision(ServerError("boom")) is True
    assert retry_decision(TransportError("reset")) is True
    assert retry_decision(MalformedResponse("half a body")) is True
    assert retry_decision(AuthError("no")) is False
    assert retry_decision(InvalidParams("bad")) is False
    assert retry_decision(ValueError("bug")) is False


def test_snapshot_changed_ignores_snapshot_time() -> None:
    task = Task(id="t", provider="local", model="image", status=Status.QUEUED)
    assert not snapshot_changed(task, task.evolve())
    assert snapshot_changed(task, task.evolve(status=Status.RUNNING))
    assert snapshot_changed(task, task.evolve(progress=0.5))
