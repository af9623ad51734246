"""NetMind's asynchronous generation API (seed 003).

`POST /v1/generation {model, config{}}` answers the generation record (`status:"pending"`,
`created_at`/`updated_at` as 'YYYY-MM-DD HH:MM:SS', `deleted_at:null`, `is_deleted:false`,
`result:{}`); `GET /v1/generation/{id}` walks pending -> initializing -> completed
(`result.data[{url, file_id, file_name, file_type}]`) or failed (`logs[{text}]`, as in the public
mocks); `GET /v1/generation` lists them (`generation_list`); `DELETE /v1/generation/{id}` deletes.
An unknown model is a 400 "Model name: X not exists". `file_name` is server text: with the
`hostile_names` fault it becomes a path-traversal or markup attempt, to prove clients never use
it as a path. Auth: `Authorization: <key>` or `Bearer <key>`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, big_size, fmt_datetime, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "NetMind"]

HOSTILE_NAMES = (
    "../../x.sh",
    "/etc/passwd",
    "..\\..\\windows\\evil.bat",
    '<img src=x onerror="alert(1)">.png',
    "~/.bashrc",
    "CON",
)
_STATUS = {
    "queued": "pending",
    "running": "initializing",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


class NetMind(ProviderApp):
    name = "netmind"
    raw_key_ok = True

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "server":
            message = "Service is unavailable"
        return JSONResponse({"detail": message}, status)

    TASK_PARAM = "gid"
    MISSING = "Generation {} not found"
    ROUTES = (
        ("POST", "/v1/generation", "submit"),
        ("GET", "/v1/generation", "list"),
        ("GET", "/v1/generation/{gid}", "poll"),
        ("DELETE", "/v1/generation/{gid}", "delete"),
    )

    def known(self, model: str) -> bool:
        models = self.state.options.netmind_models
        return "/" in model if models is None else model in models

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model, config = body.get("model"), body.get("config", {})
        if not isinstance(model, str) or not model:
            return self.error(400, "bad_request", "model is required")
        if not isinstance(config, dict):
            return self.error(400, "bad_request", "config must be an object")
        if not self.known(model):
            return self.error(400, "bad_request", f"Model name: {model} not exists")
        self.state.record_submit(self.name, model, body)
        prompt = config.get("prompt") if isinstance(config.get("prompt"), str) else ""
        big = big_size(model, config.get("bytes"), self.state.options.big_bytes)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(config.get("seed")),
            params=config,
            task_id=uuid.uuid4().hex,
            failure=f"Inference error: {prompt}",
            force_failure=None if prompt else "prompt is required",
            big_bytes=big,
        )
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def list(self, request: Request) -> Response:
        now, origin = time.time(), self.origin(request)
        tasks = sorted(
            self.state.tasks_of(self.name, request.state.account),
            key=lambda t: t.created,
            reverse=True,
        )
        return JSONResponse({"generation_list": [self.record(t, origin, now) for t in tasks]})

    async def delete(self, request: Request) -> Response:
        self.state.count("deletes")
        task = self.find(request)
        if isinstance(task, Response):
            return task
        with self.state.lock:
            task.deleted_at = time.time()
        self.state.record_cancel(self.name, task.id)
        return JSONResponse({"message": "Generation deleted"})

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        body: dict[str, Any] = {
            "id": task.id,
            "user_id": f"user-{task.account[:12]}",
            "status": _STATUS[phase],
            "created_at": fmt_datetime(task.created),
            "updated_at": fmt_datetime(task.changed_at(now)),
            "deleted_at": None,
            "is_deleted": False,
            "result": {},
        }
        if phase == "succeeded":
            hostile = self.state.faults.hostile_names
            data = []
            for entry in self.state.files_for(task):
                name = (
                    HOSTILE_NAMES[(task.extra["serial"] - 1) % len(HOSTILE_NAMES)]
                    if hostile
                    else ""
                )
                data.append(
                    {
                        "url": origin + entry.path(),
                        "file_id": f"file-{entry.token[:12].lower()}",
                        "file_name": name,
                        "file_type": task.kind,
                    }
                )
            body["result"] = {"data": data}
        elif phase == "failed":
            body["logs"] = [{"text": task.error or "failed"}]
        return body


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"netmind": NetMind}
PORTS = {"netmind": 8103}
