"""Oxen.ai's async queue (seed 004 and the public `async_queue` reference), with SSE.

`POST /api/ai/queue` answers `{"generations":[{generation_id, status:"queued"}]}` (one per
`num_generations`, 1-4); `GET /api/ai/queue/{id}` walks queued -> processing -> succeeded
(`result_url`) | failed (`error_message`) | cancelled, with Unix-second `enqueued_at`,
`started_at`, `completed_at` and the submitted parameters; `GET /api/ai/queue` lists active
generations (all, once a `status` filter is given); `DELETE /api/ai/queue/{id}` cancels (no effect
on a terminal one, 404 for an unknown one). `GET /api/events` is a per-key `text/event-stream`:
a `: keep-alive` comment every `sse_keepalive` seconds and one `media_generation_completed` event
per finished generation, delivered only to streams open at that moment (no buffering, no replay,
nothing for a cancellation). Errors: `{"error":{type,title,detail},"status":"error",
"status_message"}`. Auth: `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._http import ErrorKind, ProviderApp, big_size, read_json, seed_of
from ._state import State
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "Oxen"]

_ERRORS: dict[ErrorKind, tuple[str, str]] = {
    "auth": ("unauthenticated", "Unauthenticated"),
    "bad_request": ("invalid_params", "Invalid parameters"),
    "not_found": ("resource_not_found", "Resource not found"),
    "rate_limit": ("rate_limited", "Too many requests"),
    "server": ("unknown_error", "Unknown error"),
    "quota": ("invalid_params", "Insufficient credits"),
}
_STATUS = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
_ACTIVE = {"queued", "processing"}
_FILTERS = ("namespace", "repo", "folder")


class Oxen(ProviderApp):
    name = "oxen"

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        type_, title = _ERRORS[kind]
        body = {
            "error": {"type": type_, "title": title, "detail": message},
            "status": "error",
            "status_message": type_,
        }
        return JSONResponse(body, status)

    TASK_PARAM = "gid"
    MISSING = "Generation {} not found"
    ROUTES = (
        ("POST", "/api/ai/queue", "submit"),
        ("GET", "/api/ai/queue", "list"),
        ("GET", "/api/ai/queue/{gid}", "poll"),
        ("DELETE", "/api/ai/queue/{gid}", "cancel"),
        ("GET", "/api/events", "events"),
    )

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(400, "bad_request", "model is required")
        count = body.get("num_generations", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
            return self.error(400, "bad_request", "num_generations must be an integer from 1 to 4")
        self.state.record_submit(self.name, model, body)
        prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
        seed = seed_of(body.get("seed"))
        big = big_size(model, body.get("bytes"), self.state.options.big_bytes)
        created = []
        for i in range(count):
            task = self.state.create_task(
                provider=self.name,
                model=model,
                account=request.state.account,
                prompt=prompt,
                seed=(seed + i) % 2**32,
                params=body,
                task_id=str(uuid.uuid4()),
                failure=f"Generation failed: {prompt}",
                # parameters are validated when the job runs, so this surfaces as `failed`
                force_failure=None if prompt else "Invalid parameters: prompt is required",
                big_bytes=big,
            )
            self.state.call_at(task.finished, self._completed, task)
            created.append({"generation_id": task.id, "status": "queued"})
        return JSONResponse({"generations": created})

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def list(self, request: Request) -> Response:
        now, origin, query = time.time(), self.origin(request), request.query_params
        wanted = query.get("status")
        out = []
        for task in sorted(
            self.state.tasks_of(self.name, request.state.account), key=lambda t: t.created
        ):
            record = self.record(task, origin, now)
            if wanted is None and record["status"] not in _ACTIVE:
                continue
            if wanted is not None and record["status"] != wanted:
                continue
            if "model" in query and task.model != query["model"]:
                continue
            if "media_type" in query and task.kind != query["media_type"]:
                continue
            if any(key in query and str(task.params.get(key)) != query[key] for key in _FILTERS):
                continue
            out.append(record)
        return JSONResponse({"count": len(out), "generations": out})

    async def cancel(self, request: Request) -> Response:
        self.state.count("cancels")
        task = self.find(request)
        if isinstance(task, Response):
            return task
        now = time.time()
        with self.state.lock:
            if task.phase(now) in ("queued", "running"):
                task.cancelled_at = now
        self.state.record_cancel(self.name, task.id)
        return JSONResponse({"status": "success", "generation_id": task.id})

    async def events(self, request: Request) -> Response:
        return _EventStream(self.state, request.state.account)

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        started = task.started if now >= task.started else None
        if task.cancelled_at is not None and task.cancelled_at < task.started:
            started = None
        completed = None
        if phase == "cancelled":
            completed = task.cancelled_at
        elif phase in ("succeeded", "failed"):
            completed = task.finished
        record = {
            **task.params,
            "generation_id": task.id,
            "model_name": task.model,
            "prompt": task.prompt,
            "media_type": task.kind,
            "status": _STATUS[phase],
            "result_url": None,
            "error_message": task.error if phase == "failed" else None,
            "enqueued_at": int(task.created),
            "started_at": int(started) if started is not None else None,
            "completed_at": int(completed) if completed is not None else None,
        }
        if phase == "succeeded":
            record["result_url"] = origin + self.state.files_for(task)[0].path()
        return record

    def _completed(self, task: SimTask) -> None:
        """At the task's finish time: push the event to the streams open right now."""
        if not self.state.alive(task) or task.deleted_at is not None:
            return
        if task.cancelled_at is not None and task.cancelled_at <= task.finished:
            return  # no event for a cancellation
        if task.expires_at is not None and task.expires_at < task.finished:
            return  # gone before it finished
        data: dict[str, Any] = {"generation_id": task.id, "media_type": task.kind}
        if task.fails:
            data.update(status="failed", error=task.error)
        else:
            origin = self.state.origins[self.name]
            url = origin + self.state.files_for(task)[0].path()
            data.update(status="succeeded", model=task.model, url=url)
        payload = json.dumps(data, ensure_ascii=False)
        message = f"event: media_generation_completed\ndata: {payload}\n\n".encode()
        self.state.publish(task.account, message)


class _EventStream(Response):
    """A per-key SSE stream, subscribed BEFORE its headers are sent.

    A client that saw the 200 is therefore guaranteed to get every later completion of its key.
    Ends on client disconnect or sandbox shutdown.
    """

    media_type = "text/event-stream"

    def __init__(self, state: State, account: str) -> None:
        self.state = state
        self.account = account
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue = self.state.subscribe(self.account)
        waiters: list[asyncio.Future[Any]] = []
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            disconnect = asyncio.ensure_future(_disconnected(receive))
            closing_event = self.state.closing or asyncio.Event()
            closing = asyncio.ensure_future(closing_event.wait())
            waiters = [disconnect, closing]
            keepalive = max(0.01, self.state.options.sse_keepalive)
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {get, disconnect, closing},
                    timeout=keepalive,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if get in done:
                    await send(
                        {"type": "http.response.body", "body": get.result(), "more_body": True}
                    )
                    continue
                get.cancel()
                if disconnect in done:
                    return
                if closing in done:
                    break
                await send(
                    {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.state.unsubscribe(self.account, queue)
            for waiter in waiters:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"oxen": Oxen}
PORTS = {"oxen": 8104}
