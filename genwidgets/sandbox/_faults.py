"""What can go wrong, as data: `FaultConfig`, plus the seeded dice that decide each request.

Rates are probabilities drawn per request from one seeded RNG, so a run with the same seed and
the same request order injects the same faults. Prompt markers (`[fail]`, `[slow]`, `[expire]`)
are deterministic and independent of the rates, for tests that need one exact outcome.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FaultConfig", "PollFault", "decide_poll_fault"]

PollFault = Literal["burst_429", "429", "5xx", "reset", "malformed"] | None


@dataclass
class FaultConfig:
    """Faults to inject. Every probability is 0 and every switch off by default.

    Poll faults (`rate_limit_rate`, `error_rate`, `reset_rate`, `malformed_rate`, `burst_429`)
    hit the endpoints that report a task's state (status, result, legacy poll); submit faults hit
    the POST that creates a task. Mutate a live sandbox's config with `sb.set_faults(...)` or
    `POST /_sandbox/faults`; the changes apply to the next request.
    """

    latency: float = 0.0
    """seconds added before every response (admin endpoints excepted)"""
    error_rate: float = 0.0
    """probability of a 5xx (500/502/503, provider-shaped body) on a poll"""
    rate_limit_rate: float = 0.0
    """probability of a 429 on a poll"""
    retry_after: float | None = None
    """seconds announced on 429s (`Retry-After`; Segmind: `x-rate-limit-reset-at-utc`); None: no
    header at all"""
    submit_rate_limit_rate: float = 0.0
    """probability of a 429 on a submit, before anything is created (safe to resubmit)"""
    submit_error_rate: float = 0.0
    """probability of a 5xx on a submit AFTER the task was created (the ambiguous case: a blind
    retry would create a second task)"""
    reset_rate: float = 0.0
    """probability that a poll response is started and then the connection is dropped"""
    malformed_rate: float = 0.0
    """probability that a poll answers 200 with its JSON body cut in half"""
    fail_rate: float = 0.0
    """probability that a new task ends failed with the provider's error shape"""
    expire_after: float | None = None
    """seconds after creation when new tasks start to answer 404 (None: never, except Segmind's
    retention)"""
    one_shot_urls: bool = False
    """result URLs work once, then answer 403 like an expired presigned URL"""
    hostile_names: bool = False
    """NetMind's `file_name` becomes a path-traversal / markup attempt"""
    burst_429: int = 0
    """the next N polls answer 429 (counts down as they are served)"""
    stream_error_rate: float = 0.0
    """probability that opening a task's status stream (fal) answers 5xx"""
    stream_cut_after: int | None = None
    """a task's status stream (fal) drops its connection instead of sending event N+1"""
    stream_stall: bool = False
    """a task's status stream (fal) goes silent after its first event: no event, no keep-alive"""
    seed: int | None = None
    """seed of the fault RNG (None: a random seed)"""

    def update(self, **changes: Any) -> None:
        """Set several fields at once; unknown names raise `TypeError` (typos must not pass)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise TypeError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
        for name, value in changes.items():
            setattr(self, name, _coerce(name, value))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> FaultConfig:
        return dataclasses.replace(self)


_FLOATS = {
    "latency",
    "error_rate",
    "rate_limit_rate",
    "submit_rate_limit_rate",
    "submit_error_rate",
    "reset_rate",
    "malformed_rate",
    "fail_rate",
    "stream_error_rate",
}
_OPTIONAL_FLOATS = {"retry_after", "expire_after"}


def _coerce(name: str, value: Any) -> Any:
    """Values arriving as JSON or CLI text get their field's type (or a `TypeError`)."""
    try:
        if name in _FLOATS:
            return max(0.0, float(value))
        if name in _OPTIONAL_FLOATS:
            return None if value is None or value == "" else max(0.0, float(value))
        if name in ("one_shot_urls", "hostile_names", "stream_stall"):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if name == "burst_429":
            return max(0, int(value))
        if name == "stream_cut_after":
            return None if value is None or value == "" else max(0, int(value))
        if name == "seed":
            return None if value is None else int(value)
    except (TypeError, ValueError):
        raise TypeError(f"fault {name!r} got an invalid value {value!r}") from None
    return value


@dataclass
class Dice:
    """The fault RNG; reseeded whenever the config's seed is set."""

    rng: random.Random = field(default_factory=random.Random)

    def reseed(self, seed: int | None) -> None:
        self.rng.seed(seed)

    def hit(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability


def decide_poll_fault(faults: FaultConfig, dice: Dice) -> PollFault:
    """Which fault (if any) this poll gets; call with the state lock held."""
    if faults.burst_429 > 0:
        faults.burst_429 -= 1
        return "burst_429"
    if dice.hit(faults.rate_limit_rate):
        return "429"
    if dice.hit(faults.error_rate):
        return "5xx"
    if dice.hit(faults.reset_rate):
        return "reset"
    if dice.hit(faults.malformed_rate):
        return "malformed"
    return None
