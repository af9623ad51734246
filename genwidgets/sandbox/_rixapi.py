"""The RixAPI unified async task API (seed 001; resold as ePhone AI and ElkAPI).

`POST /v1/task/submit {model, input{prompt, ...}, callback_url?}` answers `{id, status:"queued",
created_at}`; `GET /v1/task/{id}` walks queued -> in_progress -> completed (`outputs[]`,
`completed_at`, `usage{type:"tokens", ...}`) or failed (`error`, a plain string). Errors use the
OpenAI-style envelope; the key "no-quota-key" is an empty account and gets the documented 403
`insufficient_user_quota` (a billing error, not an auth error). With `callback_url`, the status
body is POSTed to it on each change, best effort; only loopback callback hosts are called, so the
sandbox cannot be turned into a request relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, big_size, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "RixAPI"]

_CODES: dict[ErrorKind, str] = {
    "auth": "invalid_api_key",
    "bad_request": "invalid_request",
    "not_found": "task_not_found",
    "rate_limit": "rate_limit_exceeded",
    "server": "server_error",
    "quota": "insufficient_user_quota",
}
_TOKENS = {"image": 120, "video": 1800, "audio": 600, "text": 50}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class RixAPI(ProviderApp):
    name = "rixapi"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        body = {
            "error": {
                "message": message,
                "type": "rix_api_error",
                "param": "",
                "code": _CODES[kind],
            }
        }
        return JSONResponse(body, status)

    def quota_error(self) -> Response:
        # The message an empty account really gets (Chinese: "pre-deduction of quota failed").
        message = "预扣费额度失败, 用户剩余额度: $0.000000, 需要预扣费额度: $0.100000"
        return self.error(403, "quota", message)

    MISSING = "task {} not found"
    ROUTES = (("POST", "/v1/task/submit", "submit"), ("GET", "/v1/task/{task_id}", "poll"))

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model, params = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model.strip():
            return self.error(400, "bad_request", "model is required")
        if not isinstance(params, dict):
            return self.error(400, "bad_request", "input is required and must be an object")
        callback = body.get("callback_url")
        if callback is not None and not isinstance(callback, str):
            return self.error(400, "bad_request", "callback_url must be a string")
        prompt = params.get("prompt") if isinstance(params.get("prompt"), str) else ""
        self.state.record_submit(self.name, model, body)
        big = big_size(model, params.get("bytes"), self.state.options.big_bytes)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(params.get("seed")),
            params=params,
            task_id=f"task_{secrets.token_hex(12)}",
            failure=f"Content policy violation detected: {prompt}",
            force_failure=None if prompt else "prompt is required",
            callback_url=callback or None,
            big_bytes=big,
        )
        task.extra["origin"] = self.origin(request)
        if task.callback_url and self.state.options.callbacks:
            self._schedule_callbacks(task)
        return JSONResponse({"id": task.id, "status": "queued", "created_at": int(task.created)})

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.snapshot(task, self.origin(request), time.time()))

    def snapshot(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        status = {
            "queued": "queued",
            "running": "in_progress",
            "succeeded": "completed",
            "failed": "failed",
            "cancelled": "failed",
        }[phase]
        body: dict[str, Any] = {"id": task.id, "status": status, "created_at": int(task.created)}
        if phase == "succeeded":
            tokens = _TOKENS[task.kind]
            body["completed_at"] = int(task.finished)
            body["outputs"] = [origin + f.path() for f in self.state.files_for(task)]
            body["usage"] = {"type": "tokens", "output_tokens": tokens, "total_tokens": tokens}
        elif phase == "failed":
            body["completed_at"] = int(task.finished)
            body["error"] = task.error or "failed"
        return body

    # ------------------------------------------------------------------------ callbacks
    def _schedule_callbacks(self, task: SimTask) -> None:
        host = urlsplit(task.callback_url or "").hostname
        if host not in _LOOPBACK:
            self.state.count("callback_errors")
            return
        delivery = asyncio.get_running_loop().create_task(self._deliver(task))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(self, task: SimTask) -> None:
        """POST the status body at each change (in_progress, then completed/failed)."""
        assert task.callback_url is not None
        for when in (task.started, task.finished):
            await asyncio.sleep(max(0.0, when - time.time()) + 0.001)
            now = time.time()
            if not self.state.alive(task) or task.gone(now):
                return
            body = self.snapshot(task, task.extra["origin"], now)
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=2.0, trust_env=False)
            self.state.count("callbacks")
            try:
                await self._http.post(task.callback_url, json=body)
            except httpx.HTTPError:
                self.state.count("callback_errors")

    async def aclose(self) -> None:
        for delivery in list(self._deliveries):
            delivery.cancel()
        for delivery in list(self._deliveries):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await delivery
        if self._http is not None:
            await self._http.aclose()


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"rixapi": RixAPI}
PORTS = {"rixapi": 8102}
