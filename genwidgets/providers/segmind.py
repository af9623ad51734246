"""Segmind's V2 asynchronous inference API.

Protocol (seed 002, FINDINGS.md section 3):

- ``POST {base}/v2/{model}`` with the model's parameters at the top level of a JSON body and the
  key in ``x-api-key`` (the gateway rejects ``Authorization: Bearer``, per FINDINGS). The answer is
  ``{request_id, status: "QUEUED", poll_url, status_url, response_url}``.
- ``GET status_url`` (``/v2/requests/{id}/status``) is the light poll: status and ``metrics`` only.
  Once it says ``COMPLETED``, ``GET response_url`` (``/v2/requests/{id}``) returns the outputs,
  shaped by modality: ``images[]``, ``video{}``, ``audio`` (same shape, as the sandbox serves it),
  and always ``output`` (a URL for media, the generated text for LLMs).
- A FAILED job comes back with **HTTP 422** and ``{"status": "FAILED", "error": ...}``, so the body
  is read before the status code.
- Results are kept for one hour ("Result Expiry"); after that every endpoint answers 404, which
  for a task we submitted means expired.
- Errors are ``{"error": "..."}``. 406 means a wrong content type, no credits or a team spend limit
  (only the text tells them apart); 410 a retired model; 429 carries ``x-rate-limit-reset-at-utc``
  and no ``Retry-After``; 405 may answer HTML.
- No cancel, list, delete or webhook endpoint for inference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import ProviderError
from .._models import Output, Status, Task
from ._base import Provider
from ._catalogue import SUBMITS, Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, QUOTA, ErrorRule, model_refused
from ._fields import first_id, is_http_url, is_id, same_site
from ._wire import Request, Response

__all__ = ["SegmindProvider", "same_site"]

STATUSES: Mapping[str, Status] = {
    "QUEUED": Status.QUEUED,
    "PROCESSING": Status.RUNNING,
    "COMPLETED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
}
#: A 406 is a billing refusal only when its text says so (it also means "wrong content type").
_MONEY = r"credit|balance|spend|limit|recharge|billing|payment|insufficient"
_NO_MODEL = model_refused("{provider}: model not found ({status}): {message}", codes={404})
ERRORS: tuple[ErrorRule, ...] = (
    # 410 is a retired model: the fix is the same as for 404 (name another model), so a submit
    # gets UnknownModel (a ConfigError, never retried), which lists the models we know.
    _NO_MODEL,
    _NO_MODEL.where(codes={410}, message="{provider}: model retired ({status}): {message}"),
    QUOTA.where(codes={406}, text=_MONEY),
    ErrorRule(ProviderError, "{provider} retired this model ({status}): {message}", {410}),
    *DEFAULT_RULES,
)
#: Segmind model slugs (seedream-4.5, sdxl1.0-txt2img): the name becomes a URL path segment.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MEDIA_KEYS = ("images", "video", "audio")

SEEDREAM = ModelInfo(
    "seedream-4.5",
    "image",
    "ByteDance Seedream 4.5 text-to-image (the docs' example model)",
    params={
        "aspect_ratio": Param(str, "frame shape, e.g. 1:1 or 16:9", pattern=r"\d{1,2}:\d{1,2}"),
    },
)


#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=5, max_in_flight=5),
    SUBMITS,
    "documented (docs.segmind.com/api-reference/rate-limits): Free 5, Pro 50 requests/min "
    "(GENWIDGETS_SEGMIND_RPM=50); its pricing page says 60 to 1,000. Its own sample polls "
    "every 2 s (30/min), so the limit counts generation requests, not polls. The 5 in flight "
    "are invented (a minute's worth of Free submits)",
)


class SegmindProvider(Provider):
    """Sans-IO adapter for Segmind's V2 async API (submit, light status poll, result fetch)."""

    name: ClassVar[str] = "segmind"
    env_var: ClassVar[str | None] = "SEGMIND_API_KEY"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    default_base_url: ClassVar[str] = "https://api.segmind.com"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(SEEDREAM)
    # The docs' example polls every 2 s. The free tier allows 5 requests a minute and it is not
    # documented whether polls count, so back off to 8 s rather than keep hammering.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 8.0)
    retention: ClassVar[float | None] = 3600.0  # "stored for 1 hour after submission"
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    id_keys: ClassVar[tuple[str, ...]] = ("request_id",)
    stamp_start: ClassVar[bool] = True  # Segmind reports no times
    expired_text: ClassVar[str | None] = (
        "{name} no longer knows this request (results are kept 1 h)"
    )

    def check_model(self, model: str) -> None:
        """The model name is a path segment of the submit URL: only slug characters pass."""
        super().check_model(model)
        if not _SLUG.fullmatch(model) or ".." in model:
            raise self.unknown_model(model)

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        # Segmind answers 406 to a body without a JSON (or multipart) content type.
        path, json_type = f"/v2/{quote(model, safe='')}", {"Content-Type": "application/json"}
        return self.request("POST", path, headers=json_type, json=dict(params))

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        """Always "QUEUED" per the docs; a 422 FAILED with an id is kept as a failed task."""
        body = response.json_or_none()
        record = body if isinstance(body, Mapping) else None
        failed = record is not None and first_id(record, *self.id_keys) is not None
        if not response.ok and not (failed and response.status_code == 422):
            raise self.error_for(response, model=model)
        return self.new_task(model, params, response, record, provider_status="QUEUED")

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._url_for(task, "status_url"))

    def build_result(self, task: Task) -> Request | None:
        """The light status poll carries no outputs: fetch them from ``response_url``."""
        return self.request("GET", self._url_for(task, "response_url"))

    def parse_result(self, task: Task, response: Response) -> Task:
        new = self.parse_poll(task, response)
        if new.status is Status.SUCCEEDED and not new.outputs:
            # The docs promise `output` "always"; a COMPLETED result without it is not a result.
            raise self.malformed("the COMPLETED result has no output", response, task=task)
        return new

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        """The body first: a FAILED job is HTTP 422 with its status in the body."""
        body = response.json_or_none()
        if not isinstance(body, Mapping) or not isinstance(body.get("status"), str):
            return None
        return body if response.ok or response.status_code == 422 else None

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        provider_data = dict(task.provider_data)
        for key in ("status_url", "response_url"):
            url = record.get(key)
            if isinstance(url, str) and same_site(url, self.base_url):
                provider_data[key] = url
        failed = status is Status.FAILED
        outputs = tuple(self._outputs(record, task.model)) or task.outputs
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, self.error_message(record)) if failed else None,
            **self.times(task, status, record, now),
            outputs=outputs if status is Status.SUCCEEDED else (),
            usage=_usage(record, task.usage),
            provider_data=provider_data,
        )

    def _outputs(self, record: Mapping[str, Any], model: str) -> list[Output]:
        """Media from ``images``/``video``/``audio``; else ``output`` (a URL, or the text)."""
        outputs: list[Output] = []
        for key in _MEDIA_KEYS:
            items = record.get(key)
            for item in items if isinstance(items, list) else [items]:
                entry = item if isinstance(item, Mapping) else {"url": item}
                ctype = entry.get("content_type")
                if is_http_url(entry.get("url")):  # `file_name` is server text: never used
                    ctype = ctype if isinstance(ctype, str) else None
                    size = entry.get("file_size")
                    outputs.append(
                        self.output(entry["url"], content_type=ctype, size=size, model=model)
                    )
        if outputs:
            return outputs  # `output` repeats the first media URL
        value = record.get("output")
        if isinstance(value, str) and (self.kind_of(model) == "text" or not is_http_url(value)):
            return [Output(kind="text", text=value)]  # an LLM's answer (kept only on success)
        return self.outputs(value, model)

    def _url_for(self, task: Task, key: str) -> str:
        url = task.provider_data.get(key)
        # Checked again: provider_data comes back from the journal, and base_url may have changed.
        if isinstance(url, str) and same_site(url, self.base_url):
            return url
        path = f"/v2/requests/{quote(task.id, safe='')}"
        return self.url(path + "/status" if key == "status_url" else path)


def _usage(record: Mapping[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """Segmind's ``metrics`` (inference/queue/total time), ``timings`` and reported ``seed``,
    kept under their own names; earlier snapshots' values are kept unless replaced."""
    found: dict[str, Any] = {}
    for key in ("metrics", "timings"):
        value = record.get(key)
        if isinstance(value, Mapping) and value:
            found[key] = dict(value)
    if is_id(record.get("seed")):
        found["seed"] = record["seed"]  # the seed the provider used (as text in the docs' example)
    return {**(previous or {}), **found} if found else previous
