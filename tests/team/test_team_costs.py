"""The cost guard's caps counted across processes through the real PostgreSQL (`_team_cost`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from genwidgets import SpendCapExceeded, Status, Task
from genwidgets._team_cost import SharedCostGuard
from tests.team.test_team_budgets import finish, start, worker_env


def test_two_processes_share_the_paid_task_cap(postgres: Any, sb: Any, tmp_path: Path) -> None:
    """GENWIDGETS_MAX_PAID_TASKS=5 for two workers of 4 submits each: 5 in all with the team
    backend; 4 each (8) without it, the control in the same run."""
    totals = {}
    for name, url in (("team", postgres.url), ("per process", None)):
        env = worker_env(
            url, GENWIDGETS_MAX_PAID_TASKS="5", GENWIDGETS_COST_SCOPE=f"t-{uuid.uuid4().hex}"
        )
        start_at = time.time() + 3.0
        procs = [
            start(
                {"mode": "paid", "base": sb.urls["onerouter"], "tasks": 4,
                 "key": f"cost-{uuid.uuid4().hex[:8]}", "budget": [None, None],
                 "cache": str(tmp_path / f"{name}{i}"),
                 "tag": f"{name}{i}", "start_at": start_at},
                env,
            )
            for i in range(2)
        ]
        done = [finish(p) for p in procs]
        sent = sum(r["statuses"].get("succeeded", 0) for r in done)
        totals[name] = (sent, sum(r["refused"] for r in done))
    assert totals["team"] == (5, 3), totals
    assert totals["per process"] == (8, 0), totals


def test_the_spend_cap_counts_every_guard_of_the_scope(postgres: Any) -> None:
    scope = f"s-{uuid.uuid4().hex}"
    prices = {"onerouter:*": 0.5}
    one = SharedCostGuard(prices=prices, max_spend=2.0, url=postgres.url, scope=scope)
    two = SharedCostGuard(prices=prices, max_spend=2.0, url=postgres.url, scope=scope)
    try:
        for guard, task_id in ((one, "a"), (two, "b"), (one, "c")):
            estimate = guard.reserve("onerouter:flux-schnell")
            guard.bind("onerouter", task_id, estimate)
        assert two.committed == pytest.approx(1.5)
        two.settle(Task(id="b", provider="onerouter", model="flux-schnell",
                        status=Status.SUCCEEDED, cost=0.25))
        assert one.committed == pytest.approx(1.25)  # the reported cost replaced the estimate
        two.reserve("onerouter:flux-schnell")  # 1.75
        with pytest.raises(SpendCapExceeded, match="Counted across the team"):
            one.reserve("onerouter:flux-schnell")
        assert one.paid_tasks == 4
        one.release(0.5)  # a refused submit gives its estimate back
        assert two.committed == pytest.approx(1.25)
        assert postgres.password not in repr(one)
    finally:
        one.close()
        two.close()
