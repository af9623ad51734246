"""The sandbox's shared state: simulated tasks, counters, result files and SSE subscribers.

A task stores only its creation time and durations; its status is computed from the clock on
each request (`SimTask.phase`), so a thousand idle tasks cost a dict entry each and no timers.
Only Oxen's push events and RixAPI's callbacks schedule anything, and only for their own tasks.

Limits (`_limits.py`) are enforced here too, per (provider, account): a deque of request times for
the sliding requests-per-minute window, and a short list of the account's possibly-unfinished
tasks for the in-flight count (pruned on every look, so it stays as long as what is in flight).
Both are tracked even for providers without limits, because the peaks they yield are what a
benchmark wants to report.

All mutation happens under one `threading.RLock`: handlers run on the sandbox's event-loop thread
while tests call `stats()`, `set_faults()` and `reset()` from theirs. Nothing here awaits while
holding the lock.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import random
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._faults import Dice, FaultConfig
from ._limits import LIMIT_WINDOW, ServerLimits, coerce_limits
from ._result_files import Renderer, requested_seconds

__all__ = [
    "PROVIDERS",
    "FileEntry",
    "Refusal",
    "SimTask",
    "State",
    "account_of",
    "kind_for",
]

#: The provider names every per-provider setting is keyed by (OneRouter's poll host is part of
#: "onerouter": it shares its account, its tasks and its limits).
PROVIDERS = ("onerouter", "segmind", "rixapi", "netmind", "oxen")
#: The jitter RNG's seed when the faults give none: durations stay reproducible run to run.
JITTER_SEED = 0

Kind = Literal["image", "video", "audio", "text"]
Phase = Literal["queued", "running", "succeeded", "failed", "cancelled"]
LimitReason = Literal["rate", "in_flight"]

_AUDIO_WORDS = ("audio", "music", "tts", "speech", "mmaudio")
_TEXT_WORDS = ("llm", "chat", "text")
_IMAGE_WORDS = ("image", "img", "photo", "picture")
#: Video model families whose names do not say "video" (the catalogues' seedance, veo-3,
#: runway-gen4, luma-ray-2, vidu-2.0, kling-v3, ...).
_VIDEO_FAMILIES = ("seedance", "veo", "runway", "luma", "vidu", "kling", "hailuo", "sora", "pika")


def kind_for(provider: str, model: str, params: Mapping[str, Any] | None = None) -> Kind:
    """What a model produces, from its name and request: the sandbox has no catalogue, on purpose.

    'video' in the name wins, then the audio words, then (Segmind only, the one provider with text
    models) 'llm'/'chat'/'text' unless the name also says image ('text-to-image' is an image
    model), then the image words; then a video family's name (seedance, veo, kling...) or a
    request that asks for a length (`duration`, `seconds`) makes a video; everything else makes
    images.
    """
    name = model.lower()
    if "video" in name:
        return "video"
    if any(word in name for word in _AUDIO_WORDS):
        return "audio"
    says_image = any(word in name for word in _IMAGE_WORDS)
    if provider == "segmind" and any(word in name for word in _TEXT_WORDS) and not says_image:
        return "text"
    if says_image:
        return "image"
    if any(family in name for family in _VIDEO_FAMILIES):
        return "video"
    if params and any(params.get(field) is not None for field in ("duration", "seconds")):
        return "video"
    return "image"


def _known_provider(name: str) -> str:
    """A provider name limits can be keyed by; a typo raises instead of limiting nothing."""
    if name == "onerouter_poll":
        raise ValueError("onerouter_poll shares onerouter's limits; set them on 'onerouter'")
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}")
    return name


def account_of(key: str) -> str:
    """A stable account id for a key; the key itself is never stored."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]


def fingerprint(provider: str, model: str, body: Any) -> str:
    """provider:model:hash of the canonical JSON body -- the same submit twice has one print."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{provider}:{model}:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


@dataclass
class FileEntry:
    """A result file behind an unguessable token. Bytes are rendered on demand (memoized)."""

    token: str
    kind: Kind
    prompt: str
    seed: int
    size: int | None = None  # known once rendered, or the requested size of a big file
    big: bool = False
    seconds: float | None = None  # a video's or audio's requested length (None: the default)
    downloads: int = 0

    @property
    def ext(self) -> str:
        return {"image": "png", "video": "mp4", "audio": "wav", "text": "txt"}[self.kind]

    @property
    def content_type(self) -> str:
        return {
            "image": "image/png",
            "video": "video/mp4",
            "audio": "audio/wav",
            "text": "text/plain; charset=utf-8",
        }[self.kind]

    def path(self) -> str:
        return f"/files/{self.token}.{self.ext}"


@dataclass
class SimTask:
    """One simulated task. Its timeline is fixed at creation; the status is read off the clock."""

    id: str
    provider: str
    model: str
    account: str
    kind: Kind
    prompt: str
    seed: int
    params: dict[str, Any]
    created: float
    queue_seconds: float
    run_seconds: float
    fails: bool = False
    error: str | None = None
    expires_at: float | None = None
    cancelled_at: float | None = None
    deleted_at: float | None = None
    big_bytes: int | None = None
    callback_url: str | None = None
    files: list[FileEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> float:
        return self.created + self.queue_seconds

    @property
    def finished(self) -> float:
        return self.started + self.run_seconds

    def phase(self, now: float) -> Phase:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        if now < self.started:
            return "queued"
        if now < self.finished:
            return "running"
        return "failed" if self.fails else "succeeded"

    def run_fraction(self, now: float) -> float:
        """0..1 through the running phase (OneRouter splits it into in_progress/processing)."""
        if self.run_seconds <= 0:
            return 1.0
        return min(1.0, max(0.0, (now - self.started) / self.run_seconds))

    def gone(self, now: float) -> bool:
        """Past retention/expiry or deleted: every endpoint answers 404 from now on."""
        if self.deleted_at is not None:
            return True
        return self.expires_at is not None and now >= self.expires_at

    def changed_at(self, now: float) -> float:
        """When the visible status last changed (NetMind's updated_at)."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return self.cancelled_at
        if now >= self.finished:
            return self.finished
        if now >= self.started:
            return self.started
        return self.created

    def in_flight(self, now: float) -> bool:
        """Still occupying one of the account's concurrent slots (queued or running, not gone)."""
        return not self.gone(now) and self.phase(now) in ("queued", "running")


class Refusal(NamedTuple):
    """Why a request is refused by a limit, for the 429 the app sends."""

    reason: LimitReason
    message: str
    reset_in: float | None  # seconds until a retry would pass (None: unknowable, e.g. in flight)


def _new_stats() -> dict[str, Any]:
    return {
        "requests": defaultdict(Counter),
        "submits": Counter(),
        "submit_fingerprints": Counter(),
        "tasks": 0,
        "cancels": 0,
        "deletes": 0,
        "statuses": Counter(),
        "statuses_by_provider": defaultdict(Counter),
        "resets": 0,
        "malformed": 0,
        "sse_connections": 0,
        "sse_events": 0,
        "callbacks": 0,
        "callback_errors": 0,
        "downloads": 0,
        "cancel_times": [],
        "limited": defaultdict(Counter),
        "peak_requests_per_minute": {},
        "peak_in_flight": {},
    }


@dataclass
class Options:
    """Sandbox-wide settings that are not faults."""

    task_seconds: float = 0.5
    queue_seconds: float = 0.1
    sse_keepalive: float = 15.0
    segmind_retention: float | None = 3600.0
    netmind_models: Collection[str] | None = None
    big_bytes: int = 2**30
    callbacks: bool = True
    task_jitter: float = 0.0
    """each run time is scaled by uniform(1 - j, 1 + j); 0 keeps durations exact"""
    limit_window: float = LIMIT_WINDOW
    """length of the requests-per-minute window (tests shrink it; 60 s is what providers mean)"""


class State:
    """Everything the five protocol apps share. One instance per `Sandbox`."""

    def __init__(self, faults: FaultConfig, options: Options, renderer: Renderer) -> None:
        self.lock = threading.RLock()
        self.options = options
        self.renderer = renderer
        self._initial_faults = faults.copy()
        self.faults = faults.copy()
        self.dice = Dice()
        # Separate from the fault dice, so turning jitter on does not shift which requests fault.
        self.jitter = random.Random()
        self._reseed()
        self.limits: dict[str, ServerLimits] = {}
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._active: dict[tuple[str, str], list[SimTask]] = {}
        # Submits admitted but whose task is not created yet (monotonic admit times): counted as
        # in flight, so concurrent submits cannot all pass the check before any task exists.
        self._admitted: dict[tuple[str, str], deque[float]] = {}
        self.tasks: dict[str, SimTask] = {}
        self.files: dict[str, FileEntry] = {}
        self.subscribers: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        self.origins: dict[str, str] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing: asyncio.Event | None = None
        self._stats = _new_stats()
        self._counter = 0

    # ------------------------------------------------------------------------------ faults
    def _reseed(self) -> None:
        """Both RNGs from the fault seed: one seed reproduces the faults and the durations."""
        self.dice.reseed(self.faults.seed)
        self.jitter.seed(JITTER_SEED if self.faults.seed is None else self.faults.seed)

    def set_faults(self, **changes: Any) -> FaultConfig:
        with self.lock:
            self.faults.update(**changes)
            if "seed" in changes:
                self._reseed()
            return self.faults.copy()

    def replace_faults(self, faults: FaultConfig) -> None:
        with self.lock:
            self.faults = faults.copy()
            self._reseed()

    def reset(self) -> None:
        """Forget tasks, files and counters; faults go back to the ones given at start.

        Limits are configuration, like the ports: they stay. Their windows and in-flight lists
        are cleared with the tasks, so a reset account starts with its whole budget.
        """
        with self.lock:
            self.tasks.clear()
            self.files.clear()
            self._windows.clear()
            self._active.clear()
            self._admitted.clear()
            self._stats = _new_stats()
            self._counter = 0
            self.faults = self._initial_faults.copy()
            self._reseed()

    # ------------------------------------------------------------------------------ limits
    def set_limits(
        self,
        provider: str | None = None,
        requests_per_minute: int | None = None,
        max_in_flight: int | None = None,
    ) -> dict[str, ServerLimits]:
        """One provider's limits (both None: unlimited); no provider at all clears every limit.

        Counters already running are kept, so tightening a limit mid-run takes effect at once
        against what the account has already done.
        """
        with self.lock:
            if provider is None:
                if requests_per_minute is not None or max_in_flight is not None:
                    raise ValueError("name the provider these limits are for")
                self.limits.clear()
                return dict(self.limits)
            name = _known_provider(provider)
            limits = coerce_limits((requests_per_minute, max_in_flight))
            if limits.empty:
                self.limits.pop(name, None)
            else:
                self.limits[name] = limits
            return dict(self.limits)

    def replace_limits(self, limits: Mapping[str, Any] | None) -> dict[str, ServerLimits]:
        """All limits at once (the constructor's `limits=`); validated before anything changes."""
        parsed = {
            _known_provider(name): coerce_limits(value) for name, value in (limits or {}).items()
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
        window = self.options.limit_window
        key = (provider, account)
        with self.lock:
            limits = self.limits.get(provider, ServerLimits())
            times = self._windows.get(key)
            if times is None:
                times = self._windows[key] = deque()
            while times and times[0] <= now - window:
                times.popleft()
            rpm = limits.requests_per_minute
            if rpm is not None and len(times) >= rpm:
                self._stats["limited"][provider]["rate"] += 1
                return Refusal(
                    "rate",
                    f"Rate limit exceeded: {rpm} requests per minute",
                    max(0.0, times[0] + window - now),
                )
            times.append(now)
            peaks = self._stats["peak_requests_per_minute"]
            peaks[provider] = max(peaks.get(provider, 0), len(times))
            cap = limits.max_in_flight
            if submit and cap is not None:
                if self._in_flight(key, time.time()) + self._pending(key, now) >= cap:
                    self._stats["limited"][provider]["in_flight"] += 1
                    return Refusal(
                        "in_flight", f"Too many concurrent tasks: at most {cap} in progress", None
                    )
                self._admitted.setdefault(key, deque()).append(now)
            return None

    def _pending(self, key: tuple[str, str], now: float) -> int:
        """Admitted submits still being handled (lock held). One whose handler refused it (bad
        params, an injected fault) never creates a task; it stops counting after 5 s."""
        admitted = self._admitted.get(key)
        while admitted and admitted[0] < now - 5.0:
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

    def _track(self, task: SimTask) -> None:
        """Add a new task to its account's in-flight list and raise the peak (lock held)."""
        key = (task.provider, task.account)
        count = self._in_flight(key, task.created)
        admitted = self._admitted.get(key)
        if admitted:
            admitted.popleft()  # this submit's admission becomes the task itself
        self._active.setdefault(key, []).append(task)
        peaks = self._stats["peak_in_flight"]
        peaks[task.provider] = max(peaks.get(task.provider, 0), count + 1)

    # ------------------------------------------------------------------------------ stats
    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self._stats[key] += n

    def count_request(self, provider: str, endpoint: str) -> None:
        with self.lock:
            self._stats["requests"][provider][endpoint] += 1

    def count_status(self, provider: str, status: int) -> None:
        with self.lock:
            self._stats["statuses"][str(status)] += 1
            self._stats["statuses_by_provider"][provider][str(status)] += 1

    def record_submit(self, provider: str, model: str, body: Any) -> None:
        with self.lock:
            self._stats["submits"][provider] += 1
            self._stats["submit_fingerprints"][fingerprint(provider, model, body)] += 1

    def record_cancel(self, provider: str, task_id: str) -> None:
        """When a cancel or delete was accepted, by the wall clock another process can compare."""
        with self.lock:
            self._stats["cancel_times"].append([provider, task_id, time.time()])

    def stats(self) -> dict[str, Any]:
        """A plain-dict snapshot (JSON-ready), safe to keep while the sandbox runs on."""
        with self.lock:
            snap = copy.deepcopy(self._stats)
        out: dict[str, Any] = {}
        for key, value in snap.items():
            if isinstance(value, defaultdict):
                out[key] = {k: dict(v) for k, v in value.items()}
            elif isinstance(value, Counter):
                out[key] = dict(value)
            else:
                out[key] = value
        with self.lock:
            limited_providers = set(self.limits) | set(out["limited"])
        out["limited"] = {
            name: {
                reason: out["limited"].get(name, {}).get(reason, 0)
                for reason in ("rate", "in_flight")
            }
            for name in sorted(limited_providers)
        }
        out["renders"] = self.renderer.renders
        out["tasks_alive"] = len(self.tasks)
        out["sse_subscribers"] = sum(len(s) for s in self.subscribers.values())
        return out

    # ------------------------------------------------------------------------------ tasks
    def create_task(
        self,
        *,
        provider: str,
        model: str,
        account: str,
        prompt: str,
        seed: int,
        params: Mapping[str, Any],
        task_id: str,
        failure: str,
        force_failure: str | None = None,
        callback_url: str | None = None,
        big_bytes: int | None = None,
        retention: float | None = None,
    ) -> SimTask:
        """A new task with its whole timeline decided now (fault dice included)."""
        now = time.time()
        with self.lock:
            faults = self.faults
            run = self.options.task_seconds * (10.0 if "[slow]" in prompt else 1.0)
            jitter = self.options.task_jitter
            if jitter > 0:  # no draw at 0: today's durations, and today's RNG state, exactly
                run *= self.jitter.uniform(1.0 - jitter, 1.0 + jitter)
            queued = self.options.queue_seconds
            fails = (
                force_failure is not None or "[fail]" in prompt or self.dice.hit(faults.fail_rate)
            )
            expiries = []
            if faults.expire_after is not None:
                expiries.append(now + faults.expire_after)
            if "[expire]" in prompt:
                expiries.append(now + queued + run)  # right at success
            if retention is not None:
                expiries.append(now + retention)
            task = SimTask(
                id=task_id,
                provider=provider,
                model=model,
                account=account,
                kind=kind_for(provider, model, params),
                prompt=prompt,
                seed=seed,
                params=dict(params),
                created=now,
                queue_seconds=queued,
                run_seconds=run,
                fails=fails,
                error=(force_failure or failure) if fails else None,
                expires_at=min(expiries) if expiries else None,
                callback_url=callback_url,
                big_bytes=big_bytes,
            )
            self.tasks[task_id] = task
            self._track(task)
            self._stats["tasks"] += 1
            self._counter += 1
            task.extra["serial"] = self._counter
            return task

    def find(self, provider: str, task_id: str, account: str) -> SimTask | None:
        """The caller's live task, or None (unknown, someone else's, expired, deleted)."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task.provider != provider or task.account != account:
                return None
            if task.gone(time.time()):
                return None
            return task

    def alive(self, task: SimTask) -> bool:
        """Still the same task in the store (a reset forgets everything)."""
        with self.lock:
            return self.tasks.get(task.id) is task

    def tasks_of(self, provider: str, account: str) -> list[SimTask]:
        now = time.time()
        with self.lock:
            return [
                t
                for t in self.tasks.values()
                if t.provider == provider and t.account == account and not t.gone(now)
            ]

    # ------------------------------------------------------------------------------ files
    def files_for(self, task: SimTask) -> list[FileEntry]:
        """The task's result files, registered on first need (one per task)."""
        with self.lock:
            if not task.files:
                entry = FileEntry(
                    token=secrets.token_urlsafe(18),
                    kind=task.kind,
                    prompt=task.prompt,
                    seed=task.seed,
                    size=task.big_bytes,
                    big=task.big_bytes is not None,
                    seconds=requested_seconds(task.params),
                )
                if self.tasks.get(task.id) is task:
                    self.files[entry.token] = entry
                task.files.append(entry)
            return list(task.files)

    async def sized_files_for(self, task: SimTask) -> list[FileEntry]:
        """Like `files_for`, with sizes known (renders now if needed; Segmind reports sizes)."""
        entries = self.files_for(task)
        for entry in entries:
            if entry.size is None:
                data = await self.renderer.get(entry.kind, entry.prompt, entry.seed, entry.seconds)
                entry.size = len(data)
        return entries

    def file(self, token: str) -> FileEntry | None:
        with self.lock:
            return self.files.get(token)

    # ------------------------------------------------------------------------------ push
    def subscribe(self, account: str) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        with self.lock:
            self.subscribers[account].add(queue)
            self._stats["sse_connections"] += 1
        return queue

    def unsubscribe(self, account: str, queue: asyncio.Queue[bytes]) -> None:
        with self.lock:
            subs = self.subscribers.get(account)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self.subscribers[account]

    def publish(self, account: str, message: bytes) -> int:
        """Hand one SSE message to the account's current subscribers; nothing is kept."""
        with self.lock:
            queues = list(self.subscribers.get(account, ()))
            delivered = 0
            for queue in queues:
                try:
                    queue.put_nowait(message)
                    delivered += 1
                except asyncio.QueueFull:  # a stuck reader loses events, like a real broker
                    pass
            self._stats["sse_events"] += delivered
            return delivered

    def call_at(self, when: float, callback: Any, *args: Any) -> None:
        """Run `callback(*args)` on the loop at wall-clock time `when`."""
        assert self.loop is not None
        self.loop.call_later(max(0.0, when - time.time()), callback, *args)
