"""The cost guard: prices, plans, caps with reserve and reconcile (no IO)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from genwidgets import ConfigError, CostGuard, SpendCapExceeded, Status, Task
from genwidgets._cost import cost_summary


def _task(task_id: str, *, cost: float | None = None, status: Status = Status.SUCCEEDED) -> Task:
    return Task(id=task_id, provider="onerouter", model="m", status=status, cost=cost)


def test_prices_exact_then_wildcard_and_local_is_free() -> None:
    guard = CostGuard(prices={"onerouter:m": 0.5, "segmind:*": 0.1})
    assert guard.price("onerouter:m") == 0.5
    assert guard.price("segmind:anything") == 0.1
    assert guard.price("oxen:x") is None
    assert guard.price("local:image") == 0.0


def test_plan_counts_paid_tasks_and_asks_above_the_threshold() -> None:
    guard = CostGuard(prices={"onerouter:m": 0.25}, confirm_above=20)
    plan = guard.plan(["onerouter:m"] * 21 + ["oxen:x"] + ["local:image"] * 5, free=2)
    assert (plan.paid, plan.free, plan.total) == (22, 7, 29)
    assert plan.estimate == pytest.approx(5.25)
    assert plan.unpriced == ("oxen:x",)
    assert plan.needs_confirmation
    assert plan.describe() == (
        "22 paid tasks (+7 free: local or replayed), estimated $5.25 plus 1 without a price"
    )
    small = guard.plan(["onerouter:m"] * 20)
    assert not small.needs_confirmation
    assert "no price" in CostGuard().plan(["oxen:x"]).describe()


def test_cap_on_paid_tasks_counts_submits_and_gives_back_refused_ones() -> None:
    guard = CostGuard(max_paid_tasks=2)
    guard.reserve("oxen:x")
    estimate = guard.reserve("oxen:x")
    with pytest.raises(SpendCapExceeded, match="cap of 2 paid tasks"):
        guard.reserve("oxen:x")
    guard.release(estimate)  # the provider refused that one: nothing was spent
    guard.reserve("oxen:x")
    assert guard.paid_tasks == 2


def test_spend_cap_reserves_for_tasks_in_flight_then_reconciles_with_the_reported_cost() -> None:
    guard = CostGuard(prices={"onerouter:m": 1.0}, max_spend=2.5)
    for task_id in ("a", "b"):
        guard.bind("onerouter", task_id, guard.reserve("onerouter:m"))
    with pytest.raises(SpendCapExceeded, match=r"\$2.00 spent or reserved"):
        guard.reserve("onerouter:m")  # two in flight hold $2: a third would overshoot
    guard.settle(_task("a", cost=0.1))  # the provider reported less than estimated
    guard.settle(_task("b", status=Status.FAILED))  # no cost reported: the estimate stands
    assert guard.spent == pytest.approx(1.1)
    guard.reserve("onerouter:m")  # $1.1 + $1 fits under $2.5 now
    assert guard.committed == pytest.approx(2.1)


def test_spend_cap_refuses_models_without_a_price() -> None:
    guard = CostGuard(max_spend=10)
    with pytest.raises(SpendCapExceeded, match="has no price"):
        guard.reserve("oxen:x")
    assert guard.paid_tasks == 0
    guard.reserve("local:image")  # free tasks are not the guard's business, but harmless


def test_check_fails_a_whole_plan_early_with_numbers() -> None:
    guard = CostGuard(max_paid_tasks=10, paid_tasks=4)
    with pytest.raises(SpendCapExceeded, match="7 more paid"):
        guard.check(guard.plan(["oxen:x"] * 7))
    guard.check(guard.plan(["oxen:x"] * 6))


def test_concurrent_reservations_never_overshoot() -> None:
    guard = CostGuard(prices={"oxen:*": 1.0}, max_spend=50)
    ok: list[float] = []

    def worker() -> None:
        for _ in range(20):
            with contextlib.suppress(SpendCapExceeded):
                ok.append(guard.reserve("oxen:x"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ok) == 50


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENWIDGETS_PRICES", '{"segmind:*": 0.003}')
    monkeypatch.setenv("GENWIDGETS_MAX_PAID_TASKS", "40")
    monkeypatch.setenv("GENWIDGETS_MAX_SPEND", "1.5")
    monkeypatch.setenv("GENWIDGETS_CONFIRM_ABOVE", "5")
    guard = CostGuard.from_env()
    assert (guard.max_paid_tasks, guard.max_spend, guard.confirm_above) == (40, 1.5, 5)
    assert guard.price("segmind:flux") == 0.003
    prices = tmp_path / "prices.json"
    prices.write_text('{"oxen:m": 2}')
    monkeypatch.setenv("GENWIDGETS_PRICES", str(prices))
    assert CostGuard.from_env().price("oxen:m") == 2.0


def test_prices_from_a_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("tomllib")
    prices = tmp_path / "prices.toml"
    prices.write_text('[prices]\n"onerouter:bytedance/seedance" = 0.12\n')
    monkeypatch.setenv("GENWIDGETS_PRICES", str(prices))
    assert CostGuard.from_env().price("onerouter:bytedance/seedance") == 0.12


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GENWIDGETS_PRICES", "{nope", "not JSON"),
        ("GENWIDGETS_PRICES", '{"segmind": 1}', "provider:model"),
        ("GENWIDGETS_PRICES", '{"segmind:x": -1}', ">= 0"),
        ("GENWIDGETS_PRICES", "/no/such/file.json", "cannot read"),
        ("GENWIDGETS_MAX_PAID_TASKS", "many", "whole number"),
        ("GENWIDGETS_MAX_SPEND", "-3", ">= 0"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        CostGuard.from_env()


def test_cost_summary_sums_reported_costs_of_paid_tasks() -> None:
    tasks = [_task("a", cost=0.25), _task("b", cost=0.5), _task("c")]
    assert cost_summary(tasks) == "cost $0.75 (reported for 2 of 3 paid tasks)"
    assert cost_summary([_task("c")]) == "cost not reported for 1 paid task"
    assert cost_summary([]) == "no paid tasks"
