"""RixAPI's unified async task API, resold as ePhone AI and ElkAPI.

Protocol (seed 001, FINDINGS.md section 2):

- ``POST {base}/v1/task/submit`` with ``{model, input: {prompt, ...}, callback_url?}``: every
  model parameter (seed included) goes inside ``input``; only ``callback_url`` sits beside it.
- ``GET {base}/v1/task/{id}`` answers ``{id, status, created_at, completed_at?, outputs?, error?,
  usage?}``; times are Unix seconds, ``outputs`` a list of URLs, ``error`` a plain string.
- ``Authorization: Bearer <key>``. Errors use the OpenAI envelope
  ``{"error": {"message", "type", "param", "code"}}``; an empty account gets HTTP 403 with
  ``code: insufficient_user_quota``, which is a billing problem, not a refused key.
- No cancel or list endpoint; results "may expire", so a 404 on a task we submitted is expiry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams, ProviderError, QuotaError
from .._models import Status, Task, utcnow
from ._base import (
    MAX_SERVER_TEXT,
    ModelInfo,
    Param,
    Provider,
    Request,
    Response,
    is_http_url,
    parse_time,
)

__all__ = ["RixAPIProvider"]

STATUSES: Mapping[str, Status] = {
    "queued": Status.QUEUED,
    "in_progress": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
}

_QUOTA_CODES = frozenset({"insufficient_user_quota", "insufficient_quota", "quota_exceeded"})
_MODEL_CODES = frozenset({"model_not_found", "model_not_exist", "invalid_model"})
_UNKNOWN_MODEL = re.compile(
    r"\bmodel\b[^.\n]{0,80}?\b(not found|not exist|does not exist|doesn't exist|"
    r"is not supported)\b|\b(unknown|invalid|unsupported|no such) model\b|no available channel",
    re.IGNORECASE,
)
_MAX_TEXT = MAX_SERVER_TEXT


def _video(name: str, description: str, **params: Param) -> ModelInfo:
    return ModelInfo(name, "video", description, params=params)


def _image(name: str, description: str, **params: Param) -> ModelInfo:
    return ModelInfo(name, "image", description, params=params)


#: Models the docs name, with the parameters they document. The catalogue is open: any other
#: name the aggregator knows is passed through, and its "model not found" becomes UnknownModel.
CATALOGUE: tuple[ModelInfo, ...] = (
    _video(
        "kling-v3/text-to-video",
        "Kling v3 text-to-video",
        duration=Param(str, "length in seconds, as text", choices=("5", "10")),
        aspect_ratio=Param(str, "frame shape", choices=("16:9", "9:16", "1:1")),
    ),
    _video("luma-ray-2", "Luma Ray 2 video"),
    _video("runway-gen4", "Runway Gen-4 video"),
    _video("runwayml-gen3a-turbo", "RunwayML Gen-3 Alpha Turbo video"),
    _video("veo-3", "Google Veo 3 video"),
    _video("minimax-video-01", "MiniMax video-01"),
    _video("vidu-2.0", "Vidu 2.0 video"),
    _video("doubao-seedance-1-0-pro", "Doubao (VolcEngine) Seedance 1.0 Pro video"),
    _image("flux-pro", "Black Forest Labs FLUX Pro image"),
    _image("flux-kontext-pro", "Black Forest Labs FLUX Kontext Pro image"),
)


class RixAPIProvider(Provider):
    """Sans-IO adapter for the RixAPI task API (ePhone AI at api.ephone.ai, ElkAPI)."""

    name: ClassVar[str] = "rixapi"
    env_var: ClassVar[str | None] = "RIXAPI_API_KEY"
    default_base_url: ClassVar[str] = "https://api.ephone.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = {info.name: info for info in CATALOGUE}
    open_catalogue: ClassVar[bool] = True
    poll_interval: ClassVar[tuple[float, float]] = (3.0, 10.0)  # the docs advise 3-10 s

    # ------------------------------------------------------------------------------- validation
    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, plus: a callback URL must be a plain http(s) URL."""
        clean = super().validate(model, params)
        callback = clean.get("callback_url")
        if callback is not None and not is_http_url(callback):
            raise InvalidParams(
                f"Parameter 'callback_url' must be an http(s) URL, got {str(callback)[:60]!r}",
                provider=self.name,
                model=model,
            )
        return clean

    # ------------------------------------------------------------------------------- protocol
    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body: dict[str, Any] = {
            "model": model,
            "input": {k: v for k, v in params.items() if k != "callback_url"},
        }
        if params.get("callback_url"):
            body["callback_url"] = params["callback_url"]
        return Request("POST", self.url("/v1/task/submit"), headers=self.auth_headers(), json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        body = response.json_or_none()
        if not response.ok:
            if response.status_code in (400, 404, 422, 503) and self._unknown_model(body):
                error = self.unknown_model(model)
                said = self._clean(self.error_message(body))
                if said:
                    error.message = f"{error.message} ({self.name} said: {said})"
                    error.args = (error.message,)
                raise error
            raise self.error_for(response, model=model)
        data = self._task_body(body, response, model=model)
        task_id = data.get("id") or data.get("task_id")
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or not str(task_id):
            raise self._malformed("the submit answer has no task id", response, model=model)
        raw = data.get("status")
        task = Task(
            id=str(task_id),
            provider=self.name,
            model=model,
            status=Status.QUEUED,
            params=dict(params),
            created_at=parse_time(data.get("created_at")) or utcnow(),
        )
        # A fast provider may answer the submit with the task already done: keep what it said.
        return self._snapshot(task, data) if isinstance(raw, str) else task

    def build_poll(self, task: Task) -> Request:
        return Request(
            "GET", self.url(f"/v1/task/{quote(task.id, safe='')}"), headers=self.auth_headers()
        )

    def parse_poll(self, task: Task, response: Response) -> Task:
        body = response.json_or_none()
        data = _unwrap(body)
        if data is not None and isinstance(data.get("status"), str) and not _err(body):
            return self._snapshot(task, data)  # a task state, whatever the HTTP code says
        if response.status_code == 404:
            return self.expired(task, response)
        if not response.ok:
            raise self.error_for(response, task=task)
        if body is None:
            self.json_body(response, task)  # raises MalformedResponse naming what came instead
        raise self._malformed("the task has no status", response, task=task)

    # ------------------------------------------------------------------------------- errors
    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """The base mapping, except that a quota code means out of credits (HTTP 403 or 429)."""
        body = response.json_or_none()
        message = self._clean(self.error_message(body))
        code = str(_err(body).get("code") or "").lower()
        if code in _QUOTA_CODES or "quota" in code:
            return QuotaError(
                f"{self.name} refused for credits ({code}): {message or 'no message'}",
                status_code=response.status_code,
                provider=self.name,
                model=task.model if task else model,
                task_id=task.id if task else None,
            )
        error = super().error_for(response, task=task, model=model)
        error.message = self._scrub(error.message)
        error.args = (error.message,)
        return error

    # ------------------------------------------------------------------------------- helpers
    def _snapshot(self, task: Task, data: Mapping[str, Any]) -> Task:
        raw = str(data["status"])
        status = STATUSES.get(raw.lower(), Status.RUNNING)  # undocumented: still running
        finished = parse_time(data.get("completed_at"))
        if status.is_terminal and finished is None:
            finished = task.finished_at or utcnow()  # when we first saw it done
        error = None
        if status is Status.FAILED:
            reason = data.get("error")
            if isinstance(reason, Mapping):
                reason = reason.get("message")
            error = self._clean(reason) or f"{self.name} reported the task failed with no reason"
        usage = data.get("usage")
        cost = _cost(data, usage)
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            created_at=parse_time(data.get("created_at")) or task.created_at,
            started_at=parse_time(data.get("started_at")) or task.started_at,
            finished_at=finished,
            outputs=tuple(self._outputs(data.get("outputs"), task.model)),
            usage=dict(usage) if isinstance(usage, Mapping) else task.usage,
            cost=cost if cost is not None else task.cost,
        )

    def _outputs(self, urls: Any, model: str) -> list[Any]:
        outputs = []
        for item in urls if isinstance(urls, list) else []:
            url = item.get("url") if isinstance(item, Mapping) else item
            if isinstance(url, str) and is_http_url(url):  # server text: http(s) links only
                outputs.append(self.output(url, model=model))
        return outputs

    def _task_body(
        self, body: Any, response: Response, *, model: str | None = None
    ) -> Mapping[str, Any]:
        if body is None:
            self.json_body(response)  # raises MalformedResponse naming what came instead
        data = _unwrap(body)
        if data is None:
            raise self._malformed("the body is not a task object", response, model=model)
        return data

    def _unknown_model(self, body: Any) -> bool:
        code = str(_err(body).get("code") or "").lower()
        return code in _MODEL_CODES or bool(_UNKNOWN_MODEL.search(self.error_message(body) or ""))


def _unwrap(body: Any) -> Mapping[str, Any] | None:
    """The task object: the body itself, or its ``data`` when a gateway wraps it."""
    if not isinstance(body, Mapping):
        return None
    data = body.get("data")
    if "status" not in body and "id" not in body and isinstance(data, Mapping):
        return data
    return body


def _err(body: Any) -> Mapping[str, Any]:
    """The OpenAI-style ``error`` object, else {} (a failed task's ``error`` is text)."""
    err = body.get("error") if isinstance(body, Mapping) else None
    return err if isinstance(err, Mapping) else {}


def _cost(data: Mapping[str, Any], usage: Any) -> float | None:
    """A numeric cost at the top level or inside ``usage`` (per-call billing), if any."""
    for source in (data, usage if isinstance(usage, Mapping) else {}):
        for key in ("cost", "total_cost"):
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    continue
    return None
