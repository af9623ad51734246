"""OneRouter (Infron) as documented in seed 000: submit on one host, poll on another.

Submit `POST /v1/images/generations` (or `/v1/videos/generations`) with `{model, content:[{type:
"text", text}], ...}` on the submit port; the answer's `data.urls.get` points at the SEPARATE poll
port (`/v1/videos/tasks/{id}`), which is the only place tasks can be polled: a client that builds
the poll URL itself instead of following `urls.get` gets a 404. Every success body is wrapped in
`{code, message, data}`; errors use the documented `{"error": {code, message, type, param}}`
with the HTTP status equal to `error.code`. Auth: `Authorization: <key>` or `Bearer <key>`.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, big_size, fmt_datetime, read_json, seed_of
from ._limits import ServerLimits
from ._tasks import SimTask

__all__ = ["APPS", "LIMITS", "PORTS", "OneRouterPoll", "OneRouterSubmit"]

_TYPES: dict[ErrorKind, str] = {
    "auth": "authentication_error",
    "bad_request": "invalid_request_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_exceeded",
    "server": "server_error",
    "quota": "insufficient_credits",
}
#: What every task reports as `data.cost.total_cost`: the sandbox has no price list, so one flat
#: price per task (whatever its kind) lets cost tests count tasks.
_COST = 0.01
_ALNUM = string.ascii_lowercase + string.digits


def _task_id(now: float) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    return f"cgt-{stamp}-{''.join(secrets.choice(_ALNUM) for _ in range(5))}"


def _wrap(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


class _OneRouter(ProviderApp):
    name = "onerouter"
    raw_key_ok = True

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        body = {"error": {"code": status, "message": message, "type": _TYPES[kind], "param": ""}}
        return JSONResponse(body, status)

    def quota_error(self) -> Response:
        return self.error(402, "quota", "Insufficient credits, please top up your account")


class OneRouterSubmit(_OneRouter):
    """The submit host (`image.onerouter.pro` in production)."""

    ROUTES = (
        ("POST", "/v1/images/generations", "submit"),
        ("POST", "/v1/videos/generations", "submit"),
    )

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            return self.error(400, "bad_request", "model is required")
        content = body.get("content")
        texts = (
            [
                item["text"]
                for item in content or []
                if isinstance(item, dict)
                and item.get("type") == "text"
                and isinstance(item.get("text"), str)
            ]
            if isinstance(content, list)
            else []
        )
        if not texts:
            return self.error(400, "bad_request", "content must hold an item {type: 'text', text}")
        prompt = "\n".join(texts)
        self.state.record_submit(self.name, model, body)
        now = time.time()
        big = big_size(model, body.get("bytes"), self.state.options.big_bytes)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(body.get("seed")),
            params=body,
            task_id=_task_id(now),
            failure=f"Generation failed: {prompt}",
            big_bytes=big,
        )
        poll_origin = self.state.origins["onerouter_poll"]
        data = {
            "task_id": task.id,
            "object": task.kind,
            "model": model,
            "status": "created",
            "urls": {"get": f"{poll_origin}/v1/videos/tasks/{task.id}"},
            "created_at": fmt_datetime(task.created, fraction=True),
        }
        return JSONResponse(_wrap(data))


class OneRouterPoll(_OneRouter):
    """The poll host (`video.onerouter.pro` in production), reached through `data.urls.get`."""

    ROUTES = (
        ("GET", "/v1/videos/tasks/{task_id}", "poll"),
        ("GET", "/v1/images/tasks/{task_id}", "poll"),
    )

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(_wrap(self.snapshot(task, self.origin(request))))

    def snapshot(self, task: SimTask, origin: str) -> dict[str, Any]:
        now = time.time()
        phase = task.phase(now)
        status = {
            "queued": "created",
            "running": "in_progress" if task.run_fraction(now) < 0.5 else "processing",
            "succeeded": "completed",
            "failed": "failed",
            "cancelled": "failed",
        }[phase]
        done = phase in ("succeeded", "failed")
        data: dict[str, Any] = {
            "task_id": task.id,
            "object": task.kind,
            "model": task.model,
            "status": status,
            "fail_reason": (task.error or "") if phase == "failed" else "",
            "submit_time": int(task.created),
            "start_time": int(task.started) if now >= task.started else None,
            "finish_time": int(task.finished) if done else None,
            "outputs": [],
            "created_at": fmt_datetime(task.created),
        }
        if phase == "succeeded":
            files = self.state.files_for(task)
            data["outputs"] = [origin + entry.path() for entry in files]
            data["cost"] = {"total_cost": _COST}
        return data


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"onerouter": OneRouterSubmit, "onerouter_poll": OneRouterPoll}
PORTS = {"onerouter": 8100, "onerouter_poll": 8105}
#: What OneRouter publishes (docs.onerouter.pro/features/rate-limits): community accounts get 600
#: requests/min and 30 concurrent tasks, then 429 with no Retry-After (`--enforce-limits`). The
#: other seeds publish nothing per key that a sandbox could enforce across plans.
LIMITS = ServerLimits(600, 30)
