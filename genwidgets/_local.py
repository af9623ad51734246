"""The embedded `local` provider's engine: models run in worker threads, off the event loop, with
the same lifecycle a remote provider has (queued with a position, running with progress,
succeeded, failed or cancelled).

Built-in models are procedural demos (`genwidgets._media`). Users register their own callables
(`register_local_model`), e.g. a diffusers pipeline on their GPU. The registry of models lives with
the local provider (`providers.local`); its functions are importable from here too.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._cache import Cache
from ._models import Output, OutputKind, Status, Task, utcnow
from .providers.local import (
    LocalModel,
    local_model,
    local_models,
    register_local_model,
    unregister_local_model,
)

__all__ = [
    "LocalEngine",
    "local_models",
    "register_local_model",
    "unregister_local_model",
]


class Cancelled(Exception):
    """Raised inside a worker (from `progress`) when its task was cancelled."""


def _duration(params: Mapping[str, Any], default: float) -> float:
    if params.get("duration") is not None:
        return float(params["duration"])
    env = os.environ.get("GENWIDGETS_LOCAL_DURATION")
    return float(env) if env else default


def _pace(seconds: float, progress: Callable[[float], None], start: float, span: float) -> None:
    """Let `seconds` pass in small steps, reporting progress from `start` to `start + span`."""
    steps = max(1, int(seconds / 0.1))
    for i in range(steps):
        time.sleep(seconds / steps)
        progress(start + span * (i + 1) / steps)


def _size(params: Mapping[str, Any], default: int) -> tuple[int, int]:
    width, height = int(params.get("width") or default), int(params.get("height") or default)
    ratio = params.get("aspect_ratio")
    if ratio:
        a, b = (int(x) for x in str(ratio).split(":"))
        if a >= b:
            height = max(16, round(width * b / a))
        else:
            width = max(16, round(height * a / b))
    return width, height


def _image(prompt: str, progress: Callable[[float], None], seed: int = 0, **params: Any) -> bytes:
    from ._media import render_image

    _pace(_duration(params, 1.0), progress, 0.0, 0.9)
    width, height = _size(params, 512)
    return render_image(prompt, seed, width, height)


def _audio(prompt: str, progress: Callable[[float], None], seed: int = 0, **params: Any) -> bytes:
    from ._media import render_audio

    _pace(_duration(params, 1.5), progress, 0.0, 0.9)
    return render_audio(
        prompt, seed, float(params.get("seconds") or 2.0), params.get("speech", True)
    )


def _video(prompt: str, progress: Callable[[float], None], seed: int = 0, **params: Any) -> bytes:
    from ._media import render_video

    _pace(_duration(params, 3.0), progress, 0.0, 0.5)
    width, height = _size(params, 256)
    return render_video(
        prompt,
        seed,
        float(params.get("seconds") or 2.0),
        int(params.get("fps") or 12),
        width,
        height,
        progress=lambda f: progress(0.5 + 0.5 * f),
    )


#: The engine's own generators for the built-in demo models (their catalogue is in
#: `providers.local`); a model a user registers under one of these names replaces it.
_BUILTINS: dict[str, Callable[..., Any]] = {"image": _image, "audio": _audio, "video": _video}


@dataclass
class _Job:
    task: Task
    cancelled: threading.Event = field(default_factory=threading.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


class LocalEngine:
    """Runs local models in a thread pool; snapshots are updated on the event loop's thread."""

    def __init__(self, cache: Cache, *, max_workers: int = 2) -> None:
        self._cache = cache
        # Daemon threads, not a ThreadPoolExecutor: a long demo video must not hold up the exit of
        # a kernel that is shutting down (executor threads are joined at interpreter exit).
        self._slots = threading.BoundedSemaphore(max_workers)
        self._jobs: dict[str, _Job] = {}
        self._waiting: list[str] = []  # queued ids, in order
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, model: str, params: dict[str, Any]) -> Task:
        self._loop = asyncio.get_running_loop()
        entry = local_model(model)
        if entry is None:
            raise KeyError(model)
        if entry.fn is None:
            entry = LocalModel(entry.info, _BUILTINS[model])
        task = Task(
            id=f"local-{uuid.uuid4().hex}",
            provider="local",
            model=model,
            status=Status.QUEUED,
            provider_status="queued",
            created_at=utcnow(),
            params=dict(params),
        )
        job = _Job(task)
        self._jobs[task.id] = job
        self._waiting.append(task.id)
        self._refresh_queue()
        threading.Thread(
            target=self._run, args=(job, entry), name=f"genwidgets-{task.id}", daemon=True
        ).start()
        return job.task

    def get(self, task: Task) -> Task:
        job = self._jobs.get(task.id)
        if job is None:
            if task.done:
                return task
            return task.evolve(
                status=Status.EXPIRED,
                error="This local task ran in an earlier process (kernel restart?) and is gone",
                finished_at=utcnow(),
            )
        return job.task

    async def cancel(self, task: Task) -> Task:
        job = self._jobs.get(task.id)
        if job is None or job.task.done:
            return self.get(task)
        job.cancelled.set()
        if task.id in self._waiting:  # never started: done at once
            self._waiting.remove(task.id)
            self._update(
                job, status=Status.CANCELLED, provider_status="cancelled", finished_at=utcnow()
            )
            self._refresh_queue()
            return job.task
        await job.stopped.wait()
        return job.task

    async def wait_change(self, task: Task, timeout: float | None = None) -> Task:
        job = self._jobs.get(task.id)
        if job is None:
            return self.get(task)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while job.task.model_dump(exclude={"updated_at"}) == task.model_dump(
            exclude={"updated_at"}
        ):
            job.changed.clear()
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(job.changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return job.task

    def close(self) -> None:
        for job in self._jobs.values():
            job.cancelled.set()

    # ------------------------------------------------------------------ internals
    def _update(self, job: _Job, **changes: Any) -> None:
        """Apply a change on the loop's thread (called there, or scheduled from a worker)."""
        if job.task.done:
            return
        job.task = job.task.evolve(**changes)
        job.changed.set()

    def _from_worker(self, job: _Job, **changes: Any) -> None:
        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._update(job, **changes))

    def _refresh_queue(self) -> None:
        for position, task_id in enumerate(self._waiting):
            job = self._jobs[task_id]
            if job.task.queue_position != position + 1:
                self._update(job, queue_position=position + 1)

    def _started(self, job: _Job) -> None:
        if job.task.id in self._waiting:
            self._waiting.remove(job.task.id)
        self._update(
            job,
            status=Status.RUNNING,
            provider_status="running",
            started_at=utcnow(),
            queue_position=None,
            progress=0.0,
        )
        self._refresh_queue()

    def _run(self, job: _Job, entry: LocalModel) -> None:
        """A job's thread: wait for a free slot (queued), work, then signal that it stopped."""
        try:
            with self._slots:
                self._work(job, entry)
        finally:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(job.stopped.set)

    def _work(self, job: _Job, entry: LocalModel) -> None:
        """Runs in the job's thread, holding a worker slot."""
        if job.cancelled.is_set():
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._started, job)
        last = [0.0]

        def progress(fraction: float) -> None:
            if job.cancelled.is_set():
                raise Cancelled()
            fraction = min(1.0, max(0.0, float(fraction)))
            if fraction - last[0] >= 0.02 or fraction >= 1.0:  # no flood of tiny updates
                last[0] = fraction
                self._from_worker(job, progress=round(fraction, 3))

        try:
            result = _call(entry.fn, job.task.params, progress, job.cancelled)
            if job.cancelled.is_set():
                raise Cancelled()
            output = self._store(result, entry.info.kind)
        except Cancelled:
            self._from_worker(
                job, status=Status.CANCELLED, provider_status="cancelled", finished_at=utcnow()
            )
            return
        except Exception as exc:
            self._from_worker(
                job,
                status=Status.FAILED,
                provider_status="failed",
                error=f"{type(exc).__name__}: {exc}"[:500],
                logs=tuple(traceback.format_exception(exc)[-5:]),
                finished_at=utcnow(),
            )
            return
        self._from_worker(
            job,
            status=Status.SUCCEEDED,
            provider_status="succeeded",
            progress=1.0,
            outputs=(output,),
            finished_at=utcnow(),
        )

    def _store(self, result: Any, kind: OutputKind) -> Output:
        """Put whatever the model returned into the cache as one output."""
        if kind == "text" and isinstance(result, str):
            path, digest, ctype = self._cache.put(result.encode(), "text/plain")
            return Output(
                kind="text",
                text=result,
                path=path,
                sha256=digest,
                content_type=ctype,
                size=path.stat().st_size,
            )
        data: bytes
        if isinstance(result, (bytes, bytearray, memoryview)):
            data = bytes(result)
        elif isinstance(result, (str, Path)):
            with open(result, "rb") as handle:  # the user's own file: copied, never moved
                writer = self._cache.writer(None)
                shutil.copyfileobj(handle, _WriterIO(writer))
                path, digest, ctype = writer.commit()
                return Output(
                    kind=kind, path=path, sha256=digest, content_type=ctype, size=writer.size
                )
        else:
            import io

            import numpy as np
            from PIL import Image

            if isinstance(result, np.ndarray):
                result = Image.fromarray(result.astype("uint8"))
            if not isinstance(result, Image.Image):
                raise TypeError(
                    f"A local model must return bytes, a PIL image, a numpy array, a path or "
                    f"(for text) a str; got {type(result).__name__}"
                )
            buffer = io.BytesIO()
            result.save(buffer, format="PNG")
            data = buffer.getvalue()
        path, digest, ctype = self._cache.put(data)
        return Output(kind=kind, path=path, sha256=digest, content_type=ctype, size=len(data))


class _WriterIO:
    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def write(self, chunk: bytes) -> int:
        self._writer.write(chunk)
        return len(chunk)


def _call(
    fn: Callable[..., Any],
    params: Mapping[str, Any],
    progress: Callable[[float], None],
    cancelled: threading.Event,
) -> Any:
    kwargs = dict(params)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    accepts_any = signature is None or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    names = set(signature.parameters) if signature is not None else set()
    if accepts_any or "progress" in names:
        kwargs["progress"] = progress
    if accepts_any or "cancelled" in names:
        kwargs["cancelled"] = cancelled
    if not accepts_any:
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    return fn(**kwargs)
