"""Luma's Dream Machine API v1 (api.lumalabs.ai/dream-machine/v1), as luma.md part A has it.

`POST /dream-machine/v1/generations/video` (also the docs' older `/generations`) and
`/generations/image` answer 201 with the Generation record (`state: "queued"`, `assets: null`,
the request echoed); `GET /generations/{id}` walks queued -> dreaming -> completed
(`assets.video` or `assets.image`) | failed (`failure_reason`); `GET /generations?limit=&offset=`
lists (`{has_more, count, limit, offset, generations}`); `DELETE /generations/{id}` answers 204
and deletes (404 from then on: there is no cancel); `GET /credits` is `{credit_balance}` in USD
cents. Errors are `{"detail": ...}` for every code; the no-quota key gets a 402 (documented for
Luma's newer API; UNVERIFIED for v1). Video models are `ray-*`, image models `photon-*`; any other
name is refused with a 400 as Luma refuses a model it does not serve.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "Luma"]

ROOT = "/dream-machine/v1"
_STATE = {"queued": "queued", "running": "dreaming", "succeeded": "completed", "failed": "failed"}
_DURATIONS = {"5s": 5.0, "9s": 9.0}
_FAMILY = {"video": "ray-", "image": "photon-"}


class Luma(ProviderApp):
    name = "luma"
    #: what GET /credits answers, in USD cents
    credit_balance = 100_000.0

    TASK_PARAM = "gid"
    MISSING = "Generation {} not found"
    ROUTES = (
        ("POST", f"{ROOT}/generations", "submit"),
        ("POST", f"{ROOT}/generations/video", "submit"),
        ("POST", f"{ROOT}/generations/image", "submit"),
        ("GET", f"{ROOT}/generations", "list"),
        ("GET", f"{ROOT}/credits", "credits"),
        ("GET", f"{ROOT}/generations/{{gid}}", "poll"),
        ("DELETE", f"{ROOT}/generations/{{gid}}", "delete"),
    )

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "auth" and message.startswith("Invalid"):
            message = "Invalid API key is provided"
        return JSONResponse({"detail": message}, status)

    def quota_error(self) -> Response:
        return self.error(402, "quota", "Insufficient credits")

    async def submit(self, request: Request) -> Response:
        kind = "image" if request.url.path.endswith("/image") else "video"
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model = body.get("model", "photon-1" if kind == "image" else "ray-2")
        refused = _refusal(kind, model, body)
        if refused is not None:
            return self.error(400, "bad_request", refused)
        self.state.record_submit(self.name, model, body)
        prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
        seconds = _DURATIONS.get(body.get("duration", ""))
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(len(prompt)),  # Luma takes no seed: the sandbox renders by prompt
            params={**body, "duration": seconds},
            task_id=str(uuid.uuid4()),
            failure="400: prompt not allowed because advanced moderation failed",
        )
        with self.state.lock:
            task.kind = kind  # the endpoint decides, as at Luma
            task.extra["request"] = body
        return JSONResponse(self.record(task, self.origin(request), time.time()), 201)

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def list(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return self.error(422, "bad_request", "limit and offset must be integers")
        now, origin = time.time(), self.origin(request)
        mine = self.state.tasks_of(self.name, request.state.account)
        tasks = sorted(mine, key=lambda t: t.created, reverse=True)
        page = [self.record(t, origin, now) for t in tasks[offset : offset + limit]]
        more = offset + limit < len(tasks)
        body = {"has_more": more, "count": len(page), "limit": limit, "offset": offset}
        return JSONResponse({**body, "generations": page})

    async def delete(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        with self.state.lock:
            task.deleted_at = time.time()
        self.state.count("deletes")
        self.state.record_cancel(self.name, task.id)
        return Response(status_code=204)

    async def credits(self, request: Request) -> Response:
        return JSONResponse({"credit_balance": self.credit_balance})

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        body: dict[str, Any] = {
            "id": task.id,
            "generation_type": task.kind,
            "state": _STATE.get(phase, "failed"),
            "failure_reason": task.error if phase == "failed" else None,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(task.created)),
            "assets": None,
            "model": task.model,
            "request": task.extra.get("request", {}),
        }
        if phase == "succeeded":
            entry = self.state.files_for(task)[0]
            body["assets"] = {task.kind: origin + entry.path()}
        return body


def _refusal(kind: str, model: Any, body: dict[str, Any]) -> str | None:
    """What Luma would answer 400 to, if anything."""
    if not isinstance(model, str) or not model.startswith(_FAMILY[kind]):
        return f"400: model {str(model)[:40]} is not supported for {kind} generation"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "400: prompt must be a string"
    if not prompt and not (kind == "video" and isinstance(body.get("keyframes"), dict)):
        return "400: prompt is required"
    duration = body.get("duration")
    if duration is not None and duration not in _DURATIONS:
        return f"400: duration must be one of {', '.join(_DURATIONS)}"
    if "seed" in body:
        return "400: Extra inputs are not permitted: seed"  # the defensive reading
    return None


APPS: dict[str, type[ProviderApp]] = {"luma": Luma}
PORTS: dict[str, int] = {"luma": 8109}
