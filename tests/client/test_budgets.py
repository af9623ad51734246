"""Budgets in the client, over real HTTP to the sandbox: slots, waiting, learned poll timing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, AuthError, Status
from tests.conftest import KEYS


def _client(sb: Any, tmp_path: Path, budgets: Any, **options: Any) -> AsyncClient:
    return AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.05, 0.3),
        retry_timeout=20.0,
        budgets=budgets,
        **options,
    )


async def test_submits_over_the_in_flight_cap_wait_for_a_slot(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, {"rixapi": (None, 2)}) as client:
        notices: list[str] = []

        async def one(i: int) -> Any:
            task = await client.submit(
                "rixapi:kling-v3/text-to-video", prompt=f"boat {i}", on_wait=notices.append
            )
            return await client.wait(task)

        budget = client.budget("rixapi")
        assert budget is not None
        jobs = [asyncio.ensure_future(one(i)) for i in range(5)]
        peak = 0
        while not all(job.done() for job in jobs):
            peak = max(peak, len(budget.in_flight) + budget.reserved)
            await asyncio.sleep(0.01)
        finals = [job.result() for job in jobs]
    assert all(t.status is Status.SUCCEEDED for t in finals)
    assert peak == 2
    assert len(notices) == 3 and "2 of 2 rixapi tasks in flight" in notices[0]
    assert budget.in_flight == set() and budget.reserved == 0
    assert sum(sb.stats()["submits"].values()) == 5


async def test_a_refused_submit_frees_its_slot(sb: Any, tmp_path: Path) -> None:
    keys = {**KEYS, "rixapi": "bad-key"}
    async with AsyncClient(
        api_keys=keys, base_urls=sb.urls, cache_dir=tmp_path, budgets={"rixapi": (None, 1)}
    ) as client:
        for _ in range(2):  # with the slot leaked, the second would wait forever
            with pytest.raises(AuthError):
                await asyncio.wait_for(
                    client.submit("rixapi:kling-v3/text-to-video", prompt="x"), 5
                )
        budget = client.budget("rixapi")
        assert budget is not None and budget.reserved == 0 and not budget.in_flight


async def test_deadline_on_a_task_that_cannot_be_cancelled_frees_its_slot(
    sb: Any, tmp_path: Path
) -> None:
    from genwidgets import DeadlineExceeded

    async with _client(sb, tmp_path, {"rixapi": (None, 1)}) as client:
        task = await client.submit(
            "rixapi:kling-v3/text-to-video", prompt="boat [slow]", deadline=0.3
        )
        with pytest.raises(DeadlineExceeded):
            await client.wait(task)
        second = await asyncio.wait_for(
            client.submit("rixapi:kling-v3/text-to-video", prompt="next"), 5
        )
        assert (await client.wait(second)).status is Status.SUCCEEDED


async def test_first_polls_learn_when_a_model_is_usually_done(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, False) as client:

        async def polls_for(n: int) -> int:
            before = sb.stats()["requests"].get("rixapi", {}).get("poll", 0)
            for i in range(n):
                task = await client.submit("rixapi:kling-v3/text-to-video", prompt=f"b{i}")
                assert (await client.wait(task)).status is Status.SUCCEEDED
            return sb.stats()["requests"]["rixapi"]["poll"] - before

        learning = await polls_for(4)
        learned = await polls_for(4)
    # Fast polls from 0.05 s take ~6 per 0.4 s task; once learned, ~1-2 (one early, one after).
    assert learned <= learning / 2, (learning, learned)


async def test_local_tasks_spend_no_budget(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, None) as client:
        task = await client.run("local:image", prompt="a rose")
        assert task.status is Status.SUCCEEDED
        assert client.budget("local") is None


async def test_budgets_on_by_default_are_shared_by_clients_on_a_loop(
    sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENWIDGETS_BUDGETS")
    async with _client(sb, tmp_path / "a", None) as first, _client(sb, tmp_path / "b", None) as two:
        one = first.budget("onerouter")
        assert one is not None and one.limits.max_in_flight == 30
        assert two.budget("onerouter") is one  # same key, same account, same loop
        task = await first.submit("onerouter:bytedance/seedance", prompt="a kitten")
        assert task.id in one.in_flight
        await first.wait(task)
        assert task.id not in one.in_flight


async def _grid(client: AsyncClient, n: int, extra: str = "") -> list[Any]:
    async def one(i: int) -> Any:
        task = await client.submit("onerouter:bytedance/seedance", prompt=f"kitten {i}{extra}")
        return await client.wait(task)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_within_budget_the_enforcing_sandbox_never_says_429(sb: Any, tmp_path: Path) -> None:
    sb.set_limits("onerouter", requests_per_minute=300, max_in_flight=4)
    async with _client(sb, tmp_path, {"onerouter": (300, 4)}) as client:
        finals = await _grid(client, 12)
    stats = sb.stats()
    assert all(t.status is Status.SUCCEEDED for t in finals)
    assert stats["limited"]["onerouter"] == {"rate": 0, "in_flight": 0}
    assert stats["peak_in_flight"]["onerouter"] <= 4
    assert sum(stats["submits"].values()) == 12


async def test_without_a_budget_the_same_grid_draws_429s_and_recovers(
    sb: Any, tmp_path: Path
) -> None:
    sb.set_limits("onerouter", requests_per_minute=300, max_in_flight=4)
    async with _client(sb, tmp_path, False, retry_attempts=10) as client:
        finals = await _grid(client, 12)
    assert all(t.status is Status.SUCCEEDED for t in finals)  # the submit 429 retry got there
    assert sb.stats()["limited"]["onerouter"]["in_flight"] > 0


async def test_a_429_on_submit_shrinks_the_cap_to_what_the_server_accepts(
    sb: Any, tmp_path: Path
) -> None:
    # The client believes 10 fit; the account (another process, a lower plan) takes 3.
    sb.set_limits("onerouter", max_in_flight=3)
    async with _client(sb, tmp_path, {"onerouter": (None, 10)}, retry_attempts=10) as client:
        finals = await _grid(client, 6, extra=" [slow]")  # [slow]: 3 s, so all 6 overlap
        budget = client.budget("onerouter")
    assert all(t.status is Status.SUCCEEDED for t in finals)
    assert budget is not None and budget.limited >= 1
    # The first wave of 6 met 3 slots; once the cap shrank, the other 3 waited locally for a
    # slot instead of retrying into more 429s.
    assert sb.stats()["limited"]["onerouter"]["in_flight"] == 3, (sb.stats(), budget.limited)


async def test_a_deadline_cancel_does_not_queue_behind_polls(sb: Any, tmp_path: Path) -> None:
    from genwidgets import DeadlineExceeded

    # 6 requests a minute: after the submit the next request may go in ~10 s. The cancel at the
    # deadline must not wait for it (it stops billing), and no poll is spent at the deadline.
    async with _client(sb, tmp_path, {"oxen": (6, 5)}) as client:
        task = await client.submit(
            "oxen:kling-video-v2-6-pro-text-to-video", prompt="long [slow]", deadline=1.0
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(DeadlineExceeded):
            await client.wait(task)
        assert loop.time() - start < 4.0
    assert sb.stats()["cancels"] == 1
    assert sb.stats()["requests"]["oxen"].get("poll", 0) == 0


async def test_a_new_client_times_first_polls_from_the_journal(sb: Any, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"

    async def polls_for(client: AsyncClient, label: str) -> int:
        # [slow]: 3 s tasks, long enough for the providers' whole-second timestamps.
        before = sb.stats()["requests"].get("rixapi", {}).get("poll", 0)
        tasks = [
            await client.submit("rixapi:kling-v3/text-to-video", prompt=f"{label} {i} [slow]")
            for i in range(3)
        ]
        finals = await asyncio.gather(*(client.wait(t) for t in tasks))
        assert all(t.status is Status.SUCCEEDED for t in finals)
        return sb.stats()["requests"]["rixapi"]["poll"] - before

    async with _client(sb, tmp_path, False, journal=journal) as first:
        learning = await polls_for(first, "yesterday")
    async with _client(sb, tmp_path, False, journal=journal) as second:  # a new kernel
        learned = await polls_for(second, "today")
    assert learned <= learning / 2, (learning, learned)


async def test_submits_over_the_cap_free_slots_while_nobody_waits(sb: Any, tmp_path: Path) -> None:
    # A gather of submits over the cap: nobody waits on the tasks submitted first (the caller is
    # still submitting), so the client itself must see them end at the provider to free a slot.
    n = 6
    async with _client(sb, tmp_path, {"segmind": (None, 2)}) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        submits = (client.submit("segmind:seedream-4.5", prompt=f"w{i}") for i in range(n))
        tasks = await asyncio.wait_for(asyncio.gather(*submits), 30)
        assert loop.time() - start < 20
        requests = sum(sb.stats()["requests"]["segmind"].values())
        finals = [await asyncio.wait_for(client.wait(t), 0.5) for t in tasks[: n - 2]]
        # The first n - 2 ended while the submits waited: known already, no new request.
        assert sum(sb.stats()["requests"]["segmind"].values()) == requests
        finals += [await asyncio.wait_for(client.wait(t), 30) for t in tasks[n - 2 :]]
        budget = client.budget("segmind")
        assert budget is not None and not budget.in_flight and budget.reserved == 0
        assert not client._following._watchers  # stopped once no submit waits
    assert all(t.status is Status.SUCCEEDED and t.outputs for t in finals)
    assert sum(sb.stats()["submits"].values()) == n
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_closing_the_client_stops_its_slot_watcher(sb: Any, tmp_path: Path) -> None:
    client = _client(sb, tmp_path, {"segmind": (None, 1)})
    await client.submit("segmind:seedream-4.5", prompt="long [slow]")
    waiting = asyncio.ensure_future(client.submit("segmind:seedream-4.5", prompt="next"))
    await asyncio.sleep(0.3)
    watcher = client._following._watchers["segmind"]
    assert not watcher.done()
    await client.aclose()
    assert watcher.done() and not client._following._watchers
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_polls_widened_at_peak_demand_narrow_again_as_tasks_end(
    sb: Any, tmp_path: Path
) -> None:
    # 150 tasks at once on 1,800 requests/min: at the peak each poll is widened ~100-fold (the
    # budget shares its rate among all polling tasks); a task must not sleep that delay in full
    # once the others have ended (sdkbench 18:50: a 294 s sleep, nothing polled meanwhile).
    n = 150
    async with _client(sb, tmp_path, {"onerouter": (1800, None)}) as client:

        async def one(i: int) -> Any:
            task = await client.submit("onerouter:acme/peak", prompt=f"peak {i}")
            return await client.wait(task)

        started = time.monotonic()
        finals = await asyncio.gather(*(one(i) for i in range(n)))
        took = time.monotonic() - started
    assert all(t.status is Status.SUCCEEDED for t in finals)
    # 300 requests at 30/s: ~10 s (9.4 s here). Sleeping the peak's delays in full: 71-73 s.
    assert took < 25.0, f"{took:.1f} s for {n} tasks of 0.4 s"
