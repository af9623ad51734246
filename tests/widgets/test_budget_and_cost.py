"""Cards and galleries over the real client and sandbox: waiting for a slot, the cost guard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from genwidgets import (
    AsyncClient,
    ConfirmationRequired,
    CostGuard,
    SpendCapExceeded,
    Status,
    StatusCard,
    explore,
)
from tests.conftest import KEYS

SLOW = "oxen:kling-video-v2-6-pro-text-to-video"
IMAGE = "onerouter:bytedance/seedance"


def _client(sb: Any, tmp_path: Path, **options: Any) -> AsyncClient:
    return AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.05, 0.3),
        journal=False,
        **options,
    )


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def _second_waits(client: AsyncClient, prompt: str) -> tuple[StatusCard, StatusCard]:
    """A slow card holding the account's only slot, and a second card waiting for it."""
    first = StatusCard.submit(client, SLOW, prompt="long [slow]")
    await _until(lambda: first.task is not None)
    second = StatusCard.submit(client, "oxen:flux-image", prompt=prompt)
    await _until(lambda: second.state == "waiting")
    return first, second


async def test_a_card_waits_for_a_slot_visibly_then_runs(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, budgets={"oxen": (None, 1)}) as client:
        first, second = await _second_waits(client, "next")
        assert "waiting for a slot: 1 of 1 oxen tasks in flight" in second._status.value
        assert 'data-state="waiting"' in second._headline.value
        assert second.can_cancel
        assert sum(sb.stats()["submits"].values()) == 1  # the second has not gone out
        first.cancel()
        final = await asyncio.wait_for(second.wait(), 15)
        assert final is not None and final.status is Status.SUCCEEDED, second.error
        first.close()
        second.close()


async def test_cancelling_a_waiting_card_withdraws_the_submit(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, budgets={"oxen": (None, 1)}) as client:
        first, second = await _second_waits(client, "never sent")
        second.cancel()
        assert await asyncio.wait_for(second.wait(), 5) is None
        assert second.state == "cancelled" and "nothing was sent" in second._status.value
        first.cancel()
        await asyncio.wait_for(first.wait(), 10)
        budget = client.budget("oxen")
        assert budget is not None and budget.reserved == 0 and not budget.in_flight
    assert sum(sb.stats()["submits"].values()) == 1
    first.close()
    second.close()


async def test_explore_above_the_threshold_asks_first_and_sends_nothing_until_confirmed(
    sb: Any, tmp_path: Path
) -> None:
    guard = CostGuard(prices={IMAGE: 0.1}, confirm_above=2)
    async with _client(sb, tmp_path, cost_guard=guard) as client:
        gallery = explore(IMAGE, ["a", "b", "<b>c</b>"], client=client)
        assert gallery.awaiting_confirmation and not gallery.cards
        text = gallery._confirm_box.children[0].value  # type: ignore[union-attr]
        assert "3 paid tasks, estimated $0.30" in text and "more than 2" in text
        assert gallery.plan is not None and gallery.plan.paid == 3
        with pytest.raises(ConfirmationRequired, match="click Submit"):
            await gallery.wait()
        await asyncio.sleep(0.3)
        assert sb.stats()["submits"] == {}
        submit_button = gallery._confirm_box.children[1].children[0]  # type: ignore[union-attr]
        assert submit_button.description == "Submit 3 tasks"
        submit_button.click()
        assert gallery._confirm_box is None and len(gallery.cards) == 3
        tasks = await asyncio.wait_for(gallery.wait(), 20)
        assert [t.status for t in tasks] == [Status.SUCCEEDED] * 3
        # The header sums what the provider reported (the sandbox: 0.01 a task).
        assert "cost $0.03 (reported for 3 of 3 paid tasks)" in gallery._summary.value
        gallery.close()
    assert sb.stats()["submits"] == {"onerouter": 3}


async def test_declining_submits_nothing(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, cost_guard=CostGuard(confirm_above=1)) as client:
        gallery = explore(IMAGE, ["a", "b"], client=client)
        decline = gallery._confirm_box.children[1].children[1]  # type: ignore[union-attr]
        decline.click()
        assert not gallery.awaiting_confirmation and gallery._confirm_box is None
        assert "not submitted" in gallery._summary.value
        assert await gallery.wait() == []
        gallery.close()
    assert sb.stats()["submits"] == {}


async def test_yes_and_free_grids_do_not_ask(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, cost_guard=CostGuard(confirm_above=1)) as client:
        paid = explore(IMAGE, ["a", "b"], client=client, yes=True)
        free = explore("local:image", ["a", "b", "c"], client=client)
        assert not paid.awaiting_confirmation and len(paid.cards) == 2
        assert not free.awaiting_confirmation and len(free.cards) == 3
        await asyncio.wait_for(asyncio.gather(paid.wait(), free.wait()), 20)
        assert "cost" not in free._summary.value  # nothing paid, nothing to sum
        paid.close()
        free.close()


async def test_a_grid_over_the_cap_fails_before_any_card(sb: Any, tmp_path: Path) -> None:
    async with _client(sb, tmp_path, cost_guard=CostGuard(max_paid_tasks=2)) as client:
        with pytest.raises(SpendCapExceeded, match="3 more paid"):
            explore(IMAGE, ["a", "b", "c"], client=client, yes=True)
    assert sb.stats()["submits"] == {}
