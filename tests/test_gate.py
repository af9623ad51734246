"""The per-provider gate: at most N requests at once, and a freed place goes to the most urgent
waiter (cancels, then submits, then polls), first come first served within one urgency."""

from __future__ import annotations

import asyncio

from genwidgets._transport import LATER, URGENCY, Gate


async def _hold(gate: Gate, urgency: int, name: str, order: list[str], go: asyncio.Event) -> None:
    async with gate.place(urgency):
        order.append(name)
        await go.wait()


async def test_a_submit_queued_after_polls_goes_before_them() -> None:
    gate, order, go = Gate(1), [], asyncio.Event()
    holder = asyncio.ensure_future(_hold(gate, LATER, "first poll", order, go))
    await asyncio.sleep(0)
    waiters = [
        asyncio.ensure_future(_hold(gate, urgency, name, order, go))
        for urgency, name in [
            (LATER, "poll 1"),
            (LATER, "poll 2"),
            (URGENCY["submit"], "submit"),
            (URGENCY["cancel"], "cancel"),
            (LATER, "poll 3"),
        ]
    ]
    await asyncio.sleep(0)
    assert order == ["first poll"]  # one place: everyone else waits
    go.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["first poll", "cancel", "submit", "poll 1", "poll 2", "poll 3"]


async def test_no_more_than_size_at_once() -> None:
    gate, inside, most = Gate(3), 0, 0

    async def request() -> None:
        nonlocal inside, most
        async with gate.place(LATER):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(request() for _ in range(20)))
    assert most == 3


async def test_cancelled_waiters_lose_no_place() -> None:
    """A waiter cancelled while waiting is skipped; one cancelled right after it was handed a
    place passes the place on. Either way the gate ends with all its places free."""
    gate, order, go = Gate(1), [], asyncio.Event()
    holder = asyncio.ensure_future(_hold(gate, LATER, "holder", order, go))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(_hold(gate, LATER, "cancelled while waiting", order, go))
    handed = asyncio.ensure_future(_hold(gate, LATER, "cancelled once handed", order, go))
    last = asyncio.ensure_future(_hold(gate, LATER, "last", order, go))
    await asyncio.sleep(0)
    gone.cancel()
    go.set()
    await asyncio.sleep(0)  # the holder leaves and hands its place to `handed`...
    handed.cancel()  # ...which is cancelled before it runs: the place goes on to `last`
    done, _ = await asyncio.wait([last], timeout=2.0)
    assert done, "the place handed to a cancelled waiter was lost: `last` never got in"
    await asyncio.gather(holder, gone, handed, last, return_exceptions=True)
    assert order == ["holder", "last"]
    assert gate._free == 1 and all(f.done() for _, _, f in gate._waiting)
