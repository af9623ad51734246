"""OpenRouter's video API (``/api/v1/videos``) as its spec and guide describe it.

`POST /api/v1/videos {model, prompt, duration, ...}` answers 202 ``{id, polling_url (relative),
status: "pending", generation_id}``; `GET /api/v1/videos/{id}` walks pending -> in_progress ->
completed (``unsigned_urls``, ``usage: {cost, is_byok}``) or failed (``error``); a prompt with
``[jump]`` stays pending until it is completed (the cookbook's trace), ``[cancelled]`` ends
cancelled, and a task past its expiry (``[expire]``, ``expire_after``) answers ``status:
"expired"`` (an unknown id is a 404). `GET /api/v1/videos/{id}/content?index=N` serves the bytes
and, like the real one, only with the Bearer key (401 without). No cancel endpoint. Errors are
``{"error": {code, message}}`` with the HTTP status as code; no credits is a 402; an unknown
model (no ``/`` in its name) a 404; a bad ``duration`` a 400.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "OpenRouter"]

#: What a completed video costs here (USD, flat: the sandbox has no price list).
COST = 0.25
_STATUS = {
    "queued": "pending",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


class OpenRouter(ProviderApp):
    name = "openrouter"
    TASK_PARAM = "job_id"
    MISSING = "Resource not found"
    ROUTES = (
        ("POST", "/api/v1/videos", "submit"),
        ("GET", "/api/v1/videos/{job_id}", "poll"),
        ("GET", "/api/v1/videos/{job_id}/content", "content"),
    )

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        return JSONResponse({"error": {"code": status, "message": message}}, status)

    def quota_error(self) -> Response:
        message = "Insufficient credits. Add more using https://openrouter.ai/credits"
        return self.error(402, "quota", message)

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self.error(400, "bad_request", "Invalid request parameters: model is required")
        model, prompt, duration = body["model"], body.get("prompt"), body.get("duration", 8)
        if "/" not in model:
            return self.not_found("Resource not found")
        if not isinstance(prompt, str) or not prompt.strip():
            return self.error(400, "bad_request", "Invalid request parameters: prompt")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            return self.error(400, "bad_request", "Invalid request parameters: duration")
        self.state.record_submit(self.name, model, body)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(body.get("seed")),
            params={**body, "duration": duration},
            task_id=f"job-{secrets.token_hex(8)}",
            failure="Content policy violation",
        )
        task.extra["generation_id"] = f"gen-{secrets.token_hex(6)}"
        return JSONResponse(self.record(task, self.origin(request), time.time()), 202)

    def job(self, request: Request) -> SimTask | Response:
        """The caller's job, expired ones included (they answer ``status: "expired"``)."""
        with self.state.lock:
            task = self.state.tasks.get(request.path_params["job_id"])
        if task is None or task.provider != self.name or task.account != request.state.account:
            return self.not_found(self.MISSING)
        return task

    async def poll(self, request: Request) -> Response:
        task = self.job(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def content(self, request: Request) -> Response:
        task = self.job(request)
        if isinstance(task, Response):
            return task
        now = time.time()
        if task.gone(now) or task.phase(now) != "succeeded" or "[cancelled]" in task.prompt:
            return self.not_found("Video not available")
        files = self.state.files_for(task)
        index = request.query_params.get("index", "0")
        if not index.isdigit() or int(index) >= len(files):
            return self.error(400, "bad_request", "index out of range")
        entry = files[int(index)]
        self.state.count("downloads")
        data = await self.state.renderer.get(entry.kind, entry.prompt, entry.seed, entry.seconds)
        return Response(data, 200, media_type=entry.content_type)

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        status = _STATUS[phase]
        if "[jump]" in task.prompt and phase == "running":
            status = "pending"
        if "[cancelled]" in task.prompt and phase != "queued":
            status = "cancelled"
        if task.gone(now):
            status = "expired"
        body: dict[str, Any] = {
            "id": task.id,
            "generation_id": task.extra.get("generation_id"),
            "polling_url": f"/api/v1/videos/{task.id}",
            "status": status,
        }
        if status == "completed":
            body["unsigned_urls"] = [f"{origin}/api/v1/videos/{task.id}/content?index=0"]
            body["usage"] = {"cost": COST, "is_byok": False}
        elif status in ("failed", "cancelled", "expired"):
            body["error"] = {
                "failed": task.error or "failed",
                "cancelled": "Job was cancelled",
                "expired": "Job exceeded maximum time to live",
            }[status]
        return body


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"openrouter": OpenRouter}
PORTS = {"openrouter": 8111}
