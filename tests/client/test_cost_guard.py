"""The cost guard in the client, over real HTTP: caps hold before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, AuthError, CostGuard, SpendCapExceeded, Status
from tests.conftest import KEYS

VIDEO = "onerouter:bytedance/seedance"


def _client(sb: Any, tmp_path: Path, guard: CostGuard, **options: Any) -> AsyncClient:
    return AsyncClient(
        api_keys=options.pop("api_keys", KEYS),
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.05, 0.3),
        cost_guard=guard,
        **options,
    )


async def test_the_paid_task_cap_refuses_before_sending(sb: Any, tmp_path: Path) -> None:
    guard = CostGuard(max_paid_tasks=2)
    async with _client(sb, tmp_path, guard) as client:
        for i in range(2):
            await client.submit(VIDEO, prompt=f"kitten {i}")
        with pytest.raises(SpendCapExceeded, match="cap of 2 paid tasks"):
            await client.submit(VIDEO, prompt="one too many")
        assert (await client.run("local:image", prompt="free")).status is Status.SUCCEEDED
    assert sb.stats()["submits"] == {"onerouter": 2}


async def test_tasks_in_flight_cannot_overshoot_the_spend_cap(sb: Any, tmp_path: Path) -> None:
    guard = CostGuard(prices={VIDEO: 1.0}, max_spend=3.0)
    async with _client(sb, tmp_path, guard) as client:
        results = await asyncio.gather(
            *(client.submit(VIDEO, prompt=f"kitten {i}") for i in range(5)),
            return_exceptions=True,
        )
        accepted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, SpendCapExceeded)]
        assert (len(accepted), len(refused)) == (3, 2)
        finals = [await client.wait(t) for t in accepted]
    assert sb.stats()["submits"] == {"onerouter": 3}
    # The sandbox reports OneRouter's data.cost (0.01 for this model): estimates reconciled.
    assert [t.cost for t in finals] == [pytest.approx(0.01)] * 3
    assert guard.spent == pytest.approx(0.03)
    assert guard.committed == pytest.approx(0.03)


async def test_a_refused_submit_does_not_count(sb: Any, tmp_path: Path) -> None:
    guard = CostGuard(max_paid_tasks=1)
    keys = {**KEYS, "onerouter": "bad-key"}
    async with _client(sb, tmp_path, guard, api_keys=keys) as client:
        for _ in range(2):
            with pytest.raises(AuthError):
                await client.submit(VIDEO, prompt="x")
    assert guard.paid_tasks == 0


async def test_replayed_and_local_tasks_are_free_in_the_plan(sb: Any, tmp_path: Path) -> None:
    guard = CostGuard(prices={VIDEO: 0.2}, confirm_above=1)
    async with _client(sb, tmp_path, guard, journal=tmp_path / "j.sqlite") as client:
        await client.run(VIDEO, prompt="recorded")
        requests = [(VIDEO, "recorded"), (VIDEO, "new"), ("local:image", "x")]
        plan = client.plan((model, {"prompt": prompt}) for model, prompt in requests)
    assert (plan.paid, plan.free) == (1, 2)
    assert plan.estimate == pytest.approx(0.2)
    assert not plan.needs_confirmation
