"""The cost guard: count paid submissions, estimate their price, and stop before a cap is crossed.

Generation is billed per task, and a grid is cheap to type: 4 models x 10 prompts x 5 seeds is 200
paid jobs. `explore()` and `batch` ask the guard for a `CostPlan` first and, above
`confirm_above` paid tasks (default 20; `local` and replayed tasks are free), ask the user to
confirm. Every real submit then `reserve`s its estimated price before it is sent and the task
`settle`s when it ends (the provider's reported cost when there is one, else the estimate), so
caps on paid submissions (`GENWIDGETS_MAX_PAID_TASKS`) and on estimated spend
(`GENWIDGETS_MAX_SPEND`) hold even with many tasks in flight: a submit that would cross a cap
fails with `SpendCapExceeded` before anything is sent.

Prices are the user's own (providers publish them per model and change them): a mapping of
`provider:model` (or `provider:*`) to the price of one task, from `CostGuard(prices=...)` or
`GENWIDGETS_PRICES` (inline JSON, or the path of a JSON or TOML file).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError, SpendCapExceeded
from ._models import Task
from ._team import team_url

__all__ = ["CostGuard", "CostPlan", "cost_summary", "shared_guard"]

DEFAULT_CONFIRM_ABOVE = 20


@dataclass(frozen=True)
class CostPlan:
    """What a grid or batch is about to spend, before anything is sent."""

    total: int
    paid: int
    free: int
    estimate: float | None  # None when no paid task has a price
    unpriced: tuple[str, ...] = ()
    confirm_above: int = DEFAULT_CONFIRM_ABOVE
    currency: str = "$"

    @property
    def needs_confirmation(self) -> bool:
        return self.paid > self.confirm_above

    def describe(self) -> str:
        """One line for a confirm button, a CLI prompt or an error."""
        noun = "task" if self.paid == 1 else "tasks"
        text = f"{self.paid} paid {noun}"
        if self.free:
            text += f" (+{self.free} free: local or replayed)"
        if self.estimate is not None:
            text += f", estimated {self.currency}{self.estimate:,.2f}"
            if self.unpriced:
                text += f" plus {len(self.unpriced)} without a price"
        elif self.paid:
            text += ", no price known (set GENWIDGETS_PRICES to estimate)"
        return text


def _load_prices(raw: str) -> dict[str, float]:
    text = raw.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"GENWIDGETS_PRICES: cannot read {path}: {exc.strerror}") from None
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise ConfigError("GENWIDGETS_PRICES: TOML needs Python 3.11+; use JSON") from None
            try:
                data: Any = tomllib.loads(content)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"GENWIDGETS_PRICES: {path} is not TOML: {exc}") from None
            data = data.get("prices", data)
        else:
            text = content
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"GENWIDGETS_PRICES is not JSON: {exc}") from None
    return _check_prices(data, "GENWIDGETS_PRICES")


def _check_prices(data: Any, where: str) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must map 'provider:model' to a price per task")
    prices = {}
    for model, price in data.items():
        if not isinstance(model, str) or ":" not in model:
            raise ConfigError(f"{where}: {model!r} is not 'provider:model' (or 'provider:*')")
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise ConfigError(f"{where}: the price of {model} must be a number >= 0, not {price!r}")
        prices[model] = float(price)
    return prices


def _env_number(name: str, cast: type[int] | type[float]) -> Any:
    """A non-negative number from the environment, or None when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ConfigError(f"{name} must be {kind}, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, not {value}")
    return value


@dataclass
class CostGuard:
    """Paid-task counting, price estimates and spend caps for one session (process).

    `None` for a cap means no cap. Thread-safe: the sync `Client` and background cards may submit
    from different threads.
    """

    prices: Mapping[str, float] = field(default_factory=dict)
    max_paid_tasks: int | None = None
    max_spend: float | None = None
    confirm_above: int = DEFAULT_CONFIRM_ABOVE
    currency: str = "$"
    paid_tasks: int = 0
    spent: float = 0.0
    _reserved: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)
    _pending: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.prices = _check_prices(self.prices, "prices")
        if self.max_paid_tasks is not None and self.max_paid_tasks < 0:
            raise ConfigError("max_paid_tasks must be >= 0")
        if self.max_spend is not None and self.max_spend < 0:
            raise ConfigError("max_spend must be >= 0")

    @classmethod
    def from_env(cls) -> CostGuard:
        """`GENWIDGETS_PRICES`, `GENWIDGETS_MAX_PAID_TASKS`, `GENWIDGETS_MAX_SPEND`,
        `GENWIDGETS_CONFIRM_ABOVE`."""
        raw = os.environ.get("GENWIDGETS_PRICES", "")
        confirm = _env_number("GENWIDGETS_CONFIRM_ABOVE", int)
        return cls(
            prices=_load_prices(raw) if raw.strip() else {},
            max_paid_tasks=_env_number("GENWIDGETS_MAX_PAID_TASKS", int),
            max_spend=_env_number("GENWIDGETS_MAX_SPEND", float),
            confirm_above=DEFAULT_CONFIRM_ABOVE if confirm is None else confirm,
        )

    # ------------------------------------------------------------------ prices and plans
    @staticmethod
    def is_paid(model: str) -> bool:
        return not model.startswith("local:")

    def price(self, model: str) -> float | None:
        """The price of one `provider:model` task, from the exact entry or `provider:*`."""
        if not self.is_paid(model):
            return 0.0
        if model in self.prices:
            return self.prices[model]
        return self.prices.get(model.split(":", 1)[0] + ":*")

    def plan(self, models: Iterable[str], *, free: int = 0) -> CostPlan:
        """The plan for submitting one task per entry of `models` (`free` more are replays)."""
        paid, local, estimate, unpriced = 0, free, 0.0, []
        priced = False
        for model in models:
            if not self.is_paid(model):
                local += 1
                continue
            paid += 1
            price = self.price(model)
            if price is None:
                unpriced.append(model)
            else:
                priced = True
                estimate += price
        return CostPlan(
            total=paid + local,
            paid=paid,
            free=local,
            estimate=estimate if priced else None,
            unpriced=tuple(dict.fromkeys(unpriced)),
            confirm_above=self.confirm_above,
            currency=self.currency,
        )

    def check(self, plan: CostPlan) -> None:
        """Fail early, with numbers, when the whole plan cannot fit the caps."""
        with self._lock:
            self._check(plan.paid, plan.estimate or 0.0, plan.unpriced, what="this run")

    # ------------------------------------------------------------------ one submit
    def reserve(self, model: str) -> float:
        """Count one paid submit and reserve its estimated price, or raise `SpendCapExceeded`
        (nothing is sent). Returns the reserved estimate, to `bind` or `release`."""
        price = self.price(model)
        with self._lock:
            self._check(1, price or 0.0, () if price is not None else (model,), what=model)
            self.paid_tasks += 1
            self._pending += price or 0.0
        return price or 0.0

    def _check(self, count: int, estimate: float, unpriced: Iterable[str], *, what: str) -> None:
        cap = self.max_paid_tasks
        if cap is not None and self.paid_tasks + count > cap:
            raise SpendCapExceeded(
                f"{what}: {count} more paid task(s) would exceed the cap of {cap} paid tasks this "
                f"session ({self.paid_tasks} used; GENWIDGETS_MAX_PAID_TASKS). Nothing was sent."
            )
        if self.max_spend is None:
            return
        missing = list(unpriced)
        if missing:
            raise SpendCapExceeded(
                f"{what}: a spend cap is set but {', '.join(sorted(set(missing)))} has no price, "
                "so its cost cannot be checked; add it to GENWIDGETS_PRICES. Nothing was sent."
            )
        committed = self.spent + self._pending + sum(self._reserved.values())
        if committed + estimate > self.max_spend + 1e-9:
            c = self.currency
            raise SpendCapExceeded(
                f"{what}: an estimated {c}{estimate:,.2f} more would exceed the spend cap of "
                f"{c}{self.max_spend:,.2f} ({c}{committed:,.2f} spent or reserved by tasks in "
                "flight; GENWIDGETS_MAX_SPEND). Nothing was sent."
            )

    def bind(self, provider: str, task_id: str, estimate: float) -> None:
        """The reserved submit was accepted: its estimate now belongs to the task."""
        with self._lock:
            self._pending = max(0.0, self._pending - estimate)
            self._reserved[(provider, task_id)] = estimate

    def release(self, estimate: float) -> None:
        """The reserved submit was refused before the provider took it: nothing was spent."""
        with self._lock:
            self._pending = max(0.0, self._pending - estimate)
            self.paid_tasks = max(0, self.paid_tasks - 1)

    def absorb(self, estimate: float) -> None:
        """The submit's fate is unknown (`SubmitUncertain`): it may have billed, so count it as
        spent rather than give it back."""
        with self._lock:
            self._pending = max(0.0, self._pending - estimate)
            self.spent += estimate

    def settle(self, task: Task) -> None:
        """The task ended: the provider's reported cost replaces the estimate (a failed or
        cancelled task with no reported cost keeps its estimate: it may well have billed)."""
        with self._lock:
            estimate = self._reserved.pop((task.provider, task.id), None)
            if estimate is None:
                return
            self.spent += task.cost if task.cost is not None else estimate

    @property
    def committed(self) -> float:
        """Spent plus reserved by tasks in flight: what the spend cap is compared with."""
        with self._lock:
            return self.spent + self._pending + sum(self._reserved.values())


_shared: dict[str | None, CostGuard] = {}  # by team backend URL (None: this process only)
_shared_lock = threading.Lock()


def shared_guard() -> CostGuard:
    """The session's guard (from the environment), shared by every client that has none of its
    own: a cap on paid tasks must count the form's, the gallery's and the batch's together. With
    a team backend (`_team.team_url`) it counts the whole team's (`_team_cost`)."""
    url = team_url()
    with _shared_lock:
        guard = _shared.get(url)
        if guard is None:
            if url is None:
                guard = CostGuard.from_env()
            else:
                from ._team_cost import SharedCostGuard

                guard = SharedCostGuard.for_team(url)
            _shared[url] = guard
        return guard


def cost_summary(tasks: Iterable[Task], currency: str = "$") -> str:
    """'cost $0.42 (reported for 10 of 12 tasks)': the sum of provider-reported costs."""
    reported = [t.cost for t in tasks if t.cost is not None and not t.replayed]
    paid = [t for t in tasks if t.provider != "local" and not t.replayed]
    if not paid:
        return "no paid tasks"
    if not reported:
        return f"cost not reported for {len(paid)} paid task{'s' if len(paid) != 1 else ''}"
    total = sum(reported)
    return f"cost {currency}{total:,.4g} (reported for {len(reported)} of {len(paid)} paid tasks)"
