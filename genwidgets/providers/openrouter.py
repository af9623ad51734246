"""OpenRouter's video generation API: one submit, a poll, and an authenticated download.

Protocol (digest ``shared/providers/beyond/openrouter-videos.md``: OpenRouterTeam/docs@c26125a,
``openapi.yaml`` paths ``/videos``, ``/videos/{jobId}``, ``/videos/{jobId}/content``; the video
generation guide and cookbook):

- ``POST {base}/api/v1/videos`` with ``{model, prompt, duration, resolution, aspect_ratio, size,
  frame_images, input_references, generate_audio, seed, provider}`` (every parameter beside
  ``model``) answers **202** ``{id, polling_url, status: "pending", generation_id}``. A submit is
  never retried blindly (the TS SDK retries it on 5xx for up to an hour: duplicate, billed jobs).
- ``polling_url`` is relative in the spec (``/api/v1/videos/job-abc123``) and absolute in the
  guide: it is resolved against the base origin and followed only when it stays on exactly that
  origin (every poll carries the key); otherwise ``/api/v1/videos/{id}`` is built.
- ``GET /api/v1/videos/{id}`` answers ``{id, status, error, unsigned_urls, usage: {cost,
  is_byok}}`` with six statuses: ``pending``, ``in_progress`` (may be skipped: a job can jump
  from pending to completed), ``completed``, ``failed``, ``cancelled``, ``expired`` (the server's
  time to live, value UNVERIFIED). A 404 for a job we submitted is read as expired too (whether
  old jobs answer 404 or ``expired`` is UNVERIFIED: both end the wait as expired).
- Outputs: ``GET /api/v1/videos/{id}/content?index=N``, which needs the Bearer key (the guide's
  own Python sample forgets it): the adapter sets `authenticated_downloads`, so the key goes with
  a download only to exactly the base origin (`same_origin`). ``unsigned_urls`` may instead name
  a storage host (the spec's example); the defensive reading is to download every output through
  ``/content`` (the documented, authenticated route), one per entry of ``unsigned_urls`` (at
  least one).
- ``usage.cost`` (USD, once completed) is the task's cost; ``usage`` is kept as its usage.
- No cancel endpoint (``cancelled`` happens elsewhere), no times in the record, no push we can
  receive (webhooks need a public HTTPS URL). Errors are ``{"error": {code, message, metadata}}``
  with the HTTP status as code: 401 bad key, 402 no credits, 403 moderation (``metadata.reasons``),
  400 bad parameters, 404 on a submit an unknown model (its message is UNVERIFIED), 429 with
  ``Retry-After`` sometimes, 502/503 upstream.
- Video only (OpenRouter's image models are chat completions, not this API).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

from .._exceptions import InvalidParams, ProviderError
from .._limits import Limits, ProviderLimits
from .._models import Output, Status, Task
from ._base import Provider
from ._catalogue import ModelInfo, Param, catalogue
from ._errors import DEFAULT_RULES, ErrorRule, model_refused
from ._fields import as_float, same_origin, text
from ._wire import Request, Response

__all__ = ["OpenRouterProvider"]

STATUSES: Mapping[str, Status] = {
    "pending": Status.QUEUED,
    "in_progress": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
    "expired": Status.EXPIRED,
}
ERRORS: tuple[ErrorRule, ...] = (
    ErrorRule(
        ProviderError,
        "{provider} refused the request by moderation ({status}): {message}",
        codes={403},
        text=r"moderat|flagged|guardrail|content policy",
    ),
    model_refused(codes={404}),
    ErrorRule(InvalidParams, "{provider} refused the parameters ({status}): {message}", {400},
              submit=True),
    *DEFAULT_RULES,
)
_RESOLUTIONS = ("480p", "720p", "768p", "1080p", "1K", "2K", "4K")
_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21")

VEO_31 = ModelInfo(
    "google/veo-3.1",
    "video",
    "Google Veo 3.1 through OpenRouter (the docs' example model)",
    params={
        "duration": Param(int, "length in seconds (per model: supported_durations)", minimum=1),
        "resolution": Param(str, "output resolution", choices=_RESOLUTIONS),
        "aspect_ratio": Param(str, "frame shape", choices=_RATIOS),
        "size": Param(str, "WIDTHxHEIGHT, instead of resolution + aspect_ratio",
                      pattern=r"\d+x\d+"),
        "generate_audio": Param(bool, "also generate a soundtrack"),
        "frame_images": Param(list, "first/last frames: [{type: image_url, image_url: {url}, "
                                    "frame_type: first_frame}]"),
        "input_references": Param(list, "reference images: [{type: image_url, image_url}]"),
        "provider": Param(dict, "{options: {<provider-slug>: {...}}} passthrough"),
    },
)

#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=120, max_in_flight=10),
    None,
    "invented: OpenRouter documents no video rate or concurrency limit (platform 429s carry "
    "X-RateLimit-*, no credits is a 402); 120 requests/min (polls included) and 10 videos in "
    "flight are a cautious guess",
)


class OpenRouterProvider(Provider):
    """Sans-IO adapter for OpenRouter's ``/api/v1/videos`` (submit, poll, download)."""

    name: ClassVar[str] = "openrouter"
    env_var: ClassVar[str | None] = "OPENROUTER_API_KEY"
    default_base_url: ClassVar[str] = "https://openrouter.ai"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    about: ClassVar[str] = "OpenRouter's video API (/api/v1/videos); downloads keyed on its origin"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(VEO_31)
    # The docs: "poll every 10-30 seconds"; a video takes tens of seconds to minutes.
    poll_interval: ClassVar[tuple[float, float]] = (10.0, 30.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    model_in_body: ClassVar[bool] = True
    stamp_start: ClassVar[bool] = True  # no times in the record: first seen in_progress
    authenticated_downloads: ClassVar[bool] = True
    expired_text: ClassVar[str | None] = "{name} no longer knows this video job (expired)"

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        return self.request("POST", "/api/v1/videos", json={"model": model, **params})

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        record = response.json_or_none()
        record = record if isinstance(record, Mapping) else None
        kept = self._keep(record or {}, {})
        return self.new_task(model, params, response, record, provider_data=kept)

    def build_poll(self, task: Task) -> Request:
        url = task.provider_data.get("poll_url")
        # Checked again: provider_data comes back from the journal, and base_url may change.
        if not (isinstance(url, str) and same_origin(url, self.base_url)):
            url = self._job_path(task.id)
        return self.request("GET", url)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        said = self._clean(record.get("error"))
        error = {
            Status.FAILED: self.failure(raw, said),
            Status.CANCELLED: said or f"{self.name} reports the job cancelled",
            Status.EXPIRED: said or f"{self.name} reports the job expired (time to live passed)",
        }.get(status)
        usage = record.get("usage")
        usage = dict(usage) if isinstance(usage, Mapping) else task.usage
        cost = as_float(usage.get("cost")) if usage else None
        outputs = self._outputs(task, record) if status is Status.SUCCEEDED else ()
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            **self.times(task, status, record, now),
            outputs=outputs,
            cost=task.cost if cost is None else cost,
            usage=usage,
            provider_data=self._keep(record, task.provider_data),
        )

    def _outputs(self, task: Task, record: Mapping[str, Any]) -> tuple[Output, ...]:
        """One output per entry of ``unsigned_urls`` (at least one), each fetched through the
        authenticated ``/content?index=N`` route on the base origin."""
        listed = record.get("unsigned_urls")
        count = max(1, len(listed) if isinstance(listed, list) else 0)
        content = self.url(self._job_path(task.id) + "/content")
        return tuple(self.output(f"{content}?index={i}", kind="video") for i in range(count))

    def _keep(self, record: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
        """The poll URL, resolved against the base, when it stays on the base origin."""
        kept = dict(known)
        url = text(record.get("polling_url"))
        if url is not None:
            resolved = urljoin(self.base_url + "/", url)
            if same_origin(resolved, self.base_url):
                kept["poll_url"] = resolved
        return kept

    def _job_path(self, job_id: str) -> str:
        return f"/api/v1/videos/{quote(job_id, safe='')}"
