"""The 'example' protocol in the genwidgets sandbox (see `adapter` for the protocol).

A plugin's protocol module declares `APPS` (port name -> `ProviderApp` subclass) and may declare
`PORTS` (the CLI's default ports); the sandbox then serves it on a port of its own, with the same
auth, limits and fault injection as the built-in protocols: every handler named in `ROUTES` runs
inside `ProviderApp`'s pipeline, "submit" gets the submit faults and "poll" the poll faults.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from genwidgets.sandbox.protocol import ErrorKind, ProviderApp, SimTask, read_json, seed_of

__all__ = ["APPS", "PORTS", "ExampleApp"]

_STATES = {
    "queued": "waiting",
    "running": "working",
    "succeeded": "done",
    "failed": "error",
    "cancelled": "cancelled",
}


class ExampleApp(ProviderApp):
    name = "example"
    ROUTES = (
        ("POST", "/v1/jobs", "submit"),
        ("GET", "/v1/jobs/{task_id}", "poll"),
        ("POST", "/v1/jobs/{task_id}/cancel", "cancel"),
    )
    MISSING = "job {} not found"

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        return JSONResponse({"message": message}, status)

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        model = body.get("model") if isinstance(body, dict) else None
        params = body.get("input") if isinstance(body, dict) else None
        if not isinstance(model, str) or not isinstance(params, dict):
            return self.error(400, "bad_request", "expected {model, input{...}}")
        if model not in ("sketch", "clip"):
            return self.error(404, "not_found", f"no model named {model!r}")
        self.state.record_submit(self.name, model, body)
        prompt = params.get("prompt")
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt if isinstance(prompt, str) else "",
            seed=seed_of(params.get("seed")),
            params={"duration": params.get("duration")} if model == "clip" else {},
            task_id=uuid.uuid4().hex,
            failure=f"could not render {prompt!r}",
        )
        return JSONResponse(self._job(task, time.time()), 201)

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        job = self._job(task, time.time())
        if job["state"] == "done":
            origin = self.origin(request)
            files = await self.state.sized_files_for(task)
            job["files"] = [{"url": origin + f.path(), "mime": f.content_type} for f in files]
        return JSONResponse(job)

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
        return JSONResponse(self._job(task, now))

    def _job(self, task: SimTask, now: float) -> dict[str, Any]:
        state = _STATES[task.phase(now)]
        job: dict[str, Any] = {"id": task.id, "model": task.model, "state": state}
        job["created"] = round(task.created, 3)
        cancelled_first = task.cancelled_at is not None and task.cancelled_at < task.started
        if now >= task.started and not cancelled_first:
            job["started"] = round(task.started, 3)
        if state in ("done", "error"):
            job["finished"] = round(task.finished, 3)
        if state == "cancelled":
            job["finished"] = round(task.cancelled_at or now, 3)
        if state == "error":
            job["reason"] = task.error
        return job


APPS = {"example": ExampleApp}
PORTS = {"example": 8199}
