"""fal.ai's queue API (``queue.fal.run``), as the digest ``providers/beyond/fal.md`` describes it.

``POST /{model_id}`` (the full id, ``fal-ai/flux/dev``) with ``Authorization: Key <key>`` answers
``{status: "IN_QUEUE", request_id, queue_position, status_url, response_url, cancel_url}``, the
URLs under ``owner/app`` only (``workflows/`` and ``comfy/`` keep three segments). Then:

- ``GET .../requests/{id}/status[?logs=1]``: **202** ``IN_QUEUE`` (``queue_position``: this key's
  queued requests ahead) or ``IN_PROGRESS`` (``logs``: ``step k/10`` lines), **200**
  ``COMPLETED`` with ``metrics.inference_time`` (and ``error``/``error_type`` when it failed or
  was cancelled). Nothing else: a failure or a cancellation also ends ``COMPLETED``.
- ``GET .../requests/{id}/status/stream[?logs=1]``: the same bodies as SSE ``data:`` lines, one per
  change (``logs``: only the lines new since the previous event, as fal-js reads them), a ``:
  keep-alive`` comment every ``sse_keepalive`` seconds, closed after ``COMPLETED``. Faults:
  ``stream_error_rate`` (a 5xx instead), ``stream_cut_after`` (dropped before event N+1),
  ``stream_stall`` (silent after the first event).
- ``GET .../requests/{id}``: the model's answer with the model's HTTP status and
  ``x-fal-request-id``: 200 ``{"images": [...]}`` / ``{"video": {...}}`` / ``{"audio_file":
  {...}}``; 422 ``{"detail": [{loc, msg, type}]}`` for a missing prompt or a ``[fail]`` (content
  policy); 500 ``runner_server_error`` for ``[crash]``; **499** ``client_cancelled`` after a
  cancellation; 504 ``request_timeout`` (``X-Fal-Request-Timeout-Type: user``) when the submit's
  ``X-Fal-Request-Timeout`` passed before it could start; 400 before completion. Kept 1 h after
  completion (6 min when >= 10 KB).
- ``PUT .../requests/{id}/cancel``: 200 ``OK`` (queued: removed), 202 ``CANCELLATION_REQUESTED``
  (running: the runner stops a moment later, unless the prompt says ``[ignore-cancel]``, like an
  app that ignores the signal), 400 ``ALREADY_COMPLETED``, 404 ``NOT_FOUND``.

Errors are ``{"detail": "...", "error_type": "..."}`` (+ ``X-Fal-Error-Type``): bad key 401
``No user found for Key ID and Secret``, the no-quota key 403 ``User is locked. Reason: Exhausted
balance...``, unknown request 404. Injected 5xx carry no ``x-fal-request-id`` (fal's ingress), so
a client can tell them from a model's failure. The queue never refuses for concurrency: only the
fault injection and enforced limits answer 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ._http import ErrorKind, ProviderApp, _DropConnection, big_size, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "Fal"]

_ERROR_TYPES: dict[ErrorKind, str] = {
    "auth": "unauthorized",
    "bad_request": "bad_request",
    "not_found": "not_found",
    "rate_limit": "rate_limited",
    "server": "runner_connection_error",
    "quota": "user_locked",
}
#: Namespaces whose app is three path segments long.
NAMESPACES = ("workflows", "comfy")
#: A result this large (bytes) is kept 6 minutes, a smaller one an hour.
LARGE_RESULT, LARGE_KEPT, RESULT_KEPT = 10_000, 360.0, 3600.0
#: Seconds a runner takes to honour a cancellation; log lines a running request shows.
CANCEL_DELAY, LOG_STEPS = 0.05, 10
#: Status streams: how often a stalled one looks at the clock; how often a queued one looks at its
#: queue position; the longest sleep of any (a reset or a shutdown is seen by then), in seconds.
STREAM_TICK, QUEUE_TICK, IDLE_TICK = 0.02, 0.25, 0.5
_POLICY = "https://docs.fal.ai/errors#content_policy_violation"


class _ModelId(Convertor[str]):
    """``owner/app[/path]`` whose first character is no ``_``: the sandbox's own ``/_sandbox``
    routes never look like a submit."""

    regex = r"[A-Za-z0-9][^?#]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fal_model", _ModelId())


def app_of(model: str) -> str:
    """``owner/app`` of a model id (three segments under a namespace)."""
    parts = model.split("/")
    return "/".join(parts[: 3 if parts[0] in NAMESPACES else 2])


class Fal(ProviderApp):
    name = "fal"
    TASK_PARAM = "rid"
    MISSING = "Request {} not found"
    ROUTES = (
        ("GET", "/{app:path}/requests/{rid}/status", "status"),
        ("GET", "/{app:path}/requests/{rid}/status/stream", "stream"),
        ("PUT", "/{app:path}/requests/{rid}/cancel", "cancel"),
        ("GET", "/{app:path}/requests/{rid}", "result"),
        ("POST", "/{model:fal_model}", "submit"),
    )
    POLLS = frozenset({"status", "result"})

    def key_from(self, request: Request) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").strip().partition(" ")
        return key.strip() or None if scheme.lower() == "key" else None

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "auth":
            message = "No user found for Key ID and Secret" if "Invalid" in message else message
        body = {"detail": message, "error_type": _ERROR_TYPES[kind]}
        return JSONResponse(body, status, headers={"X-Fal-Error-Type": _ERROR_TYPES[kind]})

    def quota_error(self) -> Response:
        why = "User is locked. Reason: Exhausted balance. Top up your balance at "
        return self.error(403, "quota", why + "fal.ai/dashboard/billing.")

    # ------------------------------------------------------------------ submit
    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            item = {"loc": ["body"], "msg": "Input should be a valid dict", "type": "dict_type"}
            return JSONResponse({"detail": [item]}, 422)
        model = request.path_params["model"].strip("/")
        if "/" not in model:
            return self.not_found(f"Application '{model}' not found")
        self.state.record_submit(self.name, model, body)
        prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else None
        invalid = _invalid(body)
        crash = prompt is not None and "[crash]" in prompt
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt or "",
            seed=seed_of(body.get("seed")),
            params=body,
            task_id=str(uuid.uuid4()),
            failure="The prompt was flagged by the content checker",
            # the queue takes any JSON: the model validates it when it runs (a 422 result)
            force_failure=invalid[1] if invalid else "Runner crashed" if crash else None,
            big_bytes=big_size(model, body.get("bytes"), self.state.options.big_bytes),
        )
        task.extra.update(app=app_of(model), invalid=invalid, crash=crash and not invalid)
        start_within = _seconds(request.headers.get("x-fal-request-timeout"))
        if start_within is not None and task.queue_seconds > start_within:
            with self.state.lock:  # no runner in time: the request ends, never having started
                task.queue_seconds, task.run_seconds = start_within, 0.0
                task.fails, task.error = True, "Request timed out"
                task.extra["timed_out"] = True
        record = self._status(task, self.origin(request), time.time(), logs=False)
        return JSONResponse(record)

    # ------------------------------------------------------------------ status
    def _status(self, task: SimTask, origin: str, now: float, *, logs: bool) -> dict[str, Any]:
        base = f"{origin}/{task.extra['app']}/requests/{task.id}"
        phase = task.phase(now)
        record: dict[str, Any] = {
            "status": {"queued": "IN_QUEUE", "running": "IN_PROGRESS"}.get(phase, "COMPLETED"),
            "request_id": task.id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "logs": _logs(task, now) if logs and phase != "queued" else None,
        }
        if phase == "queued":
            record["queue_position"] = self._ahead(task, now)
        elif phase != "running":
            ran = max(0.0, min(now, task.cancelled_at or task.finished) - task.started)
            record["metrics"] = {"inference_time": round(ran, 3)}
        if phase == "failed":
            record.update(error=task.error, error_type=_failure(task)[1])
        elif phase == "cancelled":
            record.update(error="Request cancelled by the client", error_type="client_cancelled")
        return record

    def _ahead(self, task: SimTask, now: float) -> int:
        return sum(
            1
            for other in self.state.tasks_of(self.name, task.account)
            if other.created < task.created and other.phase(now) == "queued"
        )

    async def status(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        logs = request.query_params.get("logs", "0").lower() in ("1", "true")
        record = self._status(task, self.origin(request), time.time(), logs=logs)
        return JSONResponse(record, 200 if record["status"] == "COMPLETED" else 202)

    async def stream(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        with self.state.lock:
            refused = self.state.dice.hit(self.state.faults.stream_error_rate)
        if refused:
            return self.server_error()
        logs = request.query_params.get("logs", "0").lower() in ("1", "true")
        self.state.count("sse_connections")
        return StreamingResponse(
            self._events(task, self.origin(request), logs),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, task: SimTask, origin: str, logs: bool) -> AsyncIterator[bytes]:
        """A status event per change, its ``logs`` only the lines new since the previous event
        (fal-js appends them); keep-alive comments while nothing changes. Between changes the
        stream sleeps until the next one its timeline says (start, log step, finish, expiry), a
        cancel wakes it, and a queued one looks again every `QUEUE_TICK` (its position). The
        stream faults cut the connection or fall silent."""
        state, last, sent, logged = self.state, None, 0, 0
        keepalive = max(0.01, state.options.sse_keepalive)
        quiet_until = time.time() + keepalive
        wake = asyncio.Event()
        task.extra.setdefault("wakes", set()).add(wake)
        try:
            while state.alive(task) and not task.gone(now := time.time()):
                record = self._status(task, origin, now, logs=logs)
                if record != last:
                    cut = state.faults.stream_cut_after
                    if cut is not None and sent >= cut:
                        raise _DropConnection("sandbox fault: status stream cut")
                    last, sent, quiet_until = record, sent + 1, now + keepalive
                    lines = record["logs"] or []
                    new = lines[logged:] if record["logs"] is not None else None
                    logged = len(lines)
                    state.count("sse_events")
                    yield f"data: {json.dumps({**record, 'logs': new})}\n\n".encode()
                    if record["status"] == "COMPLETED":
                        return
                    while state.faults.stream_stall and not _closing(state):
                        await asyncio.sleep(STREAM_TICK)  # silent: no event, no keep-alive
                elif now >= quiet_until:
                    yield b": keep-alive\n\n"
                    quiet_until = now + keepalive
                if _closing(state):
                    return
                until = min(_next_change(task, now, logs), quiet_until, now + IDLE_TICK)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(0.0, until - time.time()))
                wake.clear()
        finally:
            task.extra["wakes"].discard(wake)

    # ------------------------------------------------------------------ result
    async def result(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        now, stamp = time.time(), {"x-fal-request-id": task.id}
        phase = task.phase(now)
        if phase in ("queued", "running"):
            return self.error(400, "bad_request", "Request is still in progress")
        if phase == "cancelled":
            body = {"detail": "Request cancelled by the client", "error_type": "client_cancelled"}
            return JSONResponse(body, 499, headers=stamp)
        if phase == "failed":
            code, kind = _failure(task)
            if kind == "request_timeout":
                stamp["X-Fal-Request-Timeout-Type"] = "user"
            return JSONResponse(_failure_body(task, kind), code, headers=stamp)
        body = await self._output(task, self.origin(request))
        kept = LARGE_KEPT if len(json.dumps(body)) >= LARGE_RESULT else RESULT_KEPT
        if now > task.finished + kept:
            return self.not_found(self.MISSING.format(task.id))
        return JSONResponse(body, headers=stamp)

    async def _output(self, task: SimTask, origin: str) -> dict[str, Any]:
        entry = (await self.state.sized_files_for(task))[0]
        file = {
            "url": origin + entry.path(),
            "content_type": entry.content_type,
            "file_name": f"output.{entry.ext}",
            "file_size": entry.size,
        }
        timings = {"inference": round(task.run_seconds, 3)}
        if task.kind == "video":
            return {"video": file, "seed": task.seed}
        if task.kind == "audio":
            return {"audio_file": file}
        image = {**file, "width": 256, "height": 256}
        return {"images": [image], "seed": task.seed, "has_nsfw_concepts": [False],
                "prompt": task.prompt, "timings": timings}

    # ------------------------------------------------------------------ cancel
    async def cancel(self, request: Request) -> Response:
        self.state.count("cancels")
        rid = request.path_params["rid"]
        task = self.state.find(self.name, rid, request.state.account)
        if task is None:
            return JSONResponse({"status": "NOT_FOUND"}, 404)
        now = time.time()
        with self.state.lock:
            phase = task.phase(now)
            if phase == "queued":
                task.cancelled_at = now
            elif phase == "running" and "[ignore-cancel]" not in task.prompt:
                task.cancelled_at = min(now + CANCEL_DELAY, task.finished)
        if phase not in ("queued", "running"):
            return JSONResponse({"status": "ALREADY_COMPLETED"}, 400)
        self.state.record_cancel(self.name, task.id)
        for wake in task.extra.get("wakes", ()):
            wake.set()  # its status streams say so at once
        if phase == "queued":
            return JSONResponse({"status": "OK"})
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)


def _invalid(body: dict[str, Any]) -> tuple[str, str, str] | None:
    """What the model's input validation says when it runs: (field, message, type), or None.
    The sandbox checks the prompt and ``num_images`` (1-4), as FLUX does."""
    if not isinstance(body.get("prompt"), str):
        return "prompt", "Field required", "missing"
    count = body.get("num_images", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return "num_images", "Input should be greater than or equal to 1", "greater_than_equal"
    if count > 4:
        return "num_images", "Input should be less than or equal to 4", "less_than_equal"
    return None


def _failure(task: SimTask) -> tuple[int, str]:
    """The model's HTTP status and error type for a failed task."""
    if task.extra.get("timed_out"):
        return 504, "request_timeout"
    if task.extra.get("crash"):
        return 500, "runner_server_error"
    invalid = task.extra.get("invalid")
    return 422, invalid[2] if invalid else "content_policy_violation"


def _failure_body(task: SimTask, kind: str) -> dict[str, Any]:
    if kind in ("runner_server_error", "request_timeout"):
        return {"detail": task.error, "error_type": kind}
    invalid = task.extra.get("invalid")
    field = invalid[0] if invalid else "prompt"
    item = {"loc": ["body", field], "msg": task.error, "type": kind}
    if kind == "content_policy_violation":
        item.update(url=_POLICY, input=task.prompt)
    return {"detail": [item]}


def _next_change(task: SimTask, now: float, logs: bool) -> float:
    """When a status stream's record may next change on the task's own timeline (a queued one:
    at the latest `QUEUE_TICK` from now, requests ahead of it may leave)."""
    times = [task.finished, task.cancelled_at, task.expires_at]
    if now < task.started:
        times += [task.started, now + QUEUE_TICK]
    elif logs and task.run_seconds > 0:
        step = int(task.run_fraction(now) * LOG_STEPS) + 1
        times.append(task.started + task.run_seconds * step / LOG_STEPS)
    later = [at for at in times if at is not None and at > now]
    return min(later, default=now + IDLE_TICK) + 0.001  # just past it: the record has changed


def _closing(state: Any) -> bool:
    return state.closing is not None and state.closing.is_set()


def _seconds(value: str | None) -> float | None:
    """A positive number of seconds from a header, else None."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None


def _logs(task: SimTask, now: float) -> list[dict[str, Any]]:
    """``step k/10`` lines, one per tenth of the run so far, each dated when its step ended."""
    steps = min(LOG_STEPS, int(task.run_fraction(now) * LOG_STEPS))
    return [
        {"message": f"step {k}/{LOG_STEPS}", "level": "INFO", "source": "USER", "timestamp": at}
        for k in range(1, steps + 1)
        for at in [_iso(task.started + task.run_seconds * k / LOG_STEPS)]
    ]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


APPS: dict[str, type[ProviderApp]] = {"fal": Fal}
PORTS: dict[str, int] = {"fal": 8106}
