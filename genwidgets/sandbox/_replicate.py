"""Replicate's Predictions API (reference digest ``shared/providers/beyond/replicate.md``).

`POST /v1/models/{owner}/{name}/predictions {input}` (official models) and `POST /v1/predictions
{version, input}` answer 201 with the Prediction `{id, model, version, input, logs, output, error,
status, created_at, started_at, completed_at, data_removed, metrics, urls: {get, cancel, web},
source}` and a `Location` header; `GET /v1/predictions/{id}` reads it; `POST .../{id}/cancel`
cancels it (an already finished one is answered unchanged). Statuses: starting -> processing ->
succeeded | failed | canceled | aborted.

What each kind of model returns in `output`: images a list of URLs, video one URL string, audio
an object `{"audio_out": url}`, language models (llama, gpt, chat, mistral... in the name) a
list of tokens (half of them while processing). Running predictions log tqdm lines
(`40%|████      | 20/50`). A file model's files are ready `FILES_FIRST` seconds before its
status says succeeded (at the task's finish): meanwhile it is `processing` with every file in
`output` (the trap the docs describe for `Prefer: wait`).

Headers: `Prefer: wait[=N]` (1..60 s, default 60) holds the create until the output is ready or N
s pass, then answers the prediction as it is (also `starting` with nothing). `Cancel-After: <Go
duration>` ("90s", "1m", "1h30m") sets `deadline`: reached before the start the prediction ends
`aborted`, while running `canceled`. The `[abort]` prompt marker stands for a deadline shorter
than the queue (aborted before it starts). Removed data (the `expire_after` fault and the
`[expire]` marker: Replicate's "after an hour") is `output: null, data_removed: true, input: {},
logs: ""` with the status kept, never a 404.

Errors are problem details `{title, detail, status}`: 401 "Unauthenticated" (missing or invalid
token), 402 "Insufficient credit" (the `no-quota-key`; body invented: the digest marks it
UNVERIFIED), 404 for an unknown prediction or a model whose name starts with "no-such", 422
"Invalid version or not permitted" (a version that is neither 64 hex digits nor
owner/name[:version]), 422 "Input validation failed" (no object input, no string prompt,
`num_outputs` outside 1..4, a bad `Cancel-After`), 429 `{"detail": "Request was throttled..."}`.
Auth: `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._http import ErrorKind, ProviderApp, big_size, read_json, seed_of
from ._tasks import Kind, SimTask, kind_for

__all__ = ["APPS", "PORTS", "Replicate"]

#: Seconds a file model's outputs are in place before its status turns `succeeded`.
FILES_FIRST = 0.15
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz234567"
_TEXT_WORDS = ("llama", "llm", "gpt", "chat", "mistral", "instruct")
_TITLES: dict[ErrorKind, str] = {
    "auth": "Unauthenticated",
    "bad_request": "Input validation failed",
    "not_found": "Not found",
    "server": "Internal server error",
    "quota": "Insufficient credit",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NO_VERSION = (
    "The specified version does not exist (or perhaps you don't have permission to use it?)"
)
_VERSION = re.compile(r"(?:[\w.-]+/[\w.-]+:)?[0-9a-f]{64}|[\w.-]+/[\w.-]+")


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse({"title": title, "detail": detail, "status": status}, status)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def seconds_of(value: str) -> float | None:
    """A Go duration ("90s", "1m", "1h30m", "500ms") in seconds; None if it is not one."""
    value = value.strip()
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _wait_of(prefer: str) -> float | None:
    """Seconds asked by `Prefer: wait[=N]` (1..60), or None."""
    found = re.search(r"\bwait(?:\s*=\s*(\d+))?\b", prefer)
    if found is None:
        return None
    return float(min(60, max(1, int(found[1])))) if found[1] else 60.0


def _files_at(task: SimTask) -> float:
    """When a file model's output is complete: `FILES_FIRST` s before it succeeds."""
    if task.kind == "text":
        return task.finished
    return max(task.started, task.finished - FILES_FIRST)


def _ran(task: SimTask, now: float) -> bool:
    """Has the prediction started (by `now`, and before any cancel or deadline)?"""
    stop = task.cancelled_at
    return now >= task.started and (stop is None or stop >= task.started)


def _kind(model: str, params: dict[str, Any]) -> Kind:
    kind = kind_for("replicate", model, params)
    says_text = any(word in model.lower() for word in _TEXT_WORDS)
    return "text" if kind == "image" and says_text and "image" not in model.lower() else kind


def _bad_input(body: Any) -> str | None:
    """What is wrong with a create's input, in Replicate's words, or None."""
    inputs = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inputs, dict):
        return "- input: Invalid type. Expected: object"
    if not isinstance(inputs.get("prompt"), str):
        return "- input: prompt is required"
    count = inputs.get("num_outputs", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4:
        return "- input.num_outputs: Must be between 1 and 4"
    return None


class Replicate(ProviderApp):
    name = "replicate"
    TASK_PARAM = "pid"
    MISSING = "The requested prediction {} was not found"
    ROUTES = (
        ("POST", "/v1/predictions", "submit"),
        ("POST", "/v1/models/{owner}/{model}/predictions", "submit"),
        ("GET", "/v1/predictions/{pid}", "poll"),
        ("POST", "/v1/predictions/{pid}/cancel", "cancel"),
    )

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        if kind == "rate_limit":  # the documented 429 has no title
            return JSONResponse({"detail": f"Request was throttled. {message}"}, status)
        if kind == "auth":
            valid = "" if message.startswith("Missing") else "valid "
            message = f"You did not pass a {valid}authentication token"
        return _problem(status, _TITLES[kind], message)

    def quota_error(self) -> Response:
        return self.error(
            402,
            "quota",
            "You have insufficient credit to run this model. Go to "
            "https://replicate.com/account/billing#billing to purchase credit.",
        )

    async def submit(self, request: Request) -> Response:
        body = await read_json(request)
        owner, name = request.path_params.get("owner"), request.path_params.get("model")
        version = None if owner else body.get("version") if isinstance(body, dict) else None
        if owner is None and not (isinstance(version, str) and _VERSION.fullmatch(version)):
            return _problem(422, "Invalid version or not permitted", _NO_VERSION)
        if owner is not None and (owner.startswith("no-such") or str(name).startswith("no-such")):
            return self.not_found(f"The requested model {owner}/{name} was not found")
        wrong = _bad_input(body)
        deadline = seconds_of(request.headers.get("cancel-after", "0s"))
        if deadline is None or deadline < 0:
            wrong = wrong or "Cancel-After must be a duration such as 30s, 5m or 1h"
        if wrong is not None:
            return self.error(422, "bad_request", wrong)
        model = f"{owner}/{name}" if owner else str(version).split(":")[0]
        self.state.record_submit(self.name, model, body)
        inputs: dict[str, Any] = body["input"]
        task = self._create(request, model, inputs, version, deadline or None)
        hold = _wait_of(request.headers.get("prefer", ""))
        now = await self._hold(task, hold) if hold else time.time()
        prediction = self.prediction(task, self.origin(request), now)
        headers = {"Location": prediction["urls"]["get"]}
        return JSONResponse(prediction, 201, headers=headers)

    def _create(
        self,
        request: Request,
        model: str,
        inputs: dict[str, Any],
        version: str | None,
        deadline: float | None,
    ) -> SimTask:
        prompt = inputs["prompt"]
        task = self.state.create_task(
            provider=self.name,
            model=model,
            account=request.state.account,
            prompt=prompt,
            seed=seed_of(inputs.get("seed")),
            params=inputs,
            task_id="".join(secrets.choice(_ID_CHARS) for _ in range(26)),
            failure=f"Prediction failed: CUDA out of memory while running {prompt!r}",
            big_bytes=big_size(model, inputs.get("bytes"), self.state.options.big_bytes),
        )
        with self.state.lock:
            task.kind = _kind(model, inputs)
            task.extra["version"] = version.rsplit(":", 1)[-1] if version else "hidden"
            if "[abort]" in prompt:
                deadline = task.queue_seconds / 2
            if deadline is not None:
                task.extra["deadline"] = task.created + deadline
                if task.created + deadline < task.finished:
                    task.cancelled_at = task.created + deadline
                    task.extra["aborted"] = deadline < task.queue_seconds
        return task

    async def _hold(self, task: SimTask, seconds: float) -> float:
        """Wait until the output is ready (or the task ended) or `seconds` pass; the moment."""
        ready = self._ready_at(task)
        now = time.time()
        wait = min(seconds, ready - now)
        if wait > 0 and self.state.closing is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.state.closing.wait(), wait)
        return max(time.time(), ready) if ready - now <= seconds else time.time()

    def _ready_at(self, task: SimTask) -> float:
        """When a held create answers: the output is out, or the prediction was stopped."""
        stop, ready = task.cancelled_at, _files_at(task)
        return stop if stop is not None and stop < ready else ready

    async def poll(self, request: Request) -> Response:
        task = self._lookup(request)
        if isinstance(task, Response):
            return task
        return JSONResponse(self.prediction(task, self.origin(request), time.time()))

    async def cancel(self, request: Request) -> Response:
        self.state.count("cancels")
        task = self._lookup(request)
        if isinstance(task, Response):
            return task
        now = time.time()
        with self.state.lock:
            if task.phase(now) in ("queued", "running") and not task.gone(now):
                task.cancelled_at = now
                task.extra["aborted"] = False
        self.state.record_cancel(self.name, task.id)
        return JSONResponse(self.prediction(task, self.origin(request), now))

    def _lookup(self, request: Request) -> SimTask | Response:
        """The caller's prediction, also once its data is removed (it then still exists)."""
        task_id = request.path_params[self.TASK_PARAM]
        with self.state.lock:
            task = self.state.tasks.get(task_id)
        mine = task is not None and task.provider == self.name
        if task is None or not mine or task.account != request.state.account:
            return self.not_found(self.MISSING.format(task_id))
        return task

    def prediction(self, task: SimTask, origin: str, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        if phase == "cancelled":
            status = "aborted" if task.extra.get("aborted") else "canceled"
        else:
            status = {"queued": "starting", "running": "processing"}.get(phase, phase)
        ended = status in ("succeeded", "failed", "canceled", "aborted")
        started = task.started if _ran(task, now) else None
        completed = None
        if ended:
            completed = task.cancelled_at if phase == "cancelled" else task.finished
        url = f"{origin}/v1/predictions/{task.id}"
        removed = task.gone(now)
        body: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "version": task.extra.get("version", "hidden"),
            "input": {} if removed else task.params,
            "logs": "" if removed else self._logs(task, now),
            "output": None if removed else self._output(task, phase, status, origin, now),
            "error": task.error if status == "failed" else None,
            "status": status,
            "source": "api",
            "data_removed": removed,
            "created_at": _iso(task.created),
            "started_at": _iso(started),
            "completed_at": _iso(completed),
            "urls": {"get": url, "cancel": f"{url}/cancel", "web": f"{origin}/p/{task.id}"},
        }
        if "deadline" in task.extra:
            body["deadline"] = _iso(task.extra["deadline"])
        if ended and started is not None and completed is not None:
            body["metrics"] = {
                "predict_time": round(completed - started, 6),
                "total_time": round(completed - task.created, 6),
            }
        return body

    def _output(self, task: SimTask, phase: str, status: str, origin: str, now: float) -> Any:
        if task.kind == "text":
            words = re.findall(r"\S+\s*", f"Sandbox reply (seed {task.seed}) to: {task.prompt}")
            if status == "succeeded":
                return words
            return words[: len(words) // 2] if status == "processing" else None
        early = phase == "running" and not task.fails and now >= _files_at(task)
        if phase != "succeeded" and not early:
            return None  # every file is out a moment before the status says succeeded
        url = origin + self.state.files_for(task)[0].path()
        return {"image": [url], "video": url}.get(task.kind, {"audio_out": url})

    def _logs(self, task: SimTask, now: float) -> str:
        if not _ran(task, now):
            return ""
        stop = task.cancelled_at
        steps = int(50 * task.run_fraction(now if stop is None else min(now, stop)))
        bar = "█" * (steps // 5) + " " * (10 - steps // 5)
        return f"Using seed: {task.seed}\n{steps * 2}%|{bar}| {steps}/50 [00:01<00:00]\n"


APPS: dict[str, type[ProviderApp]] = {"replicate": Replicate}
PORTS: dict[str, int] = {"replicate": 8107}
