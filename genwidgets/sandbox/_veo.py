"""Veo through the Gemini API, as the SDK and the REST cookbook show it, plus its file storage.

`POST /v1beta/models/{model}:predictLongRunning {instances: [{prompt}], parameters: {...}}`
answers ``{"name": "models/{model}/operations/{id}"}``; `GET /v1beta/models/{model}/operations/
{id}` answers ``{name}`` until done, then ``{name, done: true, response: {"@type",
generateVideoResponse: {generatedSamples: [{video: {uri}}]}}}``, or ``{done, error: {code,
message}}`` (``[fail]``, ``fail_rate``), or, for a prompt with ``[unsafe]``, a response whose
samples the safety filter removed (``raiMediaFilteredCount``, ``raiMediaFilteredReasons``). A task
past its expiry (``[expire]``, ``expire_after``) answers 404 ``NOT_FOUND``, and so does its file.

The ``uri`` is `GET /v1beta/files/{id}:download?alt=media`, which needs the key and answers a 302
to the storage host (the ``veo_files`` port), where the bytes are. The storage host refuses (400)
any request that carries the key, so a client that forwards it across the redirect fails.

Auth: ``x-goog-api-key`` or ``?key=``. A bad key is Google's HTTP **400** ``INVALID_ARGUMENT`` with
reason ``API_KEY_INVALID``; a missing one 403 ``PERMISSION_DENIED``; the no-credits key a 400
``FAILED_PRECONDITION``. Errors are ``{"error": {code, message, status}}``. An unknown model (not
``veo-...``) is a 404; a ``durationSeconds`` Veo does not take, or an ``aspectRatio`` or
``resolution`` it does not know, a 400 ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from ._http import ErrorKind, ProviderApp, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "Veo", "VeoFiles"]

_STATUS: dict[ErrorKind, str] = {
    "auth": "INVALID_ARGUMENT",
    "bad_request": "INVALID_ARGUMENT",
    "not_found": "NOT_FOUND",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "UNAVAILABLE",
    "quota": "FAILED_PRECONDITION",
}
_FILTERED = "Your prompt may violate our policies (sandbox: [unsafe] in the prompt)."


def _google_error(status: int, word: str, message: str, **extra: Any) -> Response:
    return JSONResponse({"error": {"code": status, "message": message, "status": word, **extra}},
                        status)


class Veo(ProviderApp):
    name = "veo"
    TASK_PARAM = "op"
    ROUTES = (
        ("POST", "/v1beta/models/{model}:predictLongRunning", "submit"),
        ("GET", "/v1beta/models/{model}/operations/{op}", "poll"),
        ("GET", "/v1beta/files/{file_id}:download", "download"),
    )

    def key_from(self, request: Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key")

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "auth" and message.startswith("Missing"):
            why = "Method doesn't allow unregistered callers. Please use API Key."
            return _google_error(403, "PERMISSION_DENIED", why)
        if kind == "auth":
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                      "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
            why = "API key not valid. Please pass a valid API key."
            return _google_error(400, "INVALID_ARGUMENT", why, details=[reason])
        return _google_error(status, _STATUS[kind], message)

    def quota_error(self) -> Response:
        why = "Veo is a paid-only feature: enable billing for this project."
        return self.error(400, "quota", why)

    async def submit(self, request: Request) -> Response:
        model = request.path_params["model"]
        if not model.startswith("veo-"):
            why = f"models/{model} is not found for API version v1beta, or is not supported"
            return self.not_found(why)
        body = await read_json(request)
        instances = body.get("instances") if isinstance(body, dict) else None
        first = instances[0] if isinstance(instances, list) and instances else None
        prompt = first.get("prompt") if isinstance(first, dict) else None
        parameters = body.get("parameters") or {} if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt.strip() or not isinstance(parameters, dict):
            return self.error(400, "bad_request", "* instances[0].prompt: a prompt is required")
        refused = self.refused(model, parameters)
        if refused:
            return self.error(400, "bad_request", refused)
        self.state.record_submit(self.name, model, body)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(parameters.get("seed")),
            params={**parameters, "seconds": parameters.get("durationSeconds")},
            task_id=secrets.token_hex(6),
            failure="Video generation failed due to an internal error (sandbox)",
        )
        return JSONResponse({"name": self.operation(task)})

    def refused(self, model: str, parameters: dict[str, Any]) -> str | None:
        """Why Veo would refuse these parameters (the docs' table), or None."""
        durations = (5, 6, 8) if model.startswith("veo-2") else (4, 6, 8)
        checks = {
            "durationSeconds": durations,
            "aspectRatio": ("16:9", "9:16"),
            "resolution": ("720p", "1080p"),
        }
        for field, allowed in checks.items():
            if field in parameters and parameters[field] not in allowed:
                return f"* parameters.{field}: {parameters[field]!r} is not supported"
        return None

    @staticmethod
    def operation(task: SimTask) -> str:
        return f"models/{task.model}/operations/{task.id}"

    async def poll(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.record(task, self.origin(request), time.time()))

    async def download(self, request: Request) -> Response:
        """The Files API: the key is checked (the pipeline), then a redirect to storage."""
        task = self.find_file(request)
        if task is None:
            return self.not_found(f"File {request.path_params['file_id']} not found")
        entry = self.state.files_for(task)[0]
        return RedirectResponse(f"{self.state.origins['veo_files']}/media/{entry.token}", 302)

    def find_file(self, request: Request) -> SimTask | None:
        """The caller's live, succeeded task whose file this is (else None: a 404)."""
        file_id, now = request.path_params["file_id"], time.time()
        with self.state.lock:
            task = self.state.tasks.get(file_id.removeprefix("f-"))
        if task is None or task.provider != self.name or task.account != request.state.account:
            return None
        if task.gone(now) or task.phase(now) != "succeeded" or _unsafe(task):
            return None
        return task

    def record(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.operation(task)}
        phase = task.phase(now)
        if phase in ("queued", "running"):
            return body
        body["done"] = True
        if phase != "succeeded":
            body["error"] = {"code": 13, "message": task.error or "failed"}
            return body
        reply: dict[str, Any] = {"generatedSamples": []}
        if _unsafe(task):
            reply["raiMediaFilteredCount"] = 1
            reply["raiMediaFilteredReasons"] = [_FILTERED]
        else:
            uri = f"{origin}/v1beta/files/f-{task.id}:download?alt=media"
            reply["generatedSamples"] = [{"video": {"uri": uri}}]
        body["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
            "PredictLongRunningResponse",
            "generateVideoResponse": reply,
        }
        return body


def _unsafe(task: SimTask) -> bool:
    return "[unsafe]" in task.prompt


class VeoFiles(ProviderApp):
    """Where the Files API redirects to: serves bytes to anyone with the link, and refuses a
    request that carries the API key (which must never leave Google's API origin)."""

    name = "veo"

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/media/{token}", self.media, methods=["GET"], endpoint="media",
                       auth=False, limited=False)
        ]

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        return _google_error(status, _STATUS[kind], message)

    async def media(self, request: Request) -> Response:
        if request.headers.get("x-goog-api-key") or request.query_params.get("key"):
            self.state.count_request(self.name, "media_with_key")
            return self.error(400, "bad_request", "storage got an API key: it leaked")
        entry = self.state.file(request.path_params["token"])
        if entry is None:
            return self.not_found("No such object")
        self.state.count("downloads")
        data = await self.state.renderer.get(entry.kind, entry.prompt, entry.seed, entry.seconds)
        return Response(data, 200, media_type=entry.content_type)


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"veo": Veo, "veo_files": VeoFiles}
PORTS = {"veo": 8110, "veo_files": 8112}
