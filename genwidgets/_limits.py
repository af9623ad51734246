"""The budget table: each provider's default limits, what its rate limit counts, and why.

Each adapter declares its row (`Provider.limits`, a `ProviderLimits`); `PROVIDER_LIMITS` reads
them, so a new provider (or a plugin) brings its budget with it.

`resolve_limits` applies, in order, a client's `budgets=` entry, `GENWIDGETS_BUDGETS=off` and
`GENWIDGETS_<PROVIDER>_RPM` / `_MAX_IN_FLIGHT` to the table's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._config import budgets_off, limit_override
from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_LIMITS",
    "PROVIDER_LIMITS",
    "SUBMITS",
    "BudgetSetting",
    "Limits",
    "ProviderLimits",
    "resolve_limits",
]


@dataclass(frozen=True)
class Limits:
    """A provider account's limits. None means unlimited.

    `other_requests_per_minute` is a second bucket for the requests the first does not count
    (`ProviderLimits.counts`), where a provider documents two: Replicate allows 600 creates and
    3,000 other requests a minute, so polls spend from their own bucket instead of the creates'.
    """

    requests_per_minute: float | None = None
    max_in_flight: int | None = None
    other_requests_per_minute: float | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "other_requests_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {self.max_in_flight}")

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.max_in_flight is None


@dataclass(frozen=True)
class ProviderLimits:
    """A row of the budget table: the default limits, which requests count against the rate
    (None: every request), and the evidence the numbers rest on."""

    limits: Limits
    counts: frozenset[str] | None
    evidence: str


#: Only the submit counts: the provider limits generation requests, not status polls.
SUBMITS = frozenset({"submit"})

class _AdapterRows(Mapping[str, ProviderLimits]):
    """The budget table, read off the adapters: each provider class's `limits` row (see
    `Provider.limits`), for the providers that declare one. Lazy, so importing this module imports
    no adapter; a plugin that cannot be loaded has no row (using it raises its own error)."""

    def _row(self, name: str) -> ProviderLimits | None:
        from .providers import _registry

        try:
            return _registry.load(name).limits
        except (KeyError, ConfigError):
            return None

    def __getitem__(self, name: str) -> ProviderLimits:
        row = self._row(name) if isinstance(name, str) else None
        if row is None:
            raise KeyError(name)
        return row

    def __iter__(self) -> Iterator[str]:
        from .providers import _registry

        return iter([name for name in _registry.entries() if self._row(name) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _DefaultLimits(Mapping[str, Limits]):
    """`PROVIDER_LIMITS` without the evidence: the default limits alone, by provider."""

    def __getitem__(self, name: str) -> Limits:
        return PROVIDER_LIMITS[name].limits

    def __iter__(self) -> Iterator[str]:
        return iter(PROVIDER_LIMITS)

    def __len__(self) -> int:
        return len(PROVIDER_LIMITS)


#: The budget table, from the adapters' `limits` rows. Invented numbers say so: a 429 (with its
#: Retry-After, or Segmind's reset header) then teaches the real limit, and
#: `GENWIDGETS_<PROVIDER>_RPM` / `_MAX_IN_FLIGHT` or `budgets=` set the one a plan really has.
PROVIDER_LIMITS: Mapping[str, ProviderLimits] = _AdapterRows()

#: The default limits alone, by provider.
DEFAULT_LIMITS: Mapping[str, Limits] = _DefaultLimits()

BudgetSetting = bool | Mapping[str, "Limits | Mapping[str, Any] | tuple[Any, Any] | None"] | None


def _coerce(provider: str, value: Any) -> Limits:
    if value is None:
        return Limits()
    if isinstance(value, Limits):
        return value
    if isinstance(value, Mapping):
        return Limits(**value)
    if isinstance(value, tuple) and len(value) == 2:
        return Limits(*value)
    raise ConfigError(
        f"budgets[{provider!r}] must be Limits, a dict or (requests_per_minute, max_in_flight); "
        f"got {value!r}"
    )


def resolve_limits(provider: str, setting: BudgetSetting = None) -> Limits:
    """The limits that apply to `provider`.

    In order: the client's `budgets={provider: ...}` entry; off everywhere with `budgets=False` or
    `GENWIDGETS_BUDGETS=off`; else `DEFAULT_LIMITS` adjusted by `GENWIDGETS_<PROVIDER>_RPM` and
    `GENWIDGETS_<PROVIDER>_MAX_IN_FLIGHT` (a number, or `off`).
    """
    if isinstance(setting, Mapping) and provider in setting:
        return _coerce(provider, setting[provider])
    if setting is False or budgets_off():
        return Limits()
    limits = DEFAULT_LIMITS.get(provider, Limits())
    rpm = limit_override(provider, "RPM")
    if rpm is not None:
        limits = replace(limits, requests_per_minute=None if math.isinf(rpm) else rpm)
    in_flight = limit_override(provider, "MAX_IN_FLIGHT", integer=True)
    if in_flight is not None:
        limits = replace(limits, max_in_flight=None if math.isinf(in_flight) else int(in_flight))
    return limits
