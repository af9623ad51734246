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
is, and `DOCUMENTED_LIMITS` compares equal to `{"onerouter": (600, 30)}`. `LimitBook` does the
counting, per (provider, account): a deque of request times for the sliding requests-per-minute
window, and a short list of the account's possibly-unfinished tasks for the in-flight count
(pruned on every look, so it stays as long as what is in flight). Both are tracked even for
providers without limits, because the peaks they yield are what a benchmark wants to report.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

from ._tasks import SimTask

__all__ = [
    "DOCUMENTED_LIMITS",
    "LIMIT_WINDOW",
    "LimitBook",
    "Refusal",
    "ServerLimits",
    "coerce_limits",
    "known_provider",
    "parse_limit_spec",
]

LimitReason = Literal["rate", "in_flight"]
#: How long an admitted submit counts as in flight before its task exists (one whose handler
#: refused it, for bad params or an injected fault, never creates a task).
ADMITTED_SECONDS = 5.0

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


class _Documented(Mapping[str, ServerLimits]):
    """The published per-key limits, read off the protocol modules (their optional `LIMITS`),
    when first asked for: a protocol that documents limits brings them with it."""

    def _rows(self) -> dict[str, ServerLimits]:
        from ._protocols import protocols  # (they import this module)

        return {name: p.limits for name, p in protocols().items() if p.limits is not None}

    def __getitem__(self, name: str) -> ServerLimits:
        return self._rows()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows())

    def __len__(self) -> int:
        return len(self._rows())

    def __repr__(self) -> str:
        return repr(self._rows())


#: What the providers publish and a sandbox can enforce across plans (OneRouter's, so far: see
#: `sandbox/_onerouter.py`); each protocol module declares its own as `LIMITS`.
DOCUMENTED_LIMITS: Mapping[str, ServerLimits] = _Documented()


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


def known_provider(name: str) -> str:
    """A provider name limits can be keyed by; a typo raises instead of limiting nothing."""
    if name == "onerouter_poll":
        raise ValueError("onerouter_poll shares onerouter's limits; set them on 'onerouter'")
    from ._protocols import protocol_names  # (they import this module)

    # the providers served; OneRouter's poll host is part of "onerouter" (its account and limits)
    known = protocol_names()
    if name not in known:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(known)}")
    return name



class Refusal(NamedTuple):
    """Why a request is refused by a limit, for the 429 the app sends."""

    reason: LimitReason
    message: str
    reset_in: float | None  # seconds until a retry would pass (None: unknowable, e.g. in flight)



class LimitBook:
    """Each account's request window and tasks in flight, checked against the limits in force.

    It shares the sandbox state's lock: it reads the tasks' phases, and `stats()` snapshots its
    counters under the same lock as the others.
    """

    def __init__(self, lock: threading.RLock, window: float = LIMIT_WINDOW) -> None:
        self.lock = lock
        self.window = window
        self.limits: dict[str, ServerLimits] = {}
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._active: dict[tuple[str, str], list[SimTask]] = {}
        # Submits admitted but whose task is not created yet (monotonic admit times): counted as
        # in flight, so concurrent submits cannot all pass the check before any task exists.
        self._admitted: dict[tuple[str, str], deque[float]] = {}
        self.limited: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.peak_requests_per_minute: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}

    def clear(self) -> None:
        """Forget the windows, in-flight lists and counters; the limits themselves stay."""
        with self.lock:
            self._windows.clear()
            self._active.clear()
            self._admitted.clear()
            self.limited.clear()
            self.peak_requests_per_minute.clear()
            self.peak_in_flight.clear()

    def set(self, provider: str, limits: ServerLimits) -> dict[str, ServerLimits]:
        """One provider's limits (empty: unlimited). Counters already running are kept, so a
        tighter limit takes effect at once against what the account has already done."""
        name = known_provider(provider)
        with self.lock:
            if limits.empty:
                self.limits.pop(name, None)
            else:
                self.limits[name] = limits
            return dict(self.limits)

    def replace(self, limits: Mapping[str, Any] | None) -> dict[str, ServerLimits]:
        """All limits at once; validated before anything changes."""
        parsed = {
            known_provider(name): coerce_limits(value) for name, value in (limits or {}).items()
        }
        with self.lock:
            self.limits = {name: value for name, value in parsed.items() if not value.empty}
            return dict(self.limits)

    def admit(self, provider: str, account: str, *, submit: bool) -> Refusal | None:
        """Count one API request against the account's limits; a `Refusal` means answer 429.

        Called right after auth, before fault injection. A request refused for the rate is not
        counted in the window (the client's retry must not be punished for the refusal); a submit
        refused for the in-flight limit is counted, since it reached a server that did look.
        """
        now = time.monotonic()
        key = (provider, account)
        with self.lock:
            limits = self.limits.get(provider, ServerLimits())
            times = self._windows.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            rpm = limits.requests_per_minute
            if rpm is not None and len(times) >= rpm:
                self.limited[provider]["rate"] += 1
                reset_in = max(0.0, times[0] + self.window - now)
                return Refusal("rate", f"Rate limit exceeded: {rpm} requests per minute", reset_in)
            times.append(now)
            peaks = self.peak_requests_per_minute
            peaks[provider] = max(peaks.get(provider, 0), len(times))
            cap = limits.max_in_flight
            if submit and cap is not None:
                if self._in_flight(key, time.time()) + self._pending(key, now) >= cap:
                    self.limited[provider]["in_flight"] += 1
                    message = f"Too many concurrent tasks: at most {cap} in progress"
                    return Refusal("in_flight", message, None)
                self._admitted.setdefault(key, deque()).append(now)
            return None

    def track(self, task: SimTask) -> None:
        """Add a new task to its account's in-flight list and raise the peak."""
        key = (task.provider, task.account)
        with self.lock:
            count = self._in_flight(key, task.created)
            admitted = self._admitted.get(key)
            if admitted:
                admitted.popleft()  # this submit's admission becomes the task itself
            self._active.setdefault(key, []).append(task)
            peaks = self.peak_in_flight
            peaks[task.provider] = max(peaks.get(task.provider, 0), count + 1)

    def snapshot(self) -> dict[str, Any]:
        """The counters for `stats()`: 429s per provider and reason (every limited provider
        listed, zeros included), and the peaks."""
        with self.lock:
            names = sorted(set(self.limits) | set(self.limited))
            return {
                "limited": {
                    name: {reason: self.limited[name][reason] for reason in ("rate", "in_flight")}
                    for name in names
                },
                "peak_requests_per_minute": dict(self.peak_requests_per_minute),
                "peak_in_flight": dict(self.peak_in_flight),
            }

    def _pending(self, key: tuple[str, str], now: float) -> int:
        """Admitted submits still being handled (lock held)."""
        admitted = self._admitted.get(key)
        while admitted and admitted[0] < now - ADMITTED_SECONDS:
            admitted.popleft()
        return len(admitted) if admitted else 0

    def _in_flight(self, key: tuple[str, str], now: float) -> int:
        """How many of the account's tasks are queued or running; prunes the rest (lock held)."""
        active = [task for task in self._active.get(key, ()) if task.in_flight(now)]
        if active:
            self._active[key] = active
        else:
            self._active.pop(key, None)
        return len(active)
