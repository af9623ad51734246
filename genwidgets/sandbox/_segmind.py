"""Segmind's V2 async API (seed 002), including the parts that bite.

`POST /v2/{model}` with `x-api-key` answers `{request_id, status:"QUEUED", poll_url, status_url,
response_url}`. `GET /v2/requests/{id}/status` is the light poll; `GET /v2/requests/{id}` the full
result by modality (`images[]`, `video{}`, `audio{}`, text in `output`; `output` always). A FAILED
job answers HTTP **422** with `{"status":"FAILED","error":...}` on both V2 endpoints (the legacy
`GET /v1/requests/{id}` says FAILED with a 200). After the retention window (1 hour by default)
and for unknown ids every endpoint answers 404 `{"error":"Request <id> not found"}`. A 429
carries `x-rate-limit-reset-at-utc` and never `Retry-After`. Only `x-api-key` authenticates:
the gateway does not take `Authorization: Bearer`.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, big_size, read_json, seed_of
from ._tasks import SimTask

__all__ = ["APPS", "PORTS", "Segmind"]


class Segmind(ProviderApp):
    name = "segmind"
    announces_limit_reset = True  # its 429s carry x-rate-limit-reset-at-utc (FINDINGS)

    def key_from(self, request: Request) -> str | None:
        return request.headers.get("x-api-key", "").strip() or None

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "auth":
            message = (
                "Missing Authorization or x-api-key in header"
                if message.startswith("Missing")
                else "Invalid API key, please check your x-api-key header"
            )
        return JSONResponse({"error": message}, status)

    def rate_limit_headers(self, retry_after: float | None) -> dict[str, str]:
        if retry_after is None:
            return {}
        reset = datetime.fromtimestamp(time.time() + retry_after, tz=timezone.utc)
        return {"x-rate-limit-reset-at-utc": reset.isoformat(timespec="milliseconds")}

    def quota_error(self) -> Response:
        return self.error(406, "quota", "Insufficient credits. Please recharge your account.")

    TASK_PARAM = "rid"
    MISSING = "Request {} not found"
    ROUTES = (
        ("GET", "/v2/requests/{rid}/status", "status"),
        ("GET", "/v2/requests/{rid}", "result"),
        ("GET", "/v1/requests/{rid}", "legacy"),
        ("POST", "/v2/{model}", "submit"),
    )
    POLLS = frozenset({"status", "result", "legacy"})

    async def submit(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            message = (
                "multipart/form-data is not supported by the sandbox; send JSON"
                if ctype == "multipart/form-data"
                else "Content-Type must be application/json or multipart/form-data"
            )
            return self.error(406, "bad_request", message)
        body = await read_json(request)
        if not isinstance(body, dict):
            return self.error(400, "bad_request", "Request body must be a JSON object")
        model = request.path_params["model"]
        self.state.record_submit(self.name, model, body)
        prompt = body.get("prompt")
        big = big_size(model, body.get("bytes"), self.state.options.big_bytes)
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt if isinstance(prompt, str) else "",
            seed=seed_of(body.get("seed")),
            params=body,
            task_id=str(uuid.uuid4()),
            failure=f"Inference failed for prompt: {prompt}",
            # validation happens in the worker, so it surfaces as a FAILED job (the docs' example)
            force_failure=None
            if isinstance(prompt, str)
            else "Prompt is Mandatory and must be string",
            big_bytes=big,
            retention=self.state.options.segmind_retention,
        )
        origin = self.origin(request)
        return JSONResponse(
            {
                "request_id": task.id,
                "status": "QUEUED",
                "poll_url": f"{origin}/v1/requests/{task.id}",
                "status_url": f"{origin}/v2/requests/{task.id}/status",
                "response_url": f"{origin}/v2/requests/{task.id}",
            }
        )

    def _pending(self, task: SimTask, origin: str, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "request_id": task.id,
            "status_url": f"{origin}/v2/requests/{task.id}/status",
            "response_url": f"{origin}/v2/requests/{task.id}",
            "metrics": {},
        }

    def _metrics(self, task: SimTask) -> dict[str, float]:
        return {
            "inference_time": round(task.run_seconds, 2),
            "queue_time": round(task.queue_seconds, 2),
            "total_time": round(task.queue_seconds + task.run_seconds, 2),
        }

    def _failed(self, task: SimTask, status_code: int = 422) -> Response:
        body = {"status": "FAILED", "error": task.error or "Inference failed", "metrics": {}}
        return JSONResponse(body, status_code)

    async def status(self, request: Request) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        phase = task.phase(time.time())
        if phase == "failed":
            return self._failed(task)
        if phase == "succeeded":
            return JSONResponse(
                {"status": "COMPLETED", "request_id": task.id, "metrics": self._metrics(task)}
            )
        status = "QUEUED" if phase == "queued" else "PROCESSING"
        return JSONResponse(self._pending(task, self.origin(request), status))

    async def result(self, request: Request, *, legacy: bool = False) -> Response:
        task = self.find(request)
        if isinstance(task, Response):
            return task
        phase = task.phase(time.time())
        if phase == "failed":
            return self._failed(task, 200 if legacy else 422)
        origin = self.origin(request)
        if phase != "succeeded":
            status = "QUEUED" if phase == "queued" else "PROCESSING"
            return JSONResponse(self._pending(task, origin, status))
        return JSONResponse(await self._completed(task, origin))

    async def legacy(self, request: Request) -> Response:
        return await self.result(request, legacy=True)

    async def _completed(self, task: SimTask, origin: str) -> dict[str, Any]:
        metrics = self._metrics(task)
        if task.kind == "text":
            text = f"Sandbox reply (seed {task.seed}) to: {task.prompt}"
            return {
                "status": "COMPLETED",
                "output": text,
                "reasoning": None,
                "partial": False,
                "error": None,
                "metrics": metrics,
            }
        entry = (await self.state.sized_files_for(task))[0]
        url = origin + entry.path()
        body: dict[str, Any] = {"status": "COMPLETED"}
        if task.kind == "image":
            body["images"] = [
                {"url": url, "content_type": entry.content_type, "file_size": str(entry.size)}
            ]
        else:
            body[task.kind] = {
                "url": url,
                "content_type": entry.content_type,
                "file_name": f"output.{entry.ext}",
                "file_size": entry.size,
            }
        body.update(
            output=url,
            seed=str(task.seed),
            prompt=task.prompt,
            timings={"inference": metrics["inference_time"]},
            metrics=metrics,
        )
        return body


#: What the sandbox serves (see `_protocols`): the apps by port name, and the CLI's ports.
APPS = {"segmind": Segmind}
PORTS = {"segmind": 8101}
