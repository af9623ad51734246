"""The cost guard's caps counted across a team, in a PostgreSQL row (see `_team`).

`GENWIDGETS_MAX_PAID_TASKS=100` for three workers means 100 paid tasks in all, not 100 each: with
a team backend the counters `paid_tasks`, `spent` and `pending` (estimates of submits not settled
yet) live in the row of ``genwidgets_costs`` named by the scope (`GENWIDGETS_COST_SCOPE`, default
``default``), and a submit takes its share in one ``UPDATE ... WHERE <under the caps>
RETURNING``, so two processes cannot both take the last paid task. Each process checks its own
caps (from its own environment) against the shared totals.

The counters only grow: a scope is a run, a project or a month (name a new one to start again).
A process killed between a submit and its task's end leaves its estimate in `pending`, counted as
spent: it may well have billed. If the database stops answering, the guard counts in the process
(with a warning) until it answers again.

The calls are synchronous, as the guard's are (one short query per paid submit and per ending).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ._cost import CostGuard, CostPlan
from ._exceptions import SpendCapExceeded
from ._models import Task
from ._postgres import DatabaseURL, Link, lost, redacted
from ._team import ensure_tables

__all__ = ["SCOPE_ENV", "SharedCostGuard"]

log = logging.getLogger("genwidgets")

SCOPE_ENV = "GENWIDGETS_COST_SCOPE"

_SCOPE = "INSERT INTO genwidgets_costs (scope) VALUES (%s) ON CONFLICT DO NOTHING"
_TAKE = """
UPDATE genwidgets_costs SET paid_tasks = paid_tasks + 1, pending = pending + %(price)s
 WHERE scope = %(scope)s
   AND (%(cap)s::bigint IS NULL OR paid_tasks + 1 <= %(cap)s::bigint)
   AND (%(max)s::float8 IS NULL OR spent + pending + %(price)s <= %(max)s::float8 + 1e-9)
RETURNING paid_tasks, spent, pending"""


@dataclass
class SharedCostGuard(CostGuard):
    """A `CostGuard` whose counters are the team's (`url`'s row for `scope`)."""

    url: str = ""
    scope: str = "default"
    _link: Link | None = field(default=None, repr=False, compare=False)
    _connected: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.url = DatabaseURL(self.url)  # its repr leaves the password out

    @classmethod
    def for_team(cls, url: str) -> SharedCostGuard:
        """The session's guard from the environment, counting in `url`'s database."""
        guard = cls.from_env()
        guard.url = DatabaseURL(url)
        guard.scope = os.environ.get(SCOPE_ENV, "").strip() or "default"
        return guard

    def __repr__(self) -> str:
        return f"<SharedCostGuard scope={self.scope!r} at {redacted(self.url)}>"

    # ------------------------------------------------------------------ the row
    def _query(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | bool | None:
        """One statement on the scope's row; False when the database stopped answering (the
        first use raises instead: an unreachable database at start is a clear `ConfigError`)."""
        try:
            if self._link is None:
                ensure_tables(self.url)
                self._link = Link(self.url)
                self._link(lambda conn: conn.execute(_SCOPE, (self.scope,)))
            args = {**params, "scope": self.scope}
            row = self._link(lambda conn: conn.execute(sql, args).fetchone())
        except Exception as exc:
            if not (lost(exc) and self._connected):
                raise
            log.warning(
                "cost guard: the team database does not answer (%s): counting in this process "
                "for now",
                type(exc).__name__,
            )
            return False
        self._connected = True
        if row is not None:
            self._mirror(row)
        return row  # type: ignore[no-any-return]

    def _mirror(self, row: tuple[Any, ...]) -> None:
        """Show the team's totals in this guard's fields (`paid_tasks`, `spent`)."""
        self.paid_tasks, self.spent = int(row[0]), float(row[1])

    def _totals(self) -> tuple[Any, ...] | bool | None:
        return self._query(
            "SELECT paid_tasks, spent, pending FROM genwidgets_costs WHERE scope = %(scope)s", {}
        )

    def _refuse(self, row: tuple[Any, ...], count: int, price: float, what: str) -> None:
        """Raise `SpendCapExceeded` with the team's numbers (the message `CostGuard` words)."""
        view = CostGuard(
            max_paid_tasks=self.max_paid_tasks, max_spend=self.max_spend, currency=self.currency
        )
        view.paid_tasks, view.spent, view._pending = int(row[0]), float(row[1]), float(row[2])
        try:
            view._check(count, price, (), what=what)
        except SpendCapExceeded as exc:
            raise SpendCapExceeded(
                f"{exc} Counted across the team ({SCOPE_ENV}={self.scope})."
            ) from None

    # ------------------------------------------------------------------ the guard's calls
    def check(self, plan: CostPlan) -> None:
        if self.max_spend is not None and plan.unpriced:
            super().check(plan)  # no price: refused without asking anyone
        row = self._totals()
        if row is False or row is None:
            super().check(plan)
            return
        self._refuse(row, plan.paid, plan.estimate or 0.0, "this run")  # type: ignore[arg-type]

    def reserve(self, model: str) -> float:
        price = self.price(model)
        if self.max_spend is not None and price is None:
            return super().reserve(model)  # refused: a spend cap needs a price
        params = {"price": price or 0.0, "cap": self.max_paid_tasks, "max": self.max_spend}
        row = self._query(_TAKE, params)
        if row is False:
            return super().reserve(model)
        if row is None:
            totals = self._totals()
            if isinstance(totals, tuple):
                self._refuse(totals, 1, price or 0.0, model)
            raise SpendCapExceeded(f"{model}: the team's cost caps are reached. Nothing was sent.")
        return price or 0.0

    def release(self, estimate: float) -> None:
        sql = (
            "UPDATE genwidgets_costs SET paid_tasks = greatest(0, paid_tasks - 1), pending ="
            " greatest(0, pending - %(e)s) WHERE scope = %(scope)s"
            " RETURNING paid_tasks, spent, pending"
        )
        if self._query(sql, {"e": estimate}) is False:
            super().release(estimate)

    def absorb(self, estimate: float) -> None:
        self._spend(estimate, estimate)

    def settle(self, task: Task) -> None:
        with self._lock:
            estimate = self._reserved.pop((task.provider, task.id), None)
        if estimate is not None:
            self._spend(estimate, task.cost if task.cost is not None else estimate)

    def _spend(self, estimate: float, cost: float) -> None:
        sql = (
            "UPDATE genwidgets_costs SET pending = greatest(0, pending - %(e)s), spent = spent +"
            " %(c)s WHERE scope = %(scope)s RETURNING paid_tasks, spent, pending"
        )
        if self._query(sql, {"e": estimate, "c": cost}) is False:
            with self._lock:
                self.spent += cost

    @property
    def committed(self) -> float:
        """The team's spent plus pending estimates (this process's view when offline)."""
        row = self._totals()
        if isinstance(row, tuple):
            return float(row[1]) + float(row[2])
        return super().committed

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
