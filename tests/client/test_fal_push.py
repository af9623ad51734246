"""fal's completion pushed over each request's status stream, polling as the fallback.

Over real loopback HTTP against the sandbox's fal queue: a followed task is read from
``.../status/stream`` (no status poll at all while it is open), its result fetched the moment
``COMPLETED`` arrives; a refused, cut or silent stream hands the task to the poll schedule
without losing it; cancel and deadlines work while a task is streamed; the open streams are
capped and have connections of their own.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import genwidgets
import genwidgets._events
import genwidgets._transport
from genwidgets import AsyncClient, Status
from genwidgets.sandbox import Sandbox
from tests.conftest import requests_to

IMAGE = "fal:fal-ai/flux/dev"


@pytest.fixture
def fal_client(sandbox_client: Callable[..., AsyncClient]) -> Callable[..., AsyncClient]:
    """`sandbox_client` on fal's own poll schedule (0.5 s, backing off to 5 s): what the stream
    replaces."""
    return functools.partial(sandbox_client, poll_interval=None)


@pytest.fixture
async def client(fal_client: Callable[..., AsyncClient]) -> AsyncIterator[AsyncClient]:
    async with fal_client() as c:
        yield c


def fal_requests(sb: Any) -> dict[str, int]:
    return requests_to(sb, "fal")


async def streamed(sb: Any, connections: int = 1, within: float = 10.0) -> None:
    """Until the sandbox has answered `connections` status streams (fails after `within` s)."""
    ends = time.monotonic() + within
    while sb.stats()["sse_connections"] < connections:
        assert time.monotonic() < ends, f"{sb.stats()['sse_connections']} streams opened"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------ the happy path
async def test_done_within_a_tenth_of_a_second_with_one_stream_and_one_result(
    client: AsyncClient, sb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fal = client.provider("fal")
    parse, known = fal.parse_task_event, {}

    def timed(task: genwidgets.Task, *message: Any) -> genwidgets.Task | None:
        new = parse(task, *message)  # the adapter's own reading, timed (measurement only)
        if new is not None and new.done:
            known[task.id] = time.time()
        return new

    monkeypatch.setattr(fal, "parse_task_event", timed)
    await client.run(IMAGE, prompt="warm the renderer")
    lags, waits = [], []
    for i in range(5):  # one at a time: the sandbox renders each result file when asked
        done = await client.wait(await client.submit(IMAGE, prompt=f"quick {i}"), timeout=30)
        assert done.status is Status.SUCCEEDED and done.outputs
        finished = sb.finished_at("fal", done.id)
        assert finished is not None
        lags.append(known[done.id] - finished)  # the stream's news of the end
        waits.append(time.time() - finished)  # and the result GET (the sandbox renders it)
    assert statistics.median(lags) < 0.1 and max(lags) < 0.5, lags  # its stream ticks: none
    assert max(waits) < 1.0, waits
    requests = fal_requests(sb)
    requests.pop("files", None)  # run() downloaded the first one
    assert requests == {"submit": 6, "stream": 6, "result": 6}  # not one status poll


async def test_the_stream_brings_every_status_and_the_log(
    sb: Any, fal_client: Callable[..., AsyncClient]
) -> None:
    async with fal_client() as client:
        first = await client.submit(IMAGE, prompt="step by step [slow]")
        snapshots = [task async for task in client.updates(first)]
    statuses = [task.status for task in snapshots]
    assert statuses[0] is Status.QUEUED and statuses[-1] is Status.SUCCEEDED
    assert Status.RUNNING in statuses
    logs = [task.logs for task in snapshots if task.logs]
    # each event carries only its new lines; the snapshot keeps the whole log, in order
    assert logs[0] == ("step 1/10",) and any(len(lines) == 5 for lines in logs)
    assert snapshots[-1].logs == tuple(f"step {k}/10" for k in range(1, 11))
    assert snapshots[-1].usage is not None and snapshots[-1].usage["metrics"]["inference_time"]
    assert "status" not in fal_requests(sb)


# ------------------------------------------------------------------------------ how tasks end
async def test_a_failure_on_the_stream_is_read_from_the_result(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="please [fail]"), timeout=30)
    assert task.status is Status.FAILED and task.provider_status == "COMPLETED"
    assert "flagged by the content checker" in (task.error or "") and "422" in (task.error or "")
    assert fal_requests(sb) == {"submit": 1, "stream": 1, "result": 1}


async def test_a_cancellation_requested_while_streaming_ends_in_499(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.submit(IMAGE, prompt="long [slow]")
    waiting = asyncio.ensure_future(client.wait(task, timeout=30))
    await streamed(sb)
    await asyncio.sleep(0.3)  # out of the queue (0.1 s): running
    asked = await client.cancel(task)
    assert asked.provider_status == "CANCELLATION_REQUESTED"
    done = await waiting
    assert done.status is Status.CANCELLED and "client_cancelled" in (done.error or "")
    assert fal_requests(sb) == {"submit": 1, "stream": 1, "cancel": 1, "result": 1}


async def test_cancel_while_streaming_closes_the_stream(
    long_queue: Sandbox, fal_client: Callable[..., AsyncClient]
) -> None:
    async with fal_client(sandbox=long_queue) as client:
        task = await client.submit(IMAGE, prompt="never mind")
        waiting = asyncio.ensure_future(client.wait(task, timeout=30))
        await streamed(long_queue)
        started = time.monotonic()
        assert (await client.cancel(task)).status is Status.CANCELLED
        done = await waiting
        assert time.monotonic() - started < 1.0  # not the 5 s queue, nor a poll gap
        assert len(client._operations.task_streams) == 0
    assert done.status is Status.CANCELLED
    assert "status" not in fal_requests(long_queue)


async def test_a_deadline_cancels_a_streamed_task_and_closes_its_stream(
    long_queue: Sandbox, fal_client: Callable[..., AsyncClient]
) -> None:
    async with fal_client(sandbox=long_queue) as client:
        with pytest.raises(genwidgets.DeadlineExceeded):
            await client.run(IMAGE, prompt="too slow", timeout=0.5)
        assert len(client._operations.task_streams) == 0
    requests = fal_requests(long_queue)
    assert requests["stream"] == 1 and requests["cancel"] == 1 and "status" not in requests


async def test_a_wait_timeout_closes_the_stream_and_the_task_goes_on(
    long_queue: Sandbox, fal_client: Callable[..., AsyncClient]
) -> None:
    async with fal_client(sandbox=long_queue) as client:
        task = await client.submit(IMAGE, prompt="later")
        with pytest.raises(genwidgets.WaitTimeout):
            await client.wait(task, timeout=0.3)
        assert len(client._operations.task_streams) == 0
        assert (await client.get(task)).status is Status.QUEUED


# ------------------------------------------------------------------------------ fallbacks
async def test_a_refused_stream_falls_back_to_polling(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(stream_error_rate=1.0)
    task = await client.wait(await client.submit(IMAGE, prompt="no stream"), timeout=30)
    assert task.status is Status.SUCCEEDED and task.outputs
    requests = fal_requests(sb)
    assert requests["stream"] == 1 and requests["status"] >= 1  # refused once, never asked again
    assert sb.stats()["sse_connections"] == 0


async def test_a_cut_stream_is_opened_once_more_then_polled(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(stream_cut_after=1)  # each stream says IN_QUEUE, then drops
    task = await client.wait(await client.submit(IMAGE, prompt="cut short [slow]"), timeout=30)
    assert task.status is Status.SUCCEEDED and task.outputs
    requests = fal_requests(sb)
    assert requests["stream"] == 2 and requests["status"] >= 1 and requests["result"] == 1


async def test_a_stream_cut_once_carries_on_when_opened_again(
    client: AsyncClient, sb: Any
) -> None:
    sb.set_faults(stream_cut_after=1)
    task = await client.submit(IMAGE, prompt="cut once [slow]")
    waiting = asyncio.ensure_future(client.wait(task, timeout=30))
    await streamed(sb, 2)  # the second open: let it run whole
    sb.set_faults(stream_cut_after=None)
    assert (await waiting).status is Status.SUCCEEDED
    assert fal_requests(sb)["stream"] == 2


async def test_a_silent_stream_falls_back_to_polling(
    client: AsyncClient, sb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(genwidgets._events, "SILENT_AFTER", 0.3)
    sb.set_faults(stream_stall=True)  # one event, then nothing at all, the socket open
    started = time.monotonic()
    task = await client.wait(await client.submit(IMAGE, prompt="hush [slow]"), timeout=30)
    assert task.status is Status.SUCCEEDED and task.outputs
    requests = fal_requests(sb)
    assert requests["stream"] == 2 and requests["status"] >= 1
    assert time.monotonic() - started < 15


# ------------------------------------------------------------------------------ streams and pool
async def test_open_streams_are_capped_and_the_rest_polled(client: AsyncClient, sb: Any) -> None:
    client._operations.task_streams.limit = 2
    tasks = [await client.submit(IMAGE, prompt=f"many {i}") for i in range(5)]
    done = await asyncio.gather(*(client.wait(task, timeout=30) for task in tasks))
    assert all(task.status is Status.SUCCEEDED for task in done)
    requests = fal_requests(sb)
    assert requests["stream"] == 2 and requests["status"] >= 3


async def test_open_streams_never_take_the_connections_requests_need(
    long_queue: Sandbox, fal_client: Callable[..., AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool with room for 3 requests and 8 streams: 8 tasks streamed through their 5 s in the
    queue, and another submit and a poll still go at once."""
    monkeypatch.setattr(genwidgets._transport, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(genwidgets._transport, "MAX_TASK_STREAMS", 8)
    monkeypatch.setattr(genwidgets._events, "MAX_TASK_STREAMS", 8)
    async with fal_client(sandbox=long_queue, timeout=5.0) as client:
        first = [await client.submit(IMAGE, prompt=f"crowd {i}") for i in range(8)]
        waiting = [asyncio.ensure_future(client.wait(task, timeout=60)) for task in first]
        await streamed(long_queue, 8, within=3.0)
        started = time.monotonic()
        extra = await client.submit(IMAGE, prompt="still room")
        assert (await client.get(extra)).status is Status.QUEUED
        assert time.monotonic() - started < 1.0
        done = await asyncio.gather(*waiting)
    assert all(task.status is Status.SUCCEEDED for task in done)
    assert fal_requests(long_queue)["status"] == 1  # the extra task's; the 8 were streamed


async def test_a_task_streamed_to_its_end_teaches_its_true_duration(
    client: AsyncClient, sb: Any
) -> None:
    """Watched running up to the COMPLETED message, the task ran until then: the learned
    duration is the whole span, not the midpoint since its last log line (0.3 s before)."""
    task = await client.submit(IMAGE, prompt="measure me [slow]")
    submitted = time.time()
    done = await client.wait(task, timeout=30)
    finished = sb.finished_at("fal", task.id)
    assert done.status is Status.SUCCEEDED and finished is not None
    learned = client._tracker.estimate(done).samples[-1]
    assert finished - submitted - 0.03 <= learned <= finished - submitted + 0.3


async def test_a_stream_open_is_a_request_of_the_budget(
    sb: Any, fal_client: Callable[..., AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a fal budget (600/min, 2 in flight), each stream open spends one status request
    of the rate, and no more streams are open than tasks in flight."""
    limits = genwidgets.Limits(requests_per_minute=600, max_in_flight=2)
    async with fal_client(budgets={"fal": limits}) as client:
        budget = client.budget("fal")
        assert budget is not None
        spend, kinds, open_streams = budget.spend, [], []

        async def counted(kind: str | None = None, *args: Any) -> None:  # measurement only
            kinds.append(kind)
            open_streams.append(len(client._operations.task_streams))
            await spend(kind, *args)

        monkeypatch.setattr(budget, "spend", counted)
        prompts = [f"budgeted {i}" for i in range(4)]
        done = await asyncio.gather(*(client.run(IMAGE, prompt=p) for p in prompts))
    assert all(task.status is Status.SUCCEEDED for task in done)
    requests = fal_requests(sb)
    assert requests["stream"] == 4 and "status" not in requests
    assert sorted(k for k in kinds if k != "submit") == ["poll"] * 4 + ["result"] * 4
    assert max(open_streams) <= 2


async def test_followers_of_one_task_share_its_stream_and_its_result(
    client: AsyncClient, sb: Any
) -> None:
    """A card's `updates` and a `wait` on the same task: one stream, one result GET."""
    task = await client.submit(IMAGE, prompt="watched twice [slow]")

    async def card() -> list[genwidgets.Task]:
        return [snapshot async for snapshot in client.updates(task)]

    snapshots, waited = await asyncio.gather(card(), client.wait(task, timeout=30))
    assert waited.status is Status.SUCCEEDED and waited.outputs
    assert snapshots[-1].status is Status.SUCCEEDED and snapshots[-1].outputs
    assert snapshots[-1].logs == waited.logs and len(waited.logs) == 10
    assert fal_requests(sb) == {"submit": 1, "stream": 1, "result": 1}
