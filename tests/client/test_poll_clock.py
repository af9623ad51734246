"""Polls run on the task's own clock, and a provider's budget charges what the provider counts.

Real HTTP to the sandbox (tasks there are done 0.4 s after their submit), with the adapters' own
poll intervals (OneRouter's and Segmind's first poll comes 2 s after the submit), not the fast
ones the other client tests use.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, Status
from tests.conftest import KEYS

#: Queue plus run time of a task in the session sandbox (conftest), in seconds.
SERVER_SECONDS = 0.4


def make(sb: Any, tmp_path: Path, **options: Any) -> AsyncClient:
    return AsyncClient(
        api_keys={**KEYS, "replicate": "r8_sandbox-key"},
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=False,
        **options,
    )


async def test_waiting_on_tasks_that_finished_meanwhile_returns_at_once(
    sb: Any, tmp_path: Path
) -> None:
    async with make(sb, tmp_path, budgets=False) as client:
        model = "onerouter:acme/text-to-image"
        tasks = [await client.submit(model, prompt=f"p{i}") for i in range(3)]
        time.sleep(1.0)  # all three finish at the server while nobody waits (nor polls)
        started = time.monotonic()
        for task in tasks:  # a cell that waits on each in turn
            assert (await client.wait(task)).status is Status.SUCCEEDED
        waited = time.monotonic() - started
    # Overdue: polled at once. (Timed from the start of each wait, they cost 2 s each: 6 s.)
    assert waited < 1.5, f"{waited:.2f} s to learn that three finished tasks are done"


async def test_tasks_nobody_watched_do_not_teach_durations(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path, budgets=False, poll_interval=(0.2, 1.0)) as client:
        model = "segmind:seedream-4.5"
        idle = [await client.submit(model, prompt=f"idle {i}") for i in range(3)]
        time.sleep(2.0)  # done at 0.4 s; known done only at 2 s: that says nothing about 0.4 s
        for task in idle:
            await client.wait(task)
        watched = await client.submit(model, prompt="watched")
        started = time.monotonic()
        await client.wait(watched)
        took = time.monotonic() - started
    # Learning "2 s" from the idle ones would hold its first poll back to 0.9 * 2 s.
    assert took < 1.3, f"{took:.2f} s for a {SERVER_SECONDS} s task"


async def test_segmind_polls_do_not_spend_its_generation_limit(
    sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENWIDGETS_BUDGETS")  # the default budget: Segmind Free, 5 requests/min
    monkeypatch.delenv("GENWIDGETS_SEGMIND_RPM", raising=False)
    notices: list[str] = []
    async with make(sb, tmp_path) as client:
        first = await client.submit("segmind:seedream-4.5", prompt="one")
        second = await client.submit("segmind:seedream-4.5", prompt="two", on_wait=notices.append)
        submitted = time.monotonic()  # ~12 s later: the limit spaces generation requests
        (notice,) = notices
        assert re.fullmatch(
            r"waiting for segmind's rate limit \(5 requests/min\): next request in ~1[0-3] s",
            notice,
        )
        started = time.monotonic()
        assert (await client.wait(first)).status is Status.SUCCEEDED
        late_first = time.monotonic() - started  # it finished long before anyone waited
        assert (await client.wait(second)).status is Status.SUCCEEDED
        late_second = time.monotonic() - (submitted + SERVER_SECONDS)
        assert client.budget("segmind") is not None
    # Were polls charged to the 5/min bucket, each would wait ~12 s for a token.
    assert late_first < 1.0, f"known done {late_first:.1f} s after the wait began"
    assert late_second < 4.0, f"known done {late_second:.1f} s after the server finished"


async def test_the_providers_own_times_teach_durations_nobody_watched(
    sb: Any, tmp_path: Path
) -> None:
    # Replicate dates its predictions (created_at, completed_at, with fractions of a second).
    async with make(sb, tmp_path, budgets=False) as client:
        model = "replicate:acme/bench-image"  # not catalogued: no Prefer: wait, create + poll
        idle = [await client.submit(model, prompt=f"idle {i}") for i in range(3)]
        time.sleep(2.0)  # done at 0.4 s, first seen done at 2 s: only the provider knows when
        for task in idle:
            await client.wait(task)
        watched = await client.submit(model, prompt="watched")
        started = time.monotonic()
        await client.wait(watched)
        took = time.monotonic() - started
    # Its first poll aims where the idle ones finished (~0.4 s); learning nothing from them
    # leaves it to Replicate's first poll interval (1 s).
    assert took < 0.95, f"{took:.2f} s for a {SERVER_SECONDS} s task"


async def test_a_batch_of_a_new_model_waits_for_its_scouts(sb: Any, tmp_path: Path) -> None:
    n = 12
    async with make(sb, tmp_path, budgets=False, poll_interval=(0.05, 0.3)) as client:
        model = "onerouter:acme/scouted"  # nothing learned about it yet (no journal)
        before = sb.stats()["requests"].get("onerouter", {}).get("poll", 0)
        tasks = [await client.submit(model, prompt=f"s{i}") for i in range(n)]
        started = time.monotonic()
        finals = await asyncio.gather(*(client.wait(task) for task in tasks))
        took = time.monotonic() - started
        polls = sb.stats()["requests"]["onerouter"]["poll"] - before
    assert all(t.status is Status.SUCCEEDED for t in finals)
    # The backoff from 0.05 s costs each 0.4 s task ~5 polls; the three oldest poll (on the
    # backoff, never slower) until they teach the duration, the rest wait for them, then poll
    # about once.
    assert polls <= 3.5 * n, polls  # without scouts: 60-69 here
    assert took < 3.0, f"{took:.2f} s for {n} tasks of {SERVER_SECONDS} s"


async def test_polls_are_timed_from_when_the_submit_left_not_from_its_answer(
    sb: Any, tmp_path: Path
) -> None:
    """The provider's clock for a task starts when it gets the submit; an answer that comes back
    late (a slow network, a `Prefer: wait` create held for seconds) must not push every poll of
    the task, and every duration learned from it, later by as much."""
    async with make(sb, tmp_path, budgets=False) as client:
        sb.set_faults(latency=0.5)  # every answer comes 0.5 s after its request
        before = time.monotonic()
        task = await client.submit("onerouter:acme/text-to-image", prompt="a late answer")
        answered = time.monotonic()
        record = client._tracker.get(task)
        assert record is not None and record.submitted_at is not None
        assert before <= record.submitted_at <= answered - 0.45
        sb.set_faults(latency=0.0)
        assert (await client.wait(task)).status is Status.SUCCEEDED
