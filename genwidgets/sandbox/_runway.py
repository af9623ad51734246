"""Runway's developer API (api.dev.runwayml.com), as /work/shared/providers/beyond/runway.md has it.

`POST /v1/{task_type}` (the SDK's task types) with `X-Runway-Version: 2024-11-06` and a camelCase
body answers `{"id"}`; `GET /v1/tasks/{id}` walks PENDING -> RUNNING (`progress` 0-1) ->
SUCCEEDED (`output`: URL strings) | FAILED (`failure`, `failureCode`) | CANCELLED, with
`createdAt`. Past the account's concurrency (`Runway.concurrency`, Tier 1's 2) a new task is
THROTTLED until a slot frees: stored and queued, never refused. `DELETE /v1/tasks/{id}` answers 204:
it cancels a pending, throttled or running task (CANCELLED from then on) and DELETES a finished
one (404 from then on; `stats()["deletes"]` counts these apart from `cancels`), as Runway does.

Output URLs are signed per answer, as Runway's are: every GET of a finished task mints fresh URLs
that die after `Runway.url_seconds` (24 h) with an object store's 403; with the `one_shot_urls`
fault each one works once, so only a client that asks the task again gets the bytes twice.
Errors are `{"error": "..."}`; a missing or unknown version header is a 400 (UNVERIFIED at
Runway: the defensive reading). A model named `no-such-...` is refused as Runway refuses a bad
parameter (400 "Invalid parameter 'model'").
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from ._http import ErrorKind, ProviderApp, read_json, seed_of
from ._tasks import Kind, SimTask

__all__ = ["APPS", "PORTS", "Runway"]

VERSION = "2024-11-06"
#: The SDK's task endpoints and what each produces.
TASK_TYPES: dict[str, Kind] = {
    "text_to_image": "image",
    "image_upscale": "image",
    "image_to_video": "video",
    "text_to_video": "video",
    "video_to_video": "video",
    "video_upscale": "video",
    "character_performance": "video",
    "sound_effect": "audio",
    "text_to_speech": "audio",
    "speech_to_speech": "audio",
    "voice_dubbing": "audio",
    "voice_isolation": "audio",
}
_STATUS = {"running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}
_MAX_SIGNATURES = 20_000


class Runway(ProviderApp):
    name = "runway"
    #: tasks an account runs at once before new ones are THROTTLED (Tier 1: 1-2 per model)
    concurrency: ClassVar[int] = 2
    #: how long a signed output URL lives (Runway: 24-48 h)
    url_seconds: ClassVar[float] = 24 * 3600.0

    TASK_PARAM = "tid"
    MISSING = "Task {} not found"
    ROUTES = (
        ("GET", "/v1/tasks/{tid}", "poll"),
        ("DELETE", "/v1/tasks/{tid}", "cancel"),
        ("POST", "/v1/{task_type}", "submit"),
    )

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._signed: OrderedDict[str, tuple[str, float]] = OrderedDict()  # sig -> (token, end)

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "auth":
            message = "The provided API key is not valid." if "Invalid" in message else message
        return JSONResponse({"error": message}, status)

    def routes(self) -> list[BaseRoute]:
        signed = self.route(
            "/signed/{sig}/{name}", self.signed, methods=["GET"], endpoint="files",
            auth=False, limited=False,
        )  # fmt: skip
        return [*super().routes(), signed]

    async def submit(self, request: Request) -> Response:
        if request.headers.get("x-runway-version") != VERSION:
            return self.error(400, "bad_request", f"X-Runway-Version must be {VERSION}")
        task_type = request.path_params["task_type"]
        kind = TASK_TYPES.get(task_type)
        if kind is None:
            return self.not_found(f"No such endpoint: /v1/{task_type}")
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        refused = _refusal(task_type, body)
        if refused is not None:
            return self.error(400, "bad_request", f"Invalid parameter '{refused}'")
        model = f"{task_type}/{body['model']}"
        self.state.record_submit(self.name, model, body)
        prompt = body.get("promptText") if isinstance(body.get("promptText"), str) else ""
        now, account = time.time(), request.state.account
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=account,
            prompt=prompt,
            seed=seed_of(body.get("seed")),
            params=body,
            task_id=str(uuid.uuid4()),
            failure="The output was rejected by moderation",
        )
        with self.state.lock:
            task.kind = kind  # Runway knows the kind by the endpoint; the sandbox's guess may not
            self._throttle(task, now)
        return JSONResponse({"id": task.id})

    def _throttle(self, task: SimTask, now: float) -> None:
        """Past the account's concurrency the task waits for a slot: THROTTLED until then."""
        busy = sorted(
            t.finished
            for t in self.state.tasks_of(self.name, task.account)
            if t is not task and t.in_flight(now)
        )
        if len(busy) >= self.concurrency:
            free_at = busy[len(busy) - self.concurrency]
            task.extra["throttled_until"] = free_at
            task.queue_seconds = max(task.queue_seconds, free_at - task.created)

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def cancel(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        now = time.time()
        with self.state.lock:
            live = task.phase(now) in ("queued", "running")
            if live:
                task.cancelled_at = now
            else:  # what Runway does to a finished task: its outputs are gone
                task.deleted_at = now
        self.state.count("cancels" if live else "deletes")
        self.state.record_cancel(self.name, task.id)
        return Response(status_code=204)

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        body: dict[str, Any] = {
            "id": task.id,
            "createdAt": _iso(task.created),
            "status": _STATUS.get(phase, "CANCELLED"),
        }
        if phase == "queued":
            throttled = now < task.extra.get("throttled_until", 0.0)
            body["status"] = "THROTTLED" if throttled else "PENDING"
        elif phase == "running":
            body["progress"] = round(task.run_fraction(now), 2)
        elif phase == "succeeded":
            body["output"] = [self._sign(origin, entry.token, entry.ext, now)
                              for entry in self.state.files_for(task)]  # fmt: skip
        elif phase == "failed":
            body.update(failure=task.error or "Task failed", failureCode="SAFETY.OUTPUT.IMAGE")
        return body

    def _sign(self, origin: str, token: str, ext: str, now: float) -> str:
        """A fresh URL for one output, alive for `url_seconds`."""
        sig = secrets.token_urlsafe(12)
        with self.state.lock:
            self._signed[sig] = (token, now + self.url_seconds)
            while len(self._signed) > _MAX_SIGNATURES:
                self._signed.popitem(last=False)
        return f"{origin}/signed/{sig}/{token}.{ext}"

    async def signed(self, request: Request) -> Response:
        """A signed output URL: 403 once it expired (or was used, with `one_shot_urls`)."""
        sig, name = request.path_params["sig"], request.path_params["name"]
        state = self.state
        with state.lock:
            token, ends = self._signed.get(sig, ("", 0.0))
            entry = state.file(token)
            usable = entry is not None and name == f"{token}.{entry.ext}" and time.time() < ends
            if usable and state.faults.one_shot_urls:
                self._signed[sig] = (token, 0.0)
        if entry is None or not usable:
            return Response(_EXPIRED, 403, media_type="application/xml")
        state.count("downloads")
        data = await state.renderer.get(entry.kind, entry.prompt, entry.seed, entry.seconds)
        return Response(data, 200, media_type=entry.content_type)


def _refusal(task_type: str, body: dict[str, Any]) -> str | None:
    """The parameter Runway would call invalid, if any."""
    model = body.get("model")
    if not isinstance(model, str) or not model or model.startswith("no-such"):
        return "model"
    prompt = body.get("promptText")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 1000):
        return "promptText"
    if task_type.startswith("image_to") and not isinstance(body.get("promptImage"), str):
        return "promptImage"
    if task_type.startswith("text_to") and not (isinstance(prompt, str) and prompt.strip()):
        return "promptText"
    return None


def _iso(ts: float) -> str:
    moment = time.gmtime(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(ts % 1 * 1000):03d}Z"


_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)

APPS: dict[str, type[ProviderApp]] = {"runway": Runway}
PORTS: dict[str, int] = {"runway": 8108}
