"""Runway's developer API: one task endpoint per generation type, one task record to poll.

Protocol (/work/shared/providers/beyond/runway.md: runwayml/sdk-python 5.13.0 and
docs.dev.runwayml.com; UNVERIFIED points are read the defensive way, as said):

- ``POST {base}/v1/{task_type}`` (``text_to_image``, ``image_to_video``, ``text_to_video``,
  ``sound_effect``, ...) with a camelCase body ``{model, promptText, promptImage, ratio, duration,
  seed, ...}``, ``Authorization: Bearer <RUNWAYML_API_SECRET>`` and the required
  ``X-Runway-Version: 2024-11-06`` on every request (its absence: UNVERIFIED, so always sent).
  The answer is ``{"id"}`` alone. A model is named ``runway:<task_type>/<model>``
  (``runway:image_to_video/gen4_turbo``), so any pair Runway adds works without a catalogue
  change; ``prompt`` is sent as ``promptText``, every other parameter as given.
- ``GET {base}/v1/tasks/{id}`` answers ``{id, createdAt, status}`` with ``status`` one of
  ``PENDING``, ``THROTTLED`` (over the account's concurrency: stored and queued server-side, not
  an error), ``RUNNING`` (``progress``, a float whose range is UNVERIFIED: read as 0-1, a
  value up to 100 as a percentage), ``SUCCEEDED`` (``output``: URL strings for every task type),
  ``FAILED`` (``failure`` and an optional ``failureCode`` such as ``SAFETY.INPUT.TEXT``) and
  ``CANCELLED`` ("a cancelled or deleted task"). "Consumers ... should not expect updates more
  frequent than once every five seconds": polls start at 6 s (at least 5.4 s with the schedule's
  10% jitter) and back off to 15 s.
- Output URLs expire within 24-48 h; a fresh GET of the task gives new ones. The client's
  download asks the task again when a URL answers 403/404/410, which is exactly that. How long
  the task itself stays is UNVERIFIED: a 404 for a task we submitted is expired.
- ``DELETE {base}/v1/tasks/{id}`` (no body; 204 UNVERIFIED, any 2xx taken) CANCELS a pending,
  throttled or running task but DELETES a finished one's outputs. So `build_cancel` refuses a
  terminal snapshot, and `cancel_deletes_finished` makes the client ask for the task afresh
  right before the DELETE (a snapshot may be a poll gap old, e.g. at a deadline): only a task
  that finishes within that one round trip can still lose its outputs.
- Errors are ``{"error": "..."}``: 400 bad input (never retried), 401 bad key, 404 unknown
  resource, 429 (on a submit: most often the tier's daily generation cap), 502/503/504 load.
  An insufficient-credit answer is UNVERIFIED (a 402 would be a QuotaError by the default rows).
- No cost field, no push, no server-side deadline. The ``/v1/generate/{kind}`` router
  (``config_id`` + ``input``) is not spoken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams, NotSupported, ProviderError
from .._models import OutputKind, Status, Task
from ._base import Provider
from ._catalogue import SUBMITS, Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, MODEL_NOT_FOUND, RATE, ErrorRule, error_context, model_refused
from ._fields import as_float, text
from ._wire import Method, Request, Response

__all__ = ["RunwayProvider"]

VERSION = "2024-11-06"
STATUSES: Mapping[str, Status] = {
    "PENDING": Status.QUEUED,
    "THROTTLED": Status.QUEUED,  # the account's concurrency: queued by Runway, not an error
    "RUNNING": Status.RUNNING,
    "SUCCEEDED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
    "CANCELLED": Status.CANCELLED,
}
#: What a task type produces, for models outside the catalogue: first word found in its name.
TASK_KINDS: tuple[tuple[str, OutputKind], ...] = (
    ("image", "image"),
    ("video", "video"),
    ("character_performance", "video"),
    ("sound", "audio"),
    ("speech", "audio"),
    ("voice", "audio"),
)
ERRORS: tuple[ErrorRule, ...] = (
    # The task type is a path segment: Runway's 404 to a submit means no such endpoint.
    model_refused("{provider} has no such task type ({status}): {message}", codes={404}),
    model_refused(codes={400}, text=MODEL_NOT_FOUND + r"|parameter '?model\b"),
    ErrorRule(ProviderError, "{provider} refused the input ({status}): {message}", {400}),
    RATE.where(
        submit=True,
        message="Rate limited by {provider} ({status}): {message} (on a submit, most often "
        "the tier's daily generation cap for this model)",
    ),
    *DEFAULT_RULES,
)
#: ``<task_type>/<model>``: the task type becomes a path segment.
_MODEL = re.compile(r"([a-z][a-z0-9_]{0,63})/([A-Za-z0-9][A-Za-z0-9._-]{0,63})")
_VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")
_RATIO = Param(str, "frame size as W:H in pixels, e.g. 1280:720", pattern=r"\d{2,4}:\d{2,4}")

LIMITS = ProviderLimits(
    Limits(requests_per_minute=None, max_in_flight=None),
    SUBMITS,
    "documented (docs.dev.runwayml.com/usage/tiers): no requests-per-minute limit; tasks over "
    "the tier's concurrency are accepted as THROTTLED and queued by Runway (not refused); the "
    "daily generation cap answers 429 on a submit, which the client honours",
)
MODELS = catalogue(
    ModelInfo(
        "text_to_image/gen4_image",
        "image",
        "Gen-4 Image, text (and reference images) to image",
        params={"ratio": _RATIO, "referenceImages": Param(list, "[{uri, tag}] references")},
    ),
    ModelInfo(
        "image_to_video/gen4_turbo",
        "video",
        "Gen-4 Turbo, image to video (the docs' example)",
        params={
            "promptImage": Param(str, "HTTPS URL or data URI of the first frame", required=True),
            "ratio": _RATIO,
            "duration": Param(int, "seconds", choices=(5, 10)),
        },
    ),
    ModelInfo(
        "text_to_video/veo3.1_fast",
        "video",
        "Veo 3.1 Fast through Runway, text to video",
        params={
            "ratio": Param(str, "frame size", choices=_VEO_RATIOS),
            "duration": Param(int, "seconds", choices=(4, 6, 8)),
        },
    ),
    ModelInfo(
        "sound_effect/eleven_text_to_sound_v2",
        "audio",
        "ElevenLabs sound effects through Runway",
        params={
            "duration": Param(float, "seconds (automatic when absent)", minimum=0.5, maximum=30),
            "loop": Param(bool, "designed to loop seamlessly"),
        },
    ),
)


class RunwayProvider(Provider):
    """Sans-IO adapter for Runway's tasks API (submit per task type, poll, cancel a live task).

    Cancel is DELETE, which deletes a finished task's outputs: `build_cancel` refuses every
    terminal snapshot (see the module docstring for the window that remains).
    """

    name: ClassVar[str] = "runway"
    env_var: ClassVar[str | None] = "RUNWAYML_API_SECRET"
    default_base_url: ClassVar[str] = "https://api.dev.runwayml.com"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    about: ClassVar[str] = "tasks per type; THROTTLED is queued; DELETE cancels live tasks only"
    models: ClassVar[Mapping[str, ModelInfo]] = MODELS
    model_in_body: ClassVar[bool] = True
    can_cancel: ClassVar[bool] = True
    cancel_deletes_finished: ClassVar[bool] = True  # the client polls right before cancelling
    poll_interval: ClassVar[tuple[float, float]] = (6.0, 15.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    time_fields: ClassVar[tuple[str | None, str | None, str | None]] = ("createdAt", None, None)
    stamp_start: ClassVar[bool] = True  # Runway reports only createdAt
    expired_text: ClassVar[str | None] = "{name} no longer knows this task (deleted or expired)"

    def check_model(self, model: str) -> None:
        if not _MODEL.fullmatch(model):
            hint = "name it <task_type>/<model>, e.g. runway:image_to_video/gen4_turbo"
            raise self.unknown_model(model, hint)
        super().check_model(model)

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """As every adapter does, and the catalogue's required parameters must be there."""
        clean = super().validate(model, params)
        info = self.model_info(model)
        for key, spec in info.params.items() if info else ():
            if spec.required and key not in clean:
                raise InvalidParams(f"{key!r} is required", provider=self.name, model=model)
        return clean

    def kind_of(self, model: str) -> OutputKind | None:
        task_type = model.partition("/")[0]
        by_type = (kind for word, kind in TASK_KINDS if word in task_type)
        return super().kind_of(model) or next(by_type, None)

    def request(self, method: Method, where: str, **parts: Any) -> Request:
        """Every request carries the API version Runway requires."""
        parts["headers"] = {"X-Runway-Version": VERSION, **parts.get("headers", {})}
        return super().request(method, where, **parts)

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        task_type, _, name = model.partition("/")
        body = {"promptText" if key == "prompt" else key: v for key, v in params.items()}
        json_type = {"Content-Type": "application/json"}
        body = {"model": name, **body}
        return self.request("POST", f"/v1/{task_type}", headers=json_type, json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        body = response.json_or_none()
        return self.new_task(model, params, response, body if isinstance(body, Mapping) else None)

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._task_path(task))

    def build_cancel(self, task: Task) -> Request:
        """DELETE, for a task not known to be finished: on a finished one it deletes outputs."""
        if task.done:
            why = f"{self.name} will not cancel a {task.status.value} task: DELETE would delete it"
            raise NotSupported(why, **error_context(self.name, task))
        return self.request("DELETE", self._task_path(task), headers={"Accept": "*/*"})

    def parse_cancel(self, task: Task, response: Response) -> Task:
        if response.status_code == 404:
            return self.expired(task, response)
        if not response.ok:
            raise self.error_for(response, task=task)
        cancelled = Status.CANCELLED
        times = self.times(task, cancelled, {}, response.received_at)
        return task.evolve(status=cancelled, provider_status="CANCELLED", outputs=(), **times)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        error = None
        if status is Status.FAILED:
            said, code = self._clean(record.get("failure")), text(record.get("failureCode"))
            error = self.failure(raw, f"{said} ({code})" if said and code else said or code)
        elif status is Status.CANCELLED:
            error = f"{self.name} reports this task cancelled (or deleted)"
        done = status is Status.SUCCEEDED
        return task.evolve(
            status=status,
            provider_status=raw,
            progress=1.0 if done else _progress(record.get("progress")),
            error=error,
            outputs=tuple(self.outputs(record.get("output"), task.model)) if done else (),
            **self.times(task, status, record, now),
        )

    def _task_path(self, task: Task) -> str:
        return f"/v1/tasks/{quote(task.id, safe='')}"


def _progress(value: Any) -> float | None:
    """Runway's progress as 0-1: its range is UNVERIFIED, so a value over 1 (up to 100) is read
    as a percentage, and anything else is clamped."""
    number = as_float(value)
    if number is None or number != number:  # absent, or NaN
        return None
    if 1.0 < number <= 100.0:
        number /= 100.0
    return min(1.0, max(0.0, number))
