"""The sandbox's shared state: tasks, counters, result files, limits and SSE subscribers.

One `State` per `Sandbox`, shared by the five protocol apps. Tasks and files are `_tasks`'
`SimTask` and `FileEntry`; the limits' bookkeeping is `_limits.LimitBook`; rendering is
`_result_files.Renderer`. Only Oxen's push events and RixAPI's callbacks schedule anything, and
only for their own tasks.

All mutation happens under one `threading.RLock`: handlers run on the sandbox's event-loop thread
while tests call `stats()`, `set_faults()` and `reset()` from theirs. Nothing here awaits while
holding the lock.
"""

from __future__ import annotations

import asyncio
import copy
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ._faults import Dice, FaultConfig
from ._limits import LIMIT_WINDOW, LimitBook
from ._result_files import Renderer, requested_seconds
from ._tasks import FileEntry, SimTask, fingerprint, kind_for

__all__ = ["Options", "State"]

#: The jitter RNG's seed when the faults give none: durations stay reproducible run to run.
JITTER_SEED = 0

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
        self.book = LimitBook(self.lock, options.limit_window)
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
            self.book.clear()
            self._stats = _new_stats()
            self._counter = 0
            self.faults = self._initial_faults.copy()
            self._reseed()

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
        out.update(self.book.snapshot())
        out["renders"] = self.renderer.renders
        out["tasks_alive"] = len(self.tasks)
        out["sse_subscribers"] = sum(len(s) for s in self.subscribers.values())
        return out

    def finish_times(self, provider: str | None = None) -> dict[str, dict[str, float]]:
        """provider -> {task id: when its status turns (turned) terminal}, as `time.time()`.

        The moment a finish or a cancellation shows on a poll, whichever comes first; a task not
        done yet has its planned finish. Benchmarks compare it with when a client returned from
        waiting on the task (same machine, same wall clock): how late the client knew.
        """
        out: dict[str, dict[str, float]] = defaultdict(dict)
        with self.lock:
            for task in self.tasks.values():
                if provider is None or task.provider == provider:
                    stop = task.cancelled_at
                    end = task.finished if stop is None else min(stop, task.finished)
                    out[task.provider][task.id] = end
        return dict(out)

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
            self.book.track(task)
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
