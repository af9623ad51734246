"""What the sandbox enforces per account, as data: requests per minute and tasks in flight.

`ServerLimits` is the server's side of a limit: past it, the sandbox answers 429 as the provider
would. The client's own self-restraint is `genwidgets.Limits` (its budgets); the two are kept
apart by name because a test usually holds one of each.

Faults (`_faults.py`) are random and stateless; limits are the opposite: deterministic answers to
what the client itself did. A client that keeps under a provider's published budget never sees a
limit 429; one that bursts does, exactly when the real service would refuse it. That is what a
client-side budget must be tested against, and what a benchmark must model to be honest about
throughput.

`ServerLimits` is a `NamedTuple`, so a plain `(rpm, in_flight)` tuple is accepted wherever one
is, and `DOCUMENTED_LIMITS` compares equal to `{"onerouter": (600, 30)}`. The counting itself
lives in `State` (under its lock, next to the tasks whose phases it reads); this module only holds
the values, their validation and the CLI syntax.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["DOCUMENTED_LIMITS", "LIMIT_WINDOW", "ServerLimits", "coerce_limits", "parse_limit_spec"]

#: Length of the requests-per-minute window in seconds (tests shrink it through `_limit_window`).
LIMIT_WINDOW = 60.0


class ServerLimits(NamedTuple):
    """One provider's limits per API key; None means unlimited.

    `requests_per_minute` counts every API request (submit, poll, result, list, cancel, events)
    in a sliding window; `max_in_flight` refuses a submit while the account already has that
    many tasks queued or running.
    """

    requests_per_minute: int | None = None
    max_in_flight: int | None = None

    @property
    def empty(self) -> bool:
        """No limit at all: the provider is unlimited, as if never configured."""
        return self.requests_per_minute is None and self.max_in_flight is None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "max_in_flight": self.max_in_flight,
        }


#: What the providers publish. OneRouter (docs.onerouter.pro/features/rate-limits): community
#: accounts get 600 requests/min and 30 concurrent tasks, then 429 with no Retry-After. The others
#: publish nothing per key that a sandbox could enforce across plans, so they are left out.
DOCUMENTED_LIMITS: Mapping[str, ServerLimits] = {"onerouter": ServerLimits(600, 30)}


def _positive(name: str, value: Any) -> int | None:
    """A limit value: None (unlimited) or an integer >= 1 (0 would refuse everything)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}") from None
    if number != value and not isinstance(value, str):  # 2.5 requests is a typo, not a limit
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
    if number < 1:
        raise ValueError(f"{name} must be at least 1 (None: unlimited), not {number}")
    return number


def coerce_limits(value: Any) -> ServerLimits:
    """A `ServerLimits` from what a caller, a JSON body or a CLI flag hands over.

    Accepts a `ServerLimits`, a `(rpm, in_flight)` sequence, a mapping with `requests_per_minute` /
    `max_in_flight`, or None (no limits). Anything else raises `ValueError`, so a typo in a
    benchmark's configuration fails loudly instead of silently running unlimited.
    """
    if value is None:
        return ServerLimits()
    if isinstance(value, Mapping):
        unknown = set(value) - set(ServerLimits._fields)
        if unknown:
            known = ServerLimits._fields
            raise ValueError(f"unknown limit fields {sorted(unknown)}; known: {known}")
        rpm, in_flight = value.get("requests_per_minute"), value.get("max_in_flight")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        rpm, in_flight = value
    else:
        raise ValueError(f"limits must be (requests_per_minute, max_in_flight), not {value!r}")
    return ServerLimits(
        _positive("requests_per_minute", rpm), _positive("max_in_flight", in_flight)
    )


def parse_limit_spec(text: str) -> tuple[str, ServerLimits]:
    """`PROVIDER=RPM/INFLIGHT` from the CLI; either number may be empty or '-' (unlimited).

    `onerouter=600/30`, `segmind=50` (rpm only), `oxen=/4` (in-flight only). The provider name is
    checked by the caller, which knows the providers.
    """
    provider, sep, numbers = text.partition("=")
    provider = provider.strip().lower()
    if not sep or not provider:
        raise ValueError(f"expected PROVIDER=RPM/INFLIGHT, got {text!r}")
    rpm, _, in_flight = numbers.partition("/")
    values = [part.strip() for part in (rpm, in_flight)]
    values = ["" if part == "-" else part for part in values]
    limits = coerce_limits(tuple(values))
    if limits.empty:
        raise ValueError(f"{text!r} sets no limit; give RPM, INFLIGHT or both")
    return provider, limits
