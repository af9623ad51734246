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

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams, QuotaError
from .._models import Status, Task
from ._base import Provider
from ._catalogue import Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, MODEL_NOT_FOUND, ErrorRule, model_refused
from ._fields import as_float, dig, is_http_url, unwrap
from ._wire import Request, Response

__all__ = ["RixAPIProvider"]

STATUSES: Mapping[str, Status] = {
    "queued": Status.QUEUED,
    "in_progress": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
}
_REFUSED = {400, 404, 422, 503}
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes=_REFUSED, kind=r"^(model_not_found|model_not_exist|invalid_model)$"),
    model_refused(codes=_REFUSED, text=MODEL_NOT_FOUND),
    # An empty account gets HTTP 403 with code insufficient_user_quota: billing, not the key.
    ErrorRule(QuotaError, "{provider} refused for credits ({kind}): {message}", kind="quota"),
    *DEFAULT_RULES,
)


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


#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=120, max_in_flight=10),
    None,
    "invented: RixAPI documents no limit; 120/min and 10 in flight are a cautious guess",
)


class RixAPIProvider(Provider):
    """Sans-IO adapter for the RixAPI task API (ePhone AI at api.ephone.ai, ElkAPI)."""

    name: ClassVar[str] = "rixapi"
    env_var: ClassVar[str | None] = "RIXAPI_API_KEY"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    default_base_url: ClassVar[str] = "https://api.ephone.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(*CATALOGUE)
    poll_interval: ClassVar[tuple[float, float]] = (3.0, 10.0)  # the docs advise 3-10 s
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    error_kind: ClassVar[str] = "error.code"
    id_keys: ClassVar[tuple[str, ...]] = ("id", "task_id")
    time_fields: ClassVar[tuple[str | None, ...]] = ("created_at", "started_at", "completed_at")

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

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body: dict[str, Any] = {
            "model": model,
            "input": {k: v for k, v in params.items() if k != "callback_url"},
        }
        if params.get("callback_url"):
            body["callback_url"] = params["callback_url"]
        return self.request("POST", "/v1/task/submit", json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        # A fast provider may answer the submit with the task already done: keep what it said.
        return self.new_task(model, params, response, unwrap(response.json_or_none()))

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", f"/v1/task/{quote(task.id, safe='')}")

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        """The task object, whatever the HTTP code says, unless the body is an error envelope."""
        body = response.json_or_none()
        data = unwrap(body)
        if data is None or not isinstance(data.get("status"), str):
            return None
        return None if isinstance(dig(body, "error"), Mapping) else data

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        reason = record.get("error")  # a plain string, or an OpenAI-style object
        reason = dig(reason, "message") if isinstance(reason, Mapping) else reason
        usage = record.get("usage")
        cost = _cost(record, usage)
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, reason) if status is Status.FAILED else None,
            **self.times(task, status, record, now),
            outputs=tuple(self.outputs(record.get("outputs") or [], task.model)),
            usage=dict(usage) if isinstance(usage, Mapping) else task.usage,
            cost=cost if cost is not None else task.cost,
        )


def _cost(record: Mapping[str, Any], usage: Any) -> float | None:
    """A numeric cost at the top level or inside ``usage`` (per-call billing), if any."""
    for source in (record, usage if isinstance(usage, Mapping) else {}):
        for key in ("cost", "total_cost"):
            if as_float(source.get(key)) is not None:
                return as_float(source.get(key))
    return None
