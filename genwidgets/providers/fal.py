"""fal.ai's queue API (``queue.fal.run``): submit, follow the named URLs, fetch the result.

Protocol (digest ``providers/beyond/fal.md``: fal-ai/fal@c6f0afa ``fal_client``,
fal-ai/fal-js@381105e, fal's queue, cancel, status-stream, result and error pages):

- ``POST {base}/{model_id}`` (the full id, ``fal-ai/flux/dev``) with the model's input as the JSON
  body and ``Authorization: Key <FAL_KEY>``. The answer (2xx) is ``{request_id, status_url,
  response_url, cancel_url}``, newer ones with ``status: "IN_QUEUE"`` and ``queue_position``.
- Those URLs live under ``owner/app`` only (``fal-ai/flux/requests/{id}/...``, ``workflows/`` and
  ``comfy/`` keep three segments): they are used as given when on fal's own site (they receive
  the key), else rebuilt from the model id.
- ``GET status_url?logs=1``: **202** with ``IN_QUEUE`` (``queue_position``, 0 = next) or
  ``IN_PROGRESS`` (``logs: [{message, level, timestamp}]``), **200** with ``COMPLETED`` (and
  ``metrics.inference_time``, seconds; ``error``/``error_type`` when it failed). There is no
  failed or cancelled status: every request ends ``COMPLETED``.
- ``GET response_url`` answers with **the model's own HTTP status**: 200 and the output
  (``{"images": [{url, content_type, file_size, width, height}], "seed"}``, ``{"video": {url}}``,
  ``{"audio_file": {url}}``: any top-level ``{url}`` object or list of them), 4xx/5xx and the
  model's error for a failure (422 ``{"detail": [{loc, msg, type}]}``), **499** for a request
  cancelled while running. Results are kept 1 h after completion, **6 min when >= 10 KB**: the
  result is fetched in the same step as the message or poll that says ``COMPLETED``. Media URLs
  are public CDN links with their own lifetime (default UNVERIFIED); the client downloads them
  at once.
- ``PUT cancel_url`` answers ``{"status": ...}``: ``OK`` (removed from the queue),
  ``CANCELLATION_REQUESTED`` (running: the app decides; the result later says 499, or the real
  output), ``ALREADY_COMPLETED``, ``NOT_FOUND``.
- Errors: ``{"detail": "...", "error_type": "..."}`` (+ ``X-Fal-Error-Type``) or FastAPI's
  ``{"detail": [{loc, msg, type}]}``. Bad key 401 ``No user found for Key ID and Secret``; empty
  balance 403 ``User is locked. Reason: Exhausted balance...``; bad input 422.
- ``GET status_url/stream?logs=1`` (SSE) pushes the same status records, one ``data:`` line per
  change, a keep-alive comment every 15 s, and closes after ``COMPLETED``. Each event carries
  only the log lines new since the previous one (fal-js appends them; the docs say "same fields
  as Get request status": read defensively, a whole log is recognised too). The client follows a
  task on this stream (`build_task_events`; one stream open = one request), fetches the result
  as soon as ``COMPLETED`` arrives, and polls ``status_url`` only while the stream is refused,
  cut or silent: a finished task costs the submit, one stream and one result GET.
- Not used: webhooks (they need a public URL), ``fal.run`` sync mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams
from .._limits import Limits, ProviderLimits
from .._models import Output, Status, Task
from ._base import Provider
from ._catalogue import ModelInfo, Param, catalogue
from ._errors import DEFAULT_RULES, ERROR_TEXTS, QUOTA, ErrorRule, model_refused
from ._fields import as_int, dig, is_http_url, kind_word, same_site, text
from ._wire import Request, Response

__all__ = ["FalProvider"]

#: The queue's whole enum; FAILED and CANCELED appear only in a third-party schema (UNVERIFIED):
#: read as terminal, so that a task never waits on them.
STATUSES: Mapping[str, Status] = {
    "IN_QUEUE": Status.QUEUED,
    "IN_PROGRESS": Status.RUNNING,
    "COMPLETED": Status.SUCCEEDED,  # ended: the result says how (see `parse_result`)
    "FAILED": Status.FAILED,
    "CANCELED": Status.CANCELLED,
}
#: The four answers to ``PUT cancel_url``: two end a live task, two leave it to its next poll
#: (the runner decides what a cancellation does; the result then says 499, or has the output).
CANCEL_ENDS: Mapping[str, Status] = {"OK": Status.CANCELLED, "NOT_FOUND": Status.EXPIRED}
CANCEL_WAITS = frozenset({"CANCELLATION_REQUESTED", "ALREADY_COMPLETED"})
_PARAMS = "{provider} refused the parameters ({status}): {message}"
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes={404}),  # an unknown app: UNVERIFIED, 404 is the likely answer
    QUOTA.where(codes={402, 403}, text=r"locked|balance|billing|credit"),
    ErrorRule(InvalidParams, _PARAMS, codes={400, 422}, submit=True),
    *DEFAULT_RULES,
)
#: ``owner/app[/path...]``: every segment a slug, at least two of them.
_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)+")
_URL_KEYS = ("status_url", "response_url", "cancel_url")
_LOGS = {"logs": "1"}  # runner logs in status answers and stream events
LIMITS = ProviderLimits(
    Limits(),
    None,
    "documented (docs.fal.ai/documentation/model-apis/concurrency-limits): a per-account cap on "
    "IN_PROGRESS requests; the rest queue, 'never rejected'; no request rate: no client budget",
)

FLUX_DEV = ModelInfo(
    "fal-ai/flux/dev",
    "image",
    "FLUX.1 [dev] text-to-image (12B flow transformer)",
    params={
        "image_size": Param((str, dict), "square_hd, landscape_16_9, ... or {width, height}"),
        "num_inference_steps": Param(int, "denoising steps", minimum=1, maximum=50),
        "guidance_scale": Param(float, "how closely to follow the prompt", minimum=1, maximum=20),
        "num_images": Param(int, "images per request", minimum=1, maximum=4),
        "enable_safety_checker": Param(bool, "filter unsafe images", implied=True),
        "output_format": Param(str, "image file format", choices=("jpeg", "png")),
    },
)
KLING_26_PRO = ModelInfo(
    "fal-ai/kling-video/v2.6/pro/text-to-video",
    "video",
    "Kling 2.6 Pro text-to-video, optionally with native audio",
    params={
        "duration": Param(str, "length in seconds", choices=("5", "10"), implied="5"),
        "aspect_ratio": Param(str, "frame shape", choices=("16:9", "9:16", "1:1")),
        "negative_prompt": Param(str, "what the video should not show"),
        "generate_audio": Param(bool, "also generate a soundtrack"),
    },
)
STABLE_AUDIO = ModelInfo(
    "fal-ai/stable-audio",
    "audio",
    "Stable Audio Open text-to-audio (its result names the file audio_file)",
    params={
        "seconds_total": Param(int, "length in seconds", minimum=1, maximum=47),
        "steps": Param(int, "denoising steps", minimum=1, maximum=1000),
    },
)


class FalProvider(Provider):
    """Sans-IO adapter for fal's queue. Facts fal leaves UNVERIFIED, read defensively:

    - **A 5xx on the result** is the model's failure only when fal's gateway stamped it
      (``x-fal-request-id``, as the official SDK tells them apart); without, it is the ingress
      and is retried. 401/403/429 there are the queue's, never the model's.
    - **A 404** from the status or result URL (unknown or expired request) means expired;
      cancel's ``NOT_FOUND`` too. A 200 result with no media link fails the task (the output
      will not change) rather than being retried.
    - **Cancel** is read from the body's ``status`` whatever the HTTP code (202? 400?); ``OK``
      means cancelled, the other answers leave the task to its next poll.
    - **Limits**: the queue never rejects for concurrency and no request rate is documented, so
      no client-side budget (a 429, should one come, is retried after its Retry-After).
    - **Start deadline**: the task's deadline goes out as ``X-Fal-Request-Timeout`` (seconds to
      *start*, at least 1; fal's minimum is 0.1). Reached, it ends the request ``COMPLETED`` with
      a 504 result (``X-Fal-Request-Timeout-Type: user``): a failure. Where that 504 surfaces is
      UNVERIFIED; once running, only the client's own deadline (a cancel) stops it.
    """

    name: ClassVar[str] = "fal"
    env_var: ClassVar[str | None] = "FAL_KEY"
    default_base_url: ClassVar[str] = "https://queue.fal.run"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(FLUX_DEV, KLING_26_PRO, STABLE_AUDIO)
    limits: ClassVar[ProviderLimits | None] = LIMITS
    about: ClassVar[str] = "fal.ai's queue: status_url, then response_url (the model's HTTP status)"
    can_cancel: ClassVar[bool] = True
    deadline_header: ClassVar[str | None] = "X-Fal-Request-Timeout: {seconds}"  # time to *start*
    # Polls only while the status stream is not open. fal_client polls every 0.1 s, fal-js every
    # 0.5 s; status reads are not rate-limited, and the backoff keeps a long video's cost low.
    poll_interval: ClassVar[tuple[float, float]] = (0.5, 5.0)
    retention: ClassVar[float | None] = 3600.0  # the result: 1 h (6 min when >= 10 KB)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    error_texts: ClassVar[tuple[str, ...]] = ("detail", *ERROR_TEXTS)
    error_kind: ClassVar[str] = "error_type"
    id_keys: ClassVar[tuple[str, ...]] = ("request_id",)
    stamp_start: ClassVar[bool] = True  # fal reports no times
    expired_text: ClassVar[str | None] = "{name} no longer knows request {id} (kept 1 h or 6 min)"

    @classmethod
    def key_from_env(cls, read: Callable[[str], str | None]) -> str | None:
        """``FAL_KEY``, else ``FAL_KEY_ID`` and ``FAL_KEY_SECRET`` joined ``id:secret``."""
        key_id, secret = read("FAL_KEY_ID"), read("FAL_KEY_SECRET")
        return read("FAL_KEY") or (f"{key_id}:{secret}" if key_id and secret else None)

    def check_model(self, model: str) -> None:
        """The id becomes the submit path: slug segments only, ``owner/app`` at least."""
        super().check_model(model)
        if not _MODEL_ID.fullmatch(model) or ".." in model:
            raise self.unknown_model(model)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key}"} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        return self.request("POST", "/" + quote(model, safe="/"), json=dict(params))

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        record = body if isinstance(body := response.json_or_none(), Mapping) else None
        urls = self._urls(record or {}, {})
        return self.new_task(model, params, response, record, provider_data=urls)

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._url_for(task, "status_url"), params=_LOGS)

    def build_task_events(self, task: Task) -> Request | None:
        return self.request("GET", self._url_for(task, "status_url") + "/stream", params=_LOGS)

    def build_result(self, task: Task) -> Request | None:
        return self.request("GET", self._url_for(task, "response_url"))

    def parse_result(self, task: Task, response: Response) -> Task:
        """The model's answer: its output, or how it ended (see the class docstring)."""
        code, fault = response.status_code, self.fault(response, task=task)
        if code == 404:
            return self.expired(task, response)
        gateway = code >= 500 and "x-fal-request-id" not in response.headers
        if code in (401, 403, 429) or gateway:
            raise self.error_for(response, task=task)
        if not response.ok:
            ended = Status.CANCELLED if code == 499 else Status.FAILED
            why = " ".join(filter(None, (fault.said, f"({fault.status})", fault.kind)))
            return self._ended(task, ended, why, response)
        body = self.json_body(response, task)
        outputs = self._outputs(body) if isinstance(body, Mapping) else []
        if not outputs:
            return self._ended(task, Status.FAILED, "the result names no media file", response)
        return task.evolve(outputs=tuple(outputs))

    def build_cancel(self, task: Task) -> Request:
        return self.request("PUT", self._url_for(task, "cancel_url"))

    def parse_cancel(self, task: Task, response: Response) -> Task:
        """One of the four answers, whatever the HTTP code; anything else is an error."""
        said = text(dig(response.json_or_none(), "status")) or ""
        if said not in CANCEL_ENDS and said not in CANCEL_WAITS:
            raise self.error_for(response, task=task)
        if task.done or said == "NOT_FOUND":
            return task if task.done else self.expired(task, response)
        task = task.evolve(provider_status=said)
        return self._ended(task, CANCEL_ENDS[said], None, response) if said in CANCEL_ENDS else task

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        logs = [self._clean(dig(line, "message")) for line in record.get("logs") or ()]
        metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else None
        usage = {**(task.usage or {}), "metrics": dict(metrics)} if metrics else task.usage
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, record.get("error")) if status is Status.FAILED else None,
            **self.times(task, status, record, now),
            queue_position=as_int(record.get("queue_position")) if raw == "IN_QUEUE" else None,
            logs=tuple(line for line in logs if line)[-50:] or task.logs,  # the latest 50
            usage=usage,
            provider_data=self._urls(record, task.provider_data),
        )

    def _ended(self, task: Task, status: Status, error: str | None, response: Response) -> Task:
        finished = task.finished_at or response.received_at
        return task.evolve(status=status, error=error, finished_at=finished)

    def _outputs(self, body: Mapping[str, Any]) -> list[Output]:
        """Every top-level ``{url}`` object or list; a key (``audio_file``) hints the kind."""
        found = []
        for key, value in body.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Mapping) and is_http_url(item.get("url")):
                    hint = kind_word(str(key).split("_")[0].rstrip("s"))  # images, audio_file
                    ctype, size = text(item.get("content_type")), item.get("file_size")
                    found.append(self.output(item["url"], content_type=ctype, size=size, hint=hint))
        return found

    def _urls(self, record: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
        """The URLs fal named (each checked by `_url_for` before it receives the key)."""
        return {**known, **{k: record[k] for k in _URL_KEYS if isinstance(record.get(k), str)}}

    def _url_for(self, task: Task, key: str) -> str:
        """The URL fal named if it is on fal's own site, else one rebuilt under ``owner/app``."""
        url = task.provider_data.get(key)
        if isinstance(url, str) and same_site(url, self.base_url):
            return url
        parts = task.model.split("/")
        app = "/".join(parts[: 3 if parts[0] in ("workflows", "comfy") else 2])  # namespaced
        path = f"/{quote(app, safe='/')}/requests/{quote(task.id, safe='')}"
        return self.url(path + {"status_url": "/status", "cancel_url": "/cancel"}.get(key, ""))
