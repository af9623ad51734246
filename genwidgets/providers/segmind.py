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
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import ProviderError, QuotaError, UnknownModel
from .._models import Output, Status, Task, utcnow
from ._base import (
    MAX_SERVER_TEXT,
    ModelInfo,
    Param,
    Provider,
    Request,
    Response,
    is_http_url,
    is_id,
    same_site,
)

__all__ = ["SegmindProvider"]

STATUSES: Mapping[str, Status] = {
    "QUEUED": Status.QUEUED,
    "PROCESSING": Status.RUNNING,
    "COMPLETED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
}

#: Segmind model slugs (seedream-4.5, sdxl1.0-txt2img): the name becomes a URL path segment.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A 406 is a billing refusal only when its text says so (it also means "wrong content type").
_QUOTA_TEXT = re.compile(
    r"credit|balance|spend|limit|recharge|billing|payment|insufficient", re.IGNORECASE
)
_MEDIA_KEYS = ("images", "video", "audio")
_MAX_TEXT = MAX_SERVER_TEXT

SEEDREAM = ModelInfo(
    "seedream-4.5",
    "image",
    "ByteDance Seedream 4.5 text-to-image (the docs' example model)",
    params={
        "aspect_ratio": Param(str, "frame shape, e.g. 1:1 or 16:9", pattern=r"\d{1,2}:\d{1,2}"),
    },
)


class SegmindProvider(Provider):
    """Sans-IO adapter for Segmind's V2 async API (submit, light status poll, result fetch)."""

    name: ClassVar[str] = "segmind"
    env_var: ClassVar[str | None] = "SEGMIND_API_KEY"
    default_base_url: ClassVar[str] = "https://api.segmind.com"
    models: ClassVar[Mapping[str, ModelInfo]] = {SEEDREAM.name: SEEDREAM}
    open_catalogue: ClassVar[bool] = True
    # The docs' example polls every 2 s. The free tier allows 5 requests a minute and it is not
    # documented whether polls count, so back off to 8 s rather than keep hammering.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 8.0)
    retention: ClassVar[float | None] = 3600.0  # "stored for 1 hour after submission"

    # ------------------------------------------------------------------------------- validation
    def check_model(self, model: str) -> None:
        """The model name is a path segment of the submit URL: only slug characters pass."""
        super().check_model(model)
        if not _SLUG.fullmatch(model) or ".." in model:
            raise self.unknown_model(model)

    # ------------------------------------------------------------------------------- protocol
    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        return Request(
            "POST",
            self.url(f"/v2/{quote(model, safe='')}"),
            # Segmind answers 406 to a body without a JSON (or multipart) content type.
            headers={**self.auth_headers(), "Content-Type": "application/json"},
            json=dict(params),
        )

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        body = response.json_or_none()
        request_id = body.get("request_id") if isinstance(body, Mapping) else None
        if not response.ok and not (is_id(request_id) and response.status_code == 422):
            if response.status_code in (404, 410):
                raise self._unknown_model(model, response)
            raise self.error_for(response, model=model)
        if body is None:
            self.json_body(response)  # raises MalformedResponse naming what came instead
        if not isinstance(body, Mapping) or not is_id(request_id):
            raise self._malformed("the submit answer has no request_id", response, model=model)
        task = Task(
            id=str(request_id),
            provider=self.name,
            model=model,
            status=Status.QUEUED,
            provider_status="QUEUED",
            created_at=utcnow(),  # Segmind reports no times; this is when it accepted the job
            params=dict(params),
        )
        # Always "QUEUED" per the docs; a 422 FAILED here is kept as a failed task, not lost.
        return self._snapshot(task, body) if isinstance(body.get("status"), str) else task

    def build_poll(self, task: Task) -> Request:
        return Request("GET", self._url_for(task, "status_url"), headers=self.auth_headers())

    def parse_poll(self, task: Task, response: Response) -> Task:
        body = self._task_body(task, response)
        return self._expired(task, response) if body is None else self._snapshot(task, body)

    def build_result(self, task: Task) -> Request | None:
        """The light status poll carries no outputs: fetch them from ``response_url``."""
        return Request("GET", self._url_for(task, "response_url"), headers=self.auth_headers())

    def parse_result(self, task: Task, response: Response) -> Task:
        body = self._task_body(task, response)
        if body is None:
            return self._expired(task, response)
        new = self._snapshot(task, body)
        if new.status is Status.SUCCEEDED and not new.outputs:
            # The docs promise `output` "always"; a COMPLETED result without it is not a result.
            raise self._malformed("the COMPLETED result has no output", response, task=task)
        return new

    # ------------------------------------------------------------------------------- errors
    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """The base mapping, refined for Segmind's 406 (credits vs content type) and 410."""
        code = response.status_code
        message = self._clean(self.error_message(response.json_or_none()))
        kw: dict[str, Any] = {
            "status_code": code,
            "provider": self.name,
            "model": task.model if task else model,
            "task_id": task.id if task else None,
        }
        if code == 406 and message and _QUOTA_TEXT.search(message):
            return QuotaError(f"{self.name} refused for credits (HTTP 406): {message}", **kw)
        if code == 410:
            return ProviderError(
                f"{self.name} retired this model (HTTP 410): {message or 'Gone'}", **kw
            )
        error = super().error_for(response, task=task, model=model)
        error.message = self._scrub(error.message[: _MAX_TEXT + 100])
        error.args = (error.message,)
        return error

    # ------------------------------------------------------------------------------- helpers
    def _unknown_model(self, model: str, response: Response) -> UnknownModel:
        """404 on submit: no such model. 410: the model was retired, so the fix is the same --
        name another model -- and UnknownModel (a ConfigError, never retried) lists the ones we
        know, where a bare ProviderError would not."""
        error = self.unknown_model(model)
        said = self._clean(self.error_message(response.json_or_none()))
        why = "retired (HTTP 410)" if response.status_code == 410 else "not found (HTTP 404)"
        error.message = f"{error.message} ({self.name}: model {why}{': ' + said if said else ''})"
        error.args = (error.message,)
        return error

    def _task_body(self, task: Task, response: Response) -> Mapping[str, Any] | None:
        """The task state in a poll or result answer; None for a 404 (expired); else raises.

        The body comes first: a FAILED job is HTTP 422 with its status in the body.
        """
        body = response.json_or_none()
        if (
            isinstance(body, Mapping)
            and isinstance(body.get("status"), str)
            and (response.ok or response.status_code == 422)
        ):
            return body
        if response.status_code == 404:
            return None
        if not response.ok:
            raise self.error_for(response, task=task)
        if body is None:
            self.json_body(response, task)  # raises MalformedResponse naming what came instead
        raise self._malformed("the answer has no status", response, task=task)

    def _expired(self, task: Task, response: Response) -> Task:
        """A 404 for a task we submitted: Segmind keeps requests for one hour only."""
        said = self._clean(self.error_message(response.json_or_none()))
        hours = f"{(self.retention or 3600) / 3600:g}"
        error = f"{self.name} no longer knows this request (results are kept {hours} h)"
        return self.expired(task).evolve(error=f"{error}: {said}" if said else error)

    def _snapshot(self, task: Task, body: Mapping[str, Any]) -> Task:
        raw = str(body["status"])
        status = STATUSES.get(raw.upper(), Status.RUNNING)  # undocumented: still running
        provider_data = dict(task.provider_data)
        for key in ("status_url", "response_url"):
            url = body.get(key)
            if isinstance(url, str) and same_site(url, self.base_url):
                provider_data[key] = url
        error = None
        if status is Status.FAILED:
            error = self._clean(self.error_message(body)) or (
                f"{self.name} reported {raw} with no reason"
            )
        started = task.started_at
        if status is Status.RUNNING and started is None:
            started = utcnow()  # when we first saw a worker on it
        finished = task.finished_at
        if status.is_terminal and finished is None:
            finished = utcnow()  # Segmind reports no times: when we first saw it done
        outputs = tuple(self._outputs(body, task.model)) or task.outputs
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            started_at=started,
            finished_at=finished,
            outputs=outputs if status is Status.SUCCEEDED else (),
            usage=_usage(body, task.usage),
            provider_data=provider_data,
        )

    def _outputs(self, body: Mapping[str, Any], model: str) -> list[Output]:
        """Media from ``images``/``video``/``audio``; else ``output`` (a URL, or the text)."""
        outputs: list[Output] = []
        for key in _MEDIA_KEYS:
            items = body.get(key)
            for item in items if isinstance(items, list) else [items]:
                entry = item if isinstance(item, Mapping) else {"url": item}
                url = entry.get("url")
                if not is_http_url(url):
                    continue  # server text: only http(s) links become outputs
                ctype = entry.get("content_type")
                # `file_name` is server text and is never used (the cache names files by hash).
                outputs.append(
                    self.output(
                        url,
                        content_type=ctype if isinstance(ctype, str) else None,
                        size=entry.get("file_size"),
                        model=model,
                    )
                )
        if outputs:
            return outputs  # `output` repeats the first media URL
        value = body.get("output")
        if isinstance(value, str) and (self.kind_of(model) == "text" or not is_http_url(value)):
            return [Output(kind="text", text=value)]  # an LLM's answer (kept only on success)
        for url in value if isinstance(value, list) else [value]:
            if is_http_url(url):
                outputs.append(self.output(url, model=model))
        return outputs

    def _url_for(self, task: Task, key: str) -> str:
        url = task.provider_data.get(key)
        # Checked again: provider_data comes back from the journal, and base_url may have changed.
        if isinstance(url, str) and same_site(url, self.base_url):
            return url
        path = f"/v2/requests/{quote(task.id, safe='')}"
        return self.url(path + "/status" if key == "status_url" else path)


def _usage(body: Mapping[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """Segmind's ``metrics`` (inference/queue/total time), ``timings`` and reported ``seed``,
    kept under their own names; earlier snapshots' values are kept unless replaced."""
    found: dict[str, Any] = {}
    for key in ("metrics", "timings"):
        value = body.get(key)
        if isinstance(value, Mapping) and value:
            found[key] = dict(value)
    seed = body.get("seed")
    if isinstance(seed, (str, int)) and not isinstance(seed, bool) and str(seed):
        found["seed"] = seed  # the seed the provider used (as text in the docs' example)
    if not found:
        return previous
    return {**(previous or {}), **found}
