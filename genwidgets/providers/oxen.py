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

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, cast
from urllib.parse import quote

from .._exceptions import (
    AuthError,
    InvalidParams,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
)
from .._models import OutputKind, Status, Task, utcnow
from ._base import (
    MAX_SERVER_TEXT,
    Event,
    ModelInfo,
    Param,
    Provider,
    Request,
    Response,
    is_http_url,
    is_id,
    parse_time,
    retry_after,
)

__all__ = ["OxenProvider"]

#: Oxen's generation statuses (the same table for polls, lists and the submit answer).
STATUSES: Mapping[str, Status] = {
    "queued": Status.QUEUED,
    "processing": Status.RUNNING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
}
#: The normalized names a user may pass as the list's ``status`` filter, in Oxen's words.
_STATUS_FILTER: Mapping[str, str] = {
    "queued": "queued",
    "running": "processing",
    "processing": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
LIST_FILTERS: tuple[str, ...] = ("namespace", "model", "status", "media_type", "repo", "folder")
COMPLETED_EVENT = "media_generation_completed"

_KINDS: frozenset[str] = frozenset({"image", "video", "audio", "text"})
#: Fields of a generation record that are not submitted parameters.
_RECORD_FIELDS = frozenset(
    {
        "generation_id",
        "model_name",
        "model",
        "media_type",
        "status",
        "result_url",
        "error_message",
        "enqueued_at",
        "started_at",
        "completed_at",
    }
)
_MODEL_NOT_FOUND = re.compile(r"model\s+not\s+found", re.IGNORECASE)
_QUOTA_TEXT = re.compile(r"insufficient\s+credit|out\s+of\s+credit|\bbalance\b", re.IGNORECASE)
_MAX_TEXT = MAX_SERVER_TEXT

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


class OxenProvider(Provider):
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
    default_base_url: ClassVar[str] = "https://hub.oxen.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = {
        info.name: info for info in (KLING_26_PRO, FLUX2_KLEIN_4B)
    }
    open_catalogue: ClassVar[bool] = True
    can_cancel: ClassVar[bool] = True
    can_list: ClassVar[bool] = True
    has_events: ClassVar[bool] = True
    # With SSE the poll is only a fallback (missed event, dropped stream); the docs advise 2-5 s
    # for images and 10-30 s for video when polling alone.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 15.0)
    # Generations persist since May 2026 (the April docs said 24 h); a 404 still means expired.
    retention: ClassVar[float | None] = None

    # ------------------------------------------------------------------------------- validation
    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, plus: one generation per task, and ``model`` is not a parameter."""
        count = params.get("num_generations")
        if count is not None and not _is_one(count):
            raise InvalidParams(
                f"Parameter 'num_generations' must be 1 here, got {str(count)[:20]!r}: one Task is "
                "one generation. For several results, submit one task per generation "
                "(with different seeds if you want them to differ).",
                provider=self.name,
                model=model,
            )
        # 1 is Oxen's default: leave it out so the request (and its journal key) stays the same.
        rest = {k: v for k, v in params.items() if k != "num_generations"}
        clean = super().validate(model, rest)
        if "model" in clean:
            raise InvalidParams(
                "'model' is not a parameter: name the model as oxen:<model>",
                provider=self.name,
                model=model,
            )
        return clean

    # ------------------------------------------------------------------------------- protocol
    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body = {"model": model, **{k: v for k, v in params.items() if k != "model"}}
        return Request("POST", self.url("/api/ai/queue"), headers=self.auth_headers(), json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        body = response.json_or_none()
        if not response.ok or _error_object(body) is not None:
            raise self._submit_error(response, body, model)
        if body is None:
            self.json_body(response)  # raises MalformedResponse naming what came instead
        generations = body.get("generations") if isinstance(body, Mapping) else None
        first = generations[0] if isinstance(generations, list) and generations else None
        if not isinstance(first, Mapping) or not is_id(first.get("generation_id")):
            raise self._malformed("the answer names no generation_id", response, model=model)
        provider_data: dict[str, Any] = {}
        others = [
            str(g["generation_id"])
            for g in cast("list[Any]", generations)[1:]
            if isinstance(g, Mapping) and is_id(g.get("generation_id"))
        ]
        if others:  # not asked for (num_generations is 1), but never lose a billed generation
            provider_data["other_generation_ids"] = others
        task = Task(
            id=str(first["generation_id"]),
            provider=self.name,
            model=model,
            status=Status.QUEUED,
            created_at=utcnow(),
            params=dict(params),
            provider_data=provider_data,
        )
        # The April docs answered "processing" here; keep whatever state was reported.
        return self._snapshot(task, first) if isinstance(first.get("status"), str) else task

    def build_poll(self, task: Task) -> Request:
        return Request("GET", self._generation_url(task.id), headers=self.auth_headers())

    def parse_poll(self, task: Task, response: Response) -> Task:
        body = response.json_or_none()
        if _is_generation(body, strict=not response.ok):
            record = cast("Mapping[str, Any]", body)
            said_id = record.get("generation_id")
            if said_id is not None and str(said_id) != task.id:
                raise self._malformed("the answer is about another generation", response, task=task)
            return self._snapshot(task, record)
        if response.status_code == 404:
            return self.expired(task, response)
        if not response.ok:
            raise self.error_for(response, task=task)
        if body is None:
            self.json_body(response, task)  # raises MalformedResponse naming what came instead
        raise self._malformed("the generation has no status", response, task=task)

    def build_result(self, task: Task) -> Request | None:
        """Poll once more when a success came without ``result_url`` (a race, or a new shape)."""
        return self.build_poll(task)

    def parse_result(self, task: Task, response: Response) -> Task:
        return self.parse_poll(task, response)

    # ------------------------------------------------------------------------------- cancel
    def build_cancel(self, task: Task) -> Request:
        return Request("DELETE", self._generation_url(task.id), headers=self.auth_headers())

    def parse_cancel(self, task: Task, response: Response) -> Task:
        """Cancelled, unless the task was already terminal (Oxen then ignores the DELETE).

        Oxen answers ``success`` even when the job finished just before the DELETE arrived; the
        snapshot says what was asked, and a later poll tells the final truth.
        """
        if response.status_code == 404:  # the April docs also answered 404 once terminal
            return task if task.done else self.expired(task, response)
        if not response.ok or _error_object(response.json_or_none()) is not None:
            raise self.error_for(response, task=task)
        if task.done:
            return task
        return task.evolve(
            status=Status.CANCELLED,
            provider_status="cancelled",
            error=None,
            finished_at=utcnow(),
        )

    # ------------------------------------------------------------------------------- list
    def build_list(self, **filters: str) -> Request:
        """``GET /api/ai/queue`` with the documented filters; only active generations unless a
        ``status`` is given (Oxen's name or ours: ``running`` means ``processing``)."""
        unknown = sorted(set(filters) - set(LIST_FILTERS))
        if unknown:
            raise InvalidParams(
                f"Unknown list filter {', '.join(map(repr, unknown))}. "
                f"Oxen filters by: {', '.join(LIST_FILTERS)}",
                provider=self.name,
            )
        query = {k: str(v) for k, v in filters.items() if v is not None and str(v) != ""}
        if "status" in query:
            wanted = _STATUS_FILTER.get(query["status"].lower())
            if wanted is None:
                raise InvalidParams(
                    f"Oxen cannot list by status {query['status'][:20]!r}; use one of "
                    "queued, processing (running), succeeded, failed, cancelled",
                    provider=self.name,
                )
            query["status"] = wanted
        return Request(
            "GET", self.url("/api/ai/queue"), headers=self.auth_headers(), params=query or None
        )

    def parse_list(self, response: Response) -> list[Task]:
        if not response.ok:
            raise self.error_for(response)
        body = self.json_body(response)
        items = body.get("generations") if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise self._malformed("the answer has no generations list", response)
        tasks = []
        for record in items:
            if not isinstance(record, Mapping) or not is_id(record.get("generation_id")):
                continue  # nothing to poll or cancel without an id
            model = _text(record.get("model_name")) or _text(record.get("model")) or "unknown"
            params = {k: v for k, v in record.items() if k not in _RECORD_FIELDS}
            base = Task(
                id=str(record["generation_id"]),
                provider=self.name,
                model=model,
                status=Status.QUEUED,
                params=params,
            )
            tasks.append(self._snapshot(base, record))
        return tasks

    # ------------------------------------------------------------------------------- events
    def build_events(self) -> Request:
        headers = {**self.auth_headers(), "Accept": "text/event-stream"}
        return Request("GET", self.url("/api/events"), headers=headers)

    def parse_event(self, event: str, data: str) -> Event | None:
        """A completion for one generation, or None for anything that cannot complete a task:
        other event types, malformed JSON, an unknown status, a success with no usable URL."""
        if event != COMPLETED_EVENT:
            return None
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            return None
        if not isinstance(payload, Mapping) or not is_id(payload.get("generation_id")):
            return None
        status = payload.get("status")
        if status == "succeeded" and not is_http_url(payload.get("url")):
            return None  # nothing to show; the fallback poll reads result_url
        if status not in ("succeeded", "failed"):
            return None  # the docs say only these two appear
        return Event(task_id=str(payload["generation_id"]), payload=dict(payload))

    def apply_event(self, task: Task, event: Event) -> Task:
        """The pushed outcome; the task unchanged when it is already terminal, the event is for
        another generation, or it says nothing we can use."""
        if task.done or event.task_id != task.id:
            return task
        payload = event.payload
        status = payload.get("status")
        provider_data = dict(task.provider_data)
        kind = _kind(payload.get("media_type"))
        if kind is not None:
            provider_data["media_type"] = kind
        finished = task.finished_at or utcnow()
        if status == "succeeded":
            url = payload.get("url")
            if not is_http_url(url):
                return task
            kind = _kind(provider_data.get("media_type"))  # this event's, else an earlier poll's
            output = self.output(url, kind=kind, model=task.model)
            return task.evolve(
                status=Status.SUCCEEDED,
                provider_status="succeeded",
                outputs=(output,),
                error=None,
                finished_at=finished,
                provider_data=provider_data,
            )
        if status == "failed":
            return task.evolve(
                status=Status.FAILED,
                provider_status="failed",
                outputs=(),
                error=self._clean(payload.get("error"))
                or f"{self.name} reported the generation failed with no reason",
                finished_at=finished,
                provider_data=provider_data,
            )
        return task

    # ------------------------------------------------------------------------------- errors
    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """Map Oxen's error envelope: by ``error.type`` first, then by the HTTP code."""
        code = response.status_code
        body = response.json_or_none()
        err = _error_object(body) or {}
        kind = str(err.get("type") or "").lower()
        message = self._clean(self.error_message(body)) or _reason(code)
        kw: dict[str, Any] = {
            "status_code": code,
            "provider": self.name,
            "model": task.model if task else model,
            "task_id": task.id if task else None,
        }
        if code == 429:  # documented only for chat; honour a Retry-After if one comes
            return RateLimited(
                f"Rate limited by {self.name}: {message}", retry_after=retry_after(response), **kw
            )
        if kind == "unauthenticated" or code in (401, 403):
            return AuthError(f"{self.name} refused the key (HTTP {code}): {message}", **kw)
        if code == 402 or _QUOTA_TEXT.search(message):
            return QuotaError(f"{self.name} refused for credits (HTTP {code}): {message}", **kw)
        if kind == "invalid_params":
            return ProviderError(
                f"{self.name} refused the parameters (HTTP {code}): {message}", **kw
            )
        if code >= 500:
            return ServerError(f"{self.name} server error (HTTP {code}): {message}", **kw)
        return ProviderError(f"{self.name} error (HTTP {code}): {message}", **kw)

    def error_message(self, body: Any) -> str | None:
        """``error.detail``, else ``error.message``, ``error.title``, then the top level."""
        err = _error_object(body)
        if err is not None:
            for key in ("detail", "message", "title"):
                text = err.get(key)
                if isinstance(text, str) and text.strip():
                    return text
        return super().error_message(body)

    def expired(self, task: Task, response: Response | None = None) -> Task:
        """A 404 for a generation we submitted: gone (the April docs' 24 h TTL), not unknown."""
        gone = self._clean(self.error_message(response.json_or_none())) if response else None
        error = f"{self.name} no longer knows generation {task.id} (HTTP 404; expired or removed)"
        return task.evolve(
            status=Status.EXPIRED,
            error=f"{error}: {gone}" if gone else error,
            finished_at=task.finished_at or utcnow(),
        )

    def _submit_error(self, response: Response, body: Any, model: str) -> ProviderError:
        err = _error_object(body) or {}
        said = self._clean(self.error_message(body))
        if str(err.get("type") or "").lower() == "resource_not_found" or (
            said and _MODEL_NOT_FOUND.search(said)
        ):
            error = self.unknown_model(model)
            if said:
                error.message = f"{error.message} ({self.name} said: {said})"
                error.args = (error.message,)
            return error
        if said and "unsupported_media_type" in said:
            return ProviderError(
                f"{self.name} cannot queue {model!r}: the queue takes image and video models "
                f"only ({said})",
                status_code=response.status_code,
                provider=self.name,
                model=model,
            )
        return self.error_for(response, model=model)

    # ------------------------------------------------------------------------------- helpers
    def _snapshot(self, task: Task, record: Mapping[str, Any]) -> Task:
        raw = record.get("status")
        if isinstance(raw, str):
            status = STATUSES.get(raw.lower(), Status.RUNNING)  # undocumented: still running
        else:
            status = Status.RUNNING  # the April docs: a record without status is in progress
        provider_data = dict(task.provider_data)
        kind = _kind(record.get("media_type"))
        if kind is not None:
            provider_data["media_type"] = kind
        finished = None
        if status.is_terminal:  # Oxen's time, else when we first saw it done
            finished = parse_time(record.get("completed_at")) or task.finished_at or utcnow()
        error = None
        if status is Status.FAILED:
            error = self._clean(record.get("error_message")) or (
                f"{self.name} reported the generation failed with no reason"
            )
        elif status is Status.CANCELLED:
            error = self._clean(record.get("error_message"))
        outputs = task.outputs if status is Status.SUCCEEDED else ()
        url = record.get("result_url")
        if status is Status.SUCCEEDED and is_http_url(url):
            outputs = (
                self.output(url, kind=_kind(provider_data.get("media_type")), model=task.model),
            )
        return task.evolve(
            status=status,
            provider_status=raw if isinstance(raw, str) else None,
            error=error,
            created_at=parse_time(record.get("enqueued_at")) or task.created_at,
            started_at=parse_time(record.get("started_at")) or task.started_at,
            finished_at=finished,
            outputs=outputs,
            provider_data=provider_data,
        )

    def _generation_url(self, generation_id: str) -> str:
        return self.url(f"/api/ai/queue/{quote(generation_id, safe='')}")


def _is_generation(body: Any, *, strict: bool) -> bool:
    """Does `body` carry a generation's state? On an error code only a documented status counts
    (the error envelope's own ``"status": "error"`` must not pass as a task state)."""
    if not isinstance(body, Mapping) or _error_object(body) is not None:
        return False
    status = body.get("status")
    if strict:
        return is_id(body.get("generation_id")) and isinstance(status, str) and status in STATUSES
    if isinstance(status, str):
        return status.lower() != "error"
    return is_id(body.get("generation_id"))


def _error_object(body: Any) -> Mapping[str, Any] | None:
    err = body.get("error") if isinstance(body, Mapping) else None
    return err if isinstance(err, Mapping) else None


def _is_one(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == 1
    return isinstance(value, str) and value.strip() == "1"


def _kind(value: Any) -> OutputKind | None:
    if isinstance(value, str) and value.strip().lower() in _KINDS:
        return cast("OutputKind", value.strip().lower())
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _reason(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"
