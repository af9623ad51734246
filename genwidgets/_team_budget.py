"""One account's budget shared by every process of a team, in PostgreSQL rows (see `_team`).

`SharedBudget` is a `Budget` (same methods, same waits and messages), so the client does not know
which one it holds. What it keeps in the database instead of the process:

- The request rate is a GCRA bucket in the account's row of ``genwidgets_budgets``: each request
  that counts moves the row's theoretical arrival time `tat` on by one `gap` in one ``UPDATE ...
  RETURNING`` (atomic, no lock held across requests) and learns how long to wait before it may go.
  `gap` and `burst` come from `_policy.leaky_bucket`, as the in-process bucket's, so no sliding
  minute sees more than the limit, whoever sends; waits are measured on the server's clock, so
  machines' clocks need not agree. A provider's second bucket (`Limits.other_requests_per_minute`,
  Replicate's polls) is a second such clock in the row (`other_tat`).
- Tasks in flight are rows of ``genwidgets_budget_slots``: a submit takes one in a transaction that
  locks the account's row, drops expired leases and counts the rest against the shared `cap`.
  One coroutine per process asks the database while the account is full (every `SLOT_POLL`
  seconds, or at once when this process frees a slot); the others wait behind it, in order.
- A 429 (from any process) pauses, halves the rate and shrinks the cap in the row, so every
  process slows down; the recovery step after `recover_after` quiet seconds is taken once, by
  whichever process sees it due first (a compare-and-set on the old values).

Calls that cannot wait (bind, release, adopt, penalize) queue their write; it is sent before the
next query, so a slot freed here is free in the database before this process asks for one.
If the database goes away mid-run, the budget falls back to its in-process self (with a warning)
and goes back to the shared rows once the server answers again; it never stops a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from ._budget import (
    DEFAULT_PAUSE,
    MAX_PAUSE,
    POLL_SHARE,
    RATE_DIVISOR,
    RATE_FLOOR,
    RECOVER_AFTER,
    Budget,
    _once,
)
from ._limits import Limits
from ._policy import recovered, scaled_poll_delay
from ._postgres import DatabaseURL
from ._team import (
    HOLDER,
    LIVE,
    ROW,
    SPEND,
    SPEND_OTHER,
    UPSERT,
    TeamDown,
    TeamLink,
    buckets,
    heartbeat,
    upsert_params,
)

__all__ = ["SharedBudget"]

log = logging.getLogger("genwidgets")

#: Seconds between two looks at a full account (a slot freed in this process wakes it at once).
SLOT_POLL = 0.1
_FULL = object()  # no slot free right now

class SharedBudget(Budget):
    """A `Budget` whose rate, cap, pause and slots live in the team's PostgreSQL database.

    The in-process parts stay: `in_flight` is this process's tasks (the slot watcher polls those),
    and the inherited bucket and cap take over while the database is unreachable.
    """

    def __init__(
        self,
        provider: str,
        limits: Limits,
        *,
        url: str,
        account: str,
        recover_after: float = RECOVER_AFTER,
        counts: frozenset[str] | None = None,
    ) -> None:
        super().__init__(provider, limits, recover_after=recover_after, counts=counts)
        self.url = DatabaseURL(url)  # its repr leaves the password out
        self.account = f"{provider}:{account}"  # a hash of the key, never the key
        self.team_used = 0  # slots taken by the whole team, as last seen
        self.team_limited = 0
        self._link = TeamLink(url, f"{provider} budget", self._setup)
        self._turn = asyncio.Lock()  # one waiter per process asks the database for a slot
        self._freed = asyncio.Event()
        self._reserved_slots: list[int | None] = []
        self._watch: Callable[[], AbstractAsyncContextManager[Any]] | None = None

    async def _setup(self, conn: Any) -> None:
        """On each (re)connection: the account's row, with this client's limits."""
        heartbeat(self.url)
        await conn.execute(UPSERT, upsert_params(self.account, self.limits))

    async def aclose(self) -> None:
        """Send the queued writes and close the connection (it reopens if used again)."""
        await self._link.aclose()

    def _apply(self, row: tuple[Any, ...]) -> None:
        """Take the shared rate factor, cap, pause and counters as this process's view."""
        rate_factor, cap, paused_for, counts_all, limited = row[:5]
        if rate_factor != self.rate_factor:
            self.rate_factor = rate_factor
            self._configure_limiter()
        self.cap = cap
        self._paused_until = asyncio.get_running_loop().time() + float(paused_for)
        if counts_all:
            self.counts = None
        self.team_limited = int(limited)

    async def _recover(self, conn: Any, row: tuple[Any, ...]) -> None:
        """One recovery step if the last 429 is `recover_after` seconds old (the first process
        to see it takes it: compare-and-set on the values it read)."""
        rate_factor, cap, since = row[0], row[1], row[5]
        if since is None or float(since) < self.recover_after:
            return
        factor, new_cap = recovered(rate_factor, cap, self.limits.max_in_flight)
        whole = factor >= 1.0 and new_cap == self.limits.max_in_flight
        await conn.execute(
            "UPDATE genwidgets_budgets SET rate_factor = %s, cap = %s, gap = %s, burst = %s,"
            " other_gap = %s, other_burst = %s,"
            " last_penalty = CASE WHEN %s THEN NULL ELSE statement_timestamp() END"
            " WHERE account = %s AND rate_factor = %s AND cap IS NOT DISTINCT FROM %s",
            (factor, new_cap, *buckets(self.limits, factor), whole, self.account, rate_factor,
             cap),
        )  # fmt: skip

    # ------------------------------------------------------------------ requests per minute
    async def spend(
        self, kind: str | None = None, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Wait until one more request of `kind` fits the team's budget (and any pause is over)."""
        loop = asyncio.get_running_loop()
        tell = _once(on_wait)
        sql, rpm = SPEND, self.limits.requests_per_minute
        if not self.counted(kind):  # the second bucket's, where there is one
            sql, rpm = SPEND_OTHER, self.limits.other_requests_per_minute
        if rpm is None:
            pause = self._paused_until - loop.time()
            if pause > 0:  # the shared pause, as last seen
                tell(self._describe_rate(pause, "paused after a 429, going on"))
                await asyncio.sleep(pause)
            return
        try:
            row = await self._link.run(lambda conn: self._take_request(conn, sql))
        except TeamDown:
            await super().spend(kind, on_wait)
            return
        wait = float(row[0])
        if wait > 0:
            paused = float(row[3]) > 0
            why = "paused after a 429, going on" if paused else "next request"
            tell(self._describe_rate(wait, why))
            await asyncio.sleep(wait)
        self._granted_at = loop.time()

    async def _take_request(self, conn: Any, sql: str) -> tuple[Any, ...]:
        row = await (await conn.execute(sql, (self.account,))).fetchone()
        self._apply(row[1:])
        await self._recover(conn, row[1:])
        return row  # type: ignore[no-any-return]

    def penalize(
        self, retry_after: float | None, *, on_submit: bool = False, kind: str | None = None
    ) -> None:
        """A 429 seen here slows the whole team: the pause, the halved rate and the shrunk cap
        go to the account's row (and apply here at once)."""
        uncounted = not self.counted(kind) and self.limits.other_requests_per_minute is None
        super().penalize(retry_after, on_submit=on_submit, kind=kind)
        pause = min(retry_after if retry_after is not None else DEFAULT_PAUSE, MAX_PAUSE)

        async def shared(conn: Any) -> None:
            await self._penalize_row(conn, pause, on_submit, uncounted)

        self._link.queue(shared)

    async def _penalize_row(self, conn: Any, pause: float, on_submit: bool, all_: bool) -> None:
        async with conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT rate_factor, cap FROM genwidgets_budgets WHERE account = %s"
                    " FOR UPDATE",
                    (self.account,),
                )
            ).fetchone()
            if row is None:
                return
            rate_factor, cap = row
            if self.limits.requests_per_minute or self.limits.other_requests_per_minute:
                rate_factor = max(RATE_FLOOR, rate_factor / RATE_DIVISOR)
            if on_submit and self.limits.max_in_flight is not None:
                bound = await (
                    await conn.execute(
                        f"SELECT count(*) FROM genwidgets_budget_slots WHERE {LIVE}"
                        " AND task_id IS NOT NULL",
                        (self.account,),
                    )
                ).fetchone()
                cap = max(1, min(cap or 1, int(bound[0])))
            await conn.execute(
                "UPDATE genwidgets_budgets SET limited = limited + 1, rate_factor = %s, cap = %s,"
                " gap = %s, burst = %s, other_gap = %s, other_burst = %s, last_penalty ="
                " statement_timestamp(), paused_until = greatest(paused_until,"
                " statement_timestamp() + make_interval(secs => %s)),"
                " counts_all = counts_all OR %s WHERE account = %s",
                (rate_factor, cap, *buckets(self.limits, rate_factor), pause, all_, self.account),
            )

    def reconfigure(self, limits: Limits) -> None:
        """New limits (the newest client's `budgets=`) replace the row's, for the whole team."""
        if limits == self.limits:
            return
        super().reconfigure(limits)
        row = upsert_params(self.account, limits)

        async def upsert(conn: Any) -> None:
            await conn.execute(UPSERT, row)

        self._link.queue(upsert)

    # ------------------------------------------------------------------ tasks in flight
    async def reserve(
        self,
        on_wait: Callable[[str], None] | None = None,
        while_waiting: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        """Take one of the team's slots for a submit, waiting (and saying so, once) while the
        account is full; the wait runs inside `while_waiting()` as in `Budget.reserve` (kept for
        a requeue after a 429, so the tasks holding the slots are polled then too)."""
        self._watch = while_waiting or self._watch
        slot = await self._try_slot()
        if slot is _FULL:
            if on_wait is not None:
                on_wait(self.describe_wait())
            if while_waiting is not None:
                async with while_waiting():
                    slot = await self._wait_for_team_slot()
            else:
                slot = await self._wait_for_team_slot()
        self.reserved += 1
        self._reserved_slots.append(slot)  # type: ignore[arg-type]

    async def _wait_for_team_slot(self) -> int | None:
        async with self._turn:
            while True:
                slot = await self._try_slot()
                if slot is not _FULL:
                    return slot  # type: ignore[return-value]
                self._freed.clear()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), SLOT_POLL)

    async def _try_slot(self) -> object:
        """A slot row's id, `_FULL`, or None: granted by the in-process cap (database down)."""
        try:
            return await self._link.run(self._take_slot)
        except TeamDown:
            return None if Budget.has_slot(self) else _FULL

    async def _take_slot(self, conn: Any) -> object:
        lease = heartbeat(self.url).lease
        async with conn.transaction():
            row = await (await conn.execute(ROW + " FOR UPDATE", (self.account,))).fetchone()
            self._apply(row)
            await conn.execute(
                "DELETE FROM genwidgets_budget_slots WHERE account = %s"
                " AND expires <= statement_timestamp()",
                (self.account,),
            )
            used = await (
                await conn.execute(
                    "SELECT count(*) FROM genwidgets_budget_slots WHERE account = %s",
                    (self.account,),
                )
            ).fetchone()
            self.team_used = int(used[0])
            if self.cap is not None and self.team_used >= self.cap:
                await self._recover(conn, row)
                return _FULL
            got = await (
                await conn.execute(
                    "INSERT INTO genwidgets_budget_slots (account, holder, expires) VALUES"
                    " (%s, %s, statement_timestamp() + make_interval(secs => %s)) RETURNING slot",
                    (self.account, HOLDER, lease),
                )
            ).fetchone()
            self.team_used += 1
        await self._recover(conn, row)
        return int(got[0])

    def describe_wait(self) -> str:
        used = max(self.team_used, self._used())
        return (
            f"waiting for a slot: {used} of {self.cap} {self.provider} tasks in flight "
            "(shared by the team)"
        )

    async def requeue(self, on_wait: Callable[[str], None] | None = None) -> None:
        """A reserved submit was refused with a 429: give its slot back and queue again."""
        self.unreserve()
        try:
            await self.reserve(on_wait, self._watch)
        except BaseException:
            self.reserved += 1  # keep the caller's `unreserve()` balanced
            self._reserved_slots.append(None)
            raise

    def bind(self, task_id: str) -> None:
        super().bind(task_id)
        slot = self._reserved_slots.pop() if self._reserved_slots else None
        if slot is None:
            self._adopt_row(task_id)
            return

        async def name(conn: Any) -> None:
            import psycopg

            try:
                await conn.execute(
                    "UPDATE genwidgets_budget_slots SET task_id = %s WHERE slot = %s",
                    (task_id, slot),
                )
            except psycopg.errors.UniqueViolation:  # adopted elsewhere already: counted once
                await conn.execute("DELETE FROM genwidgets_budget_slots WHERE slot = %s", (slot,))

        self._link.queue(name)

    def unreserve(self) -> None:
        super().unreserve()
        slot = self._reserved_slots.pop() if self._reserved_slots else None
        if slot is not None:
            self._free_row("slot = %s", slot)

    def adopt(self, task_id: str) -> None:
        if task_id not in self.in_flight:
            super().adopt(task_id)
            self._adopt_row(task_id)

    def release(self, task_id: str) -> None:
        held = task_id in self.in_flight
        super().release(task_id)
        if held:
            self._free_row("account = %s AND task_id = %s", self.account, task_id)

    def _adopt_row(self, task_id: str) -> None:
        lease = heartbeat(self.url).lease

        async def insert(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO genwidgets_budget_slots (account, holder, task_id, expires) VALUES"
                " (%s, %s, %s, statement_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (account, task_id) DO NOTHING",
                (self.account, HOLDER, task_id, lease),
            )

        self._link.queue(insert)

    def _free_row(self, where: str, *params: Any) -> None:
        async def delete(conn: Any) -> None:
            await conn.execute(f"DELETE FROM genwidgets_budget_slots WHERE {where}", params)

        self._link.queue(delete)
        self._freed.set()

    # ------------------------------------------------------------------ polls and state
    def poll_delay(self, task_id: str, desired: float) -> float:
        """As `Budget.poll_delay`, with this process's share of the team's rate: its part of the
        tasks in flight (the others poll theirs from the same bucket)."""
        share = 1.0 / max(desired, 1e-3)
        self._poll_total += share - self._poll_shares.get(task_id, 0.0)
        self._poll_shares[task_id] = share
        rate = self.rate_of("poll")
        if rate is None:
            return desired
        mine = max(1, len(self.in_flight))
        part = mine / max(mine, self.team_used)
        return scaled_poll_delay(desired, self._poll_total, rate * POLL_SHARE * part)

    def state(self) -> dict[str, Any]:
        """`Budget.state()` plus the team's slots in use and 429s, as last seen."""
        return {
            **super().state(),
            "team_in_flight": self.team_used,
            "team_limited": self.team_limited,
            "backend": "postgresql",
        }
