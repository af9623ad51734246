"""Oxen.ai's async generation queue, with completion pushed over Server-Sent Events.

Protocol (seed 004, FINDINGS.md section 5, and Oxen-AI/docs ``inference-api/reference/
async_queue.mdx`` at ed5a1f7, 2026-05-11):

- ``POST {base}/api/ai/queue`` with ``{model, prompt, ...}``: every model parameter (seed
  included) sits at the top level and is validated by Oxen only when the job runs, so a bad value
  comes back later as a ``failed`` generation with ``error_message``. The answer (200, perhaps
  201) is ``{"generations": [{generation_id, status: "queued"}]}``, one entry per
  ``num_generations`` (1-4 at Oxen, always 1 here: one Task is one generation).
- ``GET {base}/api/ai/queue/{id}`` answers ``{generation_id, model_name, prompt, media_type,
  status, result_url, error_message, enqueued_at, started_at, completed_at}`` (Unix seconds) plus
  the submitted parameters. Since May 2026 generations persist; the April docs expired them after
  24 h and answered 404 once terminal, so a 404 for an id we submitted means ``expired``.
- ``DELETE {base}/api/ai/queue/{id}`` cancels: ``{"status": "success", generation_id}``, no
  effect on a terminal generation, 404 for an unknown one.
- ``GET {base}/api/ai/queue`` lists (active ones only, unless a ``status`` filter is given):
  ``{count, generations: [...]}``.
- ``GET {base}/api/events`` is the SSE stream (see `OxenProvider`).
- ``Authorization: Bearer <key>``. Errors: ``{"error": {type, title, detail}, "status": "error",
  "status_message"}`` or ``{"error": {"message"}}``; types ``unauthenticated``,
  ``invalid_params``, ``resource_not_found``, ``unknown_error``.

Every URL is built from ``base_url`` and the generation id: Oxen never names a poll URL, so no
server-given URL ever receives the key (and no host check is needed here). ``result_url`` and the
event's ``url`` are presigned downloads, fetched by the client without the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams, ProviderError
from .._models import Status, Task
from ._catalogue import Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import AUTH, ERROR_TEXTS, OTHER, QUOTA, RATE, SERVER, ErrorRule, model_refused
from ._fields import dig, first_id, is_http_url, is_id, kind_word, text
from ._oxen_events import OxenEvents
from ._wire import Request, Response

__all__ = ["OxenProvider"]

#: Oxen's generation statuses (the same table for polls, lists and the submit answer).
STATUSES: Mapping[str, Status] = {
    "queued": Status.QUEUED,
    "processing": Status.RUNNING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
}
#: The words a user may pass as the list's ``status`` filter, in Oxen's: ours or Oxen's own.
LIST_STATUSES: Mapping[str, str] = {"running": "processing", **{w: w for w in STATUSES}}
LIST_FILTERS: tuple[str, ...] = ("namespace", "model", "status", "media_type", "repo", "folder")
#: Fields of a generation record that are not submitted parameters.
_RECORD_FIELDS = frozenset(
    {"generation_id", "model_name", "model", "media_type", "status", "result_url"}
    | {"error_message", "enqueued_at", "started_at", "completed_at"}
)
_IMAGE_AND_VIDEO = "{provider} cannot queue {model!r}: the queue takes image and video models only"
_IMAGE_AND_VIDEO += " ({message})"
_ONE = "one Task is one generation: submit one task per generation (with different seeds)."
_PARAMS = "{provider} refused the parameters ({status}): {message}"
_MONEY = r"insufficient\s+credit|out\s+of\s+credit|\bbalance\b"
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(kind="^resource_not_found$"),
    model_refused(text=r"model\s+not\s+found"),
    ErrorRule(ProviderError, _IMAGE_AND_VIDEO, text="unsupported_media_type", submit=True),
    RATE,  # documented only for chat; a Retry-After is honoured if one comes
    AUTH.where(codes=None, kind="^unauthenticated$"),
    AUTH,
    QUOTA,
    QUOTA.where(codes=None, text=_MONEY),
    OTHER.where(kind="^invalid_params$", message=_PARAMS),
    SERVER,
    OTHER,
)

KLING_26_PRO = ModelInfo(
    "kling-video-v2-6-pro-text-to-video",
    "video",
    "Kling 2.6 Pro text-to-video, optionally with native audio (the docs' queue example)",
    params={
        "negative_prompt": Param(str, "what the video should not show"),
        "duration": Param(int, "length in seconds", choices=(5, 10)),
        "aspect_ratio": Param(str, "frame shape", choices=("16:9", "9:16", "1:1")),
        "generate_audio": Param(bool, "also generate a synchronized soundtrack"),
        "cfg_scale": Param(float, "how closely to follow the prompt", minimum=0.0, maximum=10.0),
    },
)
FLUX2_KLEIN_4B = ModelInfo(
    "black-forest-labs-flux-2-klein-4b",
    "image",
    "FLUX.2 Klein 4B text-to-image (the async-queue reference's image example)",
    params={
        "input_image": Param(list, "reference image URLs, named @Image1, @Image2... in the prompt"),
        "aspect_ratio": Param(str, "frame shape", choices=("1:1", "16:9", "9:16", "4:3", "3:4")),
        "output_quality": Param(str, "output quality", choices=("standard", "high")),
        "output_format": Param(str, "image file format", choices=("png", "jpg", "webp")),
        "num_inference_steps": Param(int, "denoising steps", minimum=1, maximum=50),
        "guidance_scale": Param(float, "classifier-free guidance", minimum=0.0, maximum=10.0),
    },
)


#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=120, max_in_flight=10),
    None,
    "invented: Oxen documents no limit; a cautious guess",
)


class OxenProvider(OxenEvents):
    """Sans-IO adapter for Oxen.ai's async queue (``hub.oxen.ai/api/ai/queue``) and its events.

    Completion is pushed over SSE at ``GET /api/events`` (``Accept: text/event-stream``, Bearer
    auth); polling is only the fallback, hence the slow `poll_interval`. Facts that shape the
    client around it:

    - **No replay.** Events go only to streams open when they fire, with no buffering and no
      ``Last-Event-ID``: subscribe *before* enqueueing, or a fast job's completion is lost (the
      poll still finds it).
    - **Keep-alive.** Oxen sends a ``: keep-alive`` comment every 15 s when idle; SSE parsers
      drop comments, so a read timeout well above 15 s tells a dead stream from a quiet one.
    - **Per user.** One stream carries every generation of the key's user (and may carry other
      event types, e.g. deployments): events are matched to tasks by ``generation_id``.
    - Only ``succeeded`` and ``failed`` are announced; a cancellation sends no event.
    """

    name: ClassVar[str] = "oxen"
    env_var: ClassVar[str | None] = "OXEN_API_KEY"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    default_base_url: ClassVar[str] = "https://hub.oxen.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(KLING_26_PRO, FLUX2_KLEIN_4B)
    can_cancel: ClassVar[bool] = True
    can_list: ClassVar[bool] = True
    has_events: ClassVar[bool] = True
    # With SSE the poll is only a fallback (missed event, dropped stream); the docs advise 2-5 s
    # for images and 10-30 s for video when polling alone.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 15.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    error_texts: ClassVar[tuple[str, ...]] = ("error.detail", *ERROR_TEXTS)
    id_keys: ClassVar[tuple[str, ...]] = ("generation_id",)
    model_in_body: ClassVar[bool] = True
    time_fields: ClassVar[tuple[str | None, ...]] = ("enqueued_at", "started_at", "completed_at")
    list_path: ClassVar[str] = "/api/ai/queue"  # active generations only, unless a status is given
    list_filters: ClassVar[tuple[str, ...] | None] = LIST_FILTERS
    list_statuses: ClassVar[Mapping[str, str]] = LIST_STATUSES
    list_key: ClassVar[str] = "generations"
    expired_text: ClassVar[str | None] = (
        "{name} no longer knows generation {id} (HTTP 404; expired or removed)"
    )

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, plus: one generation per task."""
        count = params.get("num_generations")
        if count is not None and (isinstance(count, bool) or str(count).strip() != "1"):
            why = f"Parameter 'num_generations' must be 1 here, got {str(count)[:20]!r}: " + _ONE
            raise InvalidParams(why, provider=self.name, model=model)
        # 1 is Oxen's default: leave it out so the request (and its journal key) stays the same.
        return super().validate(model, {k: v for k, v in params.items() if k != "num_generations"})

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body = {"model": model, **{k: v for k, v in params.items() if k != "model"}}
        return self.request("POST", "/api/ai/queue", json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        """The first generation (the April docs answered "processing" here: whatever state is
        reported is kept); ids beyond it are kept too, never to lose a billed generation."""
        body = response.json_or_none()
        if not response.ok or _error_object(body) is not None:
            raise self.error_for(response, model=model)
        entries = dig(body, "generations")
        entries = entries if isinstance(entries, list) and entries else [None]
        others = [first_id(e, "generation_id") for e in entries[1:] if isinstance(e, Mapping)]
        extra = {"other_generation_ids": [o for o in others if o]} if any(others) else {}
        first = entries[0] if isinstance(entries[0], Mapping) else None
        return self.new_task(model, params, response, first, provider_data=extra)

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._generation_url(task.id))

    def build_result(self, task: Task) -> Request | None:
        """Poll once more when a success came without ``result_url`` (a race, or a new shape)."""
        return self.build_poll(task)

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        """A generation record, not the error envelope (whose ``"status": "error"`` is no task
        state); on an error code only a documented status counts."""
        body = response.json_or_none()
        if not isinstance(body, Mapping) or _error_object(body) is not None:
            return None
        status, said = body.get("status"), body.get("generation_id")
        if not response.ok:
            state = is_id(said) and isinstance(status, str) and status in STATUSES
        else:
            state = status.lower() != "error" if isinstance(status, str) else is_id(said)
        if state and task is not None and said is not None and str(said) != task.id:
            raise self.malformed("the answer is about another generation", response, task=task)
        return body if state else None

    def build_cancel(self, task: Task) -> Request:
        return self.request("DELETE", self._generation_url(task.id))

    def parse_cancel(self, task: Task, response: Response) -> Task:
        """Cancelled, unless already terminal (Oxen then ignores the DELETE). Oxen says
        ``success`` even when the job finished just before; a later poll tells the final truth."""
        if response.status_code == 404:  # the April docs also answered 404 once terminal
            return task if task.done else self.expired(task, response)
        if not response.ok or _error_object(response.json_or_none()) is not None:
            raise self.error_for(response, task=task)
        if task.done:
            return task
        cancelled = {"status": Status.CANCELLED, "provider_status": "cancelled", "error": None}
        return task.evolve(**cancelled, finished_at=response.received_at)

    def listed(self, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        model = text(record.get("model_name")) or text(record.get("model")) or "unknown"
        return model, {k: v for k, v in record.items() if k not in _RECORD_FIELDS}

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = record.get("status") if isinstance(record.get("status"), str) else None
        # An undocumented status, or none (the April docs' in-progress records): still running.
        status = self.status_of(raw) if raw else Status.RUNNING
        provider_data = dict(task.provider_data)
        if kind_word(record.get("media_type")):  # this record's, else an earlier one's
            provider_data["media_type"] = kind_word(record.get("media_type"))
        outputs = task.outputs if status is Status.SUCCEEDED else ()
        url, kind = record.get("result_url"), kind_word(provider_data.get("media_type"))
        if status is Status.SUCCEEDED and is_http_url(url):
            outputs = (self.output(url, kind=kind, model=task.model),)
        error = self._clean(record.get("error_message")) if status is Status.CANCELLED else None
        if status is Status.FAILED:
            error = self.failure(raw, record.get("error_message"))
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            **self.times(task, status, record, now),
            outputs=outputs,
            provider_data=provider_data,
        )

    def _generation_url(self, generation_id: str) -> str:
        return f"/api/ai/queue/{quote(generation_id, safe='')}"


def _error_object(body: Any) -> Mapping[str, Any] | None:
    err = dig(body, "error")
    return err if isinstance(err, Mapping) else None
