"""OneRouter (also published as Infron AI): submit on one host, poll on another.

Protocol (seed 000, FINDINGS.md section 1):

- ``POST {base}/v1/images/generations`` with ``{model, content: [{type: "text", text}], ...}``;
  every other parameter (resolution, ratio, duration, generate_audio, watermark, tools, seed) sits
  at the top level of the body. The seed uses this endpoint even for video models.
- Every body is wrapped in ``{code, message, data}``. A ``code`` other than 200 inside an HTTP 200
  is an error and is mapped as if it were the HTTP status.
- The submit answer names its poll URL in ``data.urls.get`` (on ``video.onerouter.pro`` while
  submits go to ``image.onerouter.pro``). It is followed only when it stays on OneRouter's own
  site (`same_site`), since the key is sent with every poll.
- The docs show the raw key in the header (``Authorization: <key>``), so that form is sent.
- No cancel, list or webhook endpoint, and no documented retention or ``Retry-After``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
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
    ModelInfo,
    Param,
    Provider,
    Request,
    Response,
    guess_kind,
    parse_time,
    retry_after,
    same_site,
)

__all__ = ["OneRouterProvider"]

DEFAULT_BASE_URL = "https://image.onerouter.pro"
#: Where the docs poll when the submit answer names no usable URL (default base only).
DEFAULT_POLL_BASE = "https://video.onerouter.pro"

#: The provider's statuses (documented, plus the two spellings third-party clients tolerate).
STATUSES: Mapping[str, Status] = {
    "created": Status.QUEUED,
    "in_progress": Status.RUNNING,
    "processing": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "error": Status.FAILED,
}

_KINDS: frozenset[str] = frozenset({"image", "video", "audio", "text"})
_MODERATION = re.compile(r"moderat|content[ _-]?policy|safety|sensitive", re.IGNORECASE)
_UNKNOWN_MODEL = re.compile(
    r"\bmodel\b[^.\n]{0,80}?\b(not found|not exist|does not exist|doesn't exist|"
    r"is not supported)\b|\b(unknown|invalid|unsupported|no such) model\b|no available channel",
    re.IGNORECASE,
)
_MAX_TEXT = MAX_SERVER_TEXT

SEEDANCE = ModelInfo(
    "bytedance/seedance",
    "video",
    "ByteDance Seedance text-to-video (the docs' example model)",
    params={
        "resolution": Param(str, "output resolution, e.g. 720p", pattern=r"\d{3,4}p"),
        "ratio": Param(str, "aspect ratio (16:9...) or adaptive", pattern=r"adaptive|\d+:\d+"),
        "duration": Param(int, "length in seconds", minimum=1),
        "generate_audio": Param(bool, "also generate a soundtrack"),
        "watermark": Param(bool, "add the provider's watermark"),
        "tools": Param(list, "tools the model may use, e.g. [{'type': 'web_search'}]"),
    },
)


class OneRouterProvider(Provider):
    """Sans-IO adapter for OneRouter's asynchronous media API."""

    name: ClassVar[str] = "onerouter"
    env_var: ClassVar[str | None] = "ONEROUTER_API_KEY"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    models: ClassVar[Mapping[str, ModelInfo]] = {SEEDANCE.name: SEEDANCE}
    open_catalogue: ClassVar[bool] = True
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)

    # ------------------------------------------------------------------------------- validation
    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, plus the two names the body reserves for itself."""
        clean = super().validate(model, params)
        if "model" in clean:
            raise InvalidParams(
                "'model' is not a parameter: name the model as onerouter:<model>",
                provider=self.name,
                model=model,
            )
        content = clean.get("content")
        if content is not None and not (
            isinstance(content, list) and all(isinstance(item, Mapping) for item in content)
        ):
            raise InvalidParams(
                "Parameter 'content' must be a list of objects such as "
                "{'type': 'image_url', 'image_url': {...}}; the prompt is added as the text item",
                provider=self.name,
                model=model,
            )
        return clean

    # ------------------------------------------------------------------------------- protocol
    def auth_headers(self) -> dict[str, str]:
        # The docs show the raw key, not "Bearer <key>" (Bearer is also accepted, per FINDINGS).
        return {"Authorization": self._api_key} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        rest = {k: v for k, v in params.items() if k not in ("prompt", "content", "model")}
        content: list[Any] = [{"type": "text", "text": params["prompt"]}]
        content.extend(params.get("content") or [])
        return Request(
            "POST",
            self.url("/v1/images/generations"),
            headers=self.auth_headers(),
            json={"model": model, "content": content, **rest},
        )

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        code, body = self._unwrap(response)
        if code != 200:
            message = self.error_message(body) or ""
            if code in (400, 404, 422) and _UNKNOWN_MODEL.search(message):
                error = self.unknown_model(model)
                error.message = f"{error.message} ({self.name} said: {self._clean(message)})"
                error.args = (error.message,)
                raise error
            raise self._error(code, body, response, model=model)
        data = self._data(body, response, model=model)
        task_id = data.get("task_id") or data.get("id")
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or not str(task_id):
            raise self._malformed("the submit answer has no data.task_id", response, model=model)
        provider_data: dict[str, Any] = {}
        poll_url = _poll_url(data)
        if poll_url and same_site(poll_url, self.base_url, same_port=False):
            provider_data["poll_url"] = poll_url
        hint = data.get("object")
        if isinstance(hint, str) and hint in _KINDS:
            provider_data["object"] = hint
        raw = data.get("status")
        status = STATUSES.get(raw.lower(), Status.RUNNING) if isinstance(raw, str) else None
        return Task(
            id=str(task_id),
            provider=self.name,
            model=model,
            status=status or Status.QUEUED,
            provider_status=raw if isinstance(raw, str) else None,
            created_at=parse_time(data.get("submit_time"))
            or parse_time(data.get("created_at"))
            or utcnow(),
            params=dict(params),
            provider_data=provider_data,
        )

    def build_poll(self, task: Task) -> Request:
        poll_url = task.provider_data.get("poll_url")
        # Checked again: provider_data comes back from the journal, and base_url may have changed.
        if not (isinstance(poll_url, str) and same_site(poll_url, self.base_url, same_port=False)):
            origin = DEFAULT_POLL_BASE if self.base_url == DEFAULT_BASE_URL else self.base_url
            poll_url = f"{origin}/v1/videos/tasks/{quote(task.id, safe='')}"
        return Request("GET", poll_url, headers=self.auth_headers())

    def parse_poll(self, task: Task, response: Response) -> Task:
        code, body = self._unwrap(response)
        if code == 404:
            return self.expired(task, response)
        if code != 200:
            raise self._error(code, body, response, task=task)
        data = self._data(body, response, task=task)
        raw = data.get("status")
        if not isinstance(raw, str):
            raise self._malformed("the task has no data.status", response, task=task)
        status = STATUSES.get(raw.lower(), Status.RUNNING)  # undocumented: still running

        provider_data = dict(task.provider_data)
        poll_url = _poll_url(data)
        if poll_url and same_site(poll_url, self.base_url, same_port=False):
            provider_data["poll_url"] = poll_url
        hint = data.get("object")
        if not (isinstance(hint, str) and hint in _KINDS):
            hint = provider_data.get("object")
        kind = cast("OutputKind", hint) if hint in _KINDS else None

        finished = parse_time(data.get("finish_time"))
        if status.is_terminal and finished is None:
            finished = task.finished_at or utcnow()  # when we first saw it done
        error = None
        if status is Status.FAILED:
            reason = data.get("fail_reason") or data.get("error")
            error = self._clean(reason) or f"{self.name} reported status {raw!r} with no reason"
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            created_at=parse_time(data.get("submit_time")) or task.created_at,
            started_at=parse_time(data.get("start_time")) or task.started_at,
            finished_at=finished,
            outputs=tuple(self._outputs(data.get("outputs"), task.model, kind)),
            cost=_cost(data.get("cost"), task.cost),
            provider_data=provider_data,
        )

    # ------------------------------------------------------------------------------- errors
    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """Map an error answer, including a ``code`` other than 200 inside an HTTP 200."""
        code, body = self._unwrap(response)
        if code == 200:  # not an error after all; keep the contract of returning one
            code = response.status_code
        return self._error(code, body, response, task=task, model=model)

    def _error(
        self,
        code: int,
        body: Any,
        response: Response,
        *,
        task: Task | None = None,
        model: str | None = None,
    ) -> ProviderError:
        message = self._clean(self.error_message(body)) or _reason(code)
        kw: dict[str, Any] = {
            "status_code": code,
            "provider": self.name,
            "model": task.model if task else model,
            "task_id": task.id if task else None,
        }
        err = body.get("error") if isinstance(body, Mapping) else None
        kind = str(err.get("type") or "") if isinstance(err, Mapping) else ""
        if code in (400, 403, 422) and _MODERATION.search(f"{kind} {message}"):
            # OneRouter's 403 means moderation, not a refused key.
            return ProviderError(
                f"{self.name} refused the request by moderation (HTTP {code}): {message}", **kw
            )
        if code == 408:
            return ServerError(f"{self.name} timed out (HTTP 408): {message}", **kw)
        if code in (401, 403):
            return AuthError(f"{self.name} refused the key (HTTP {code}): {message}", **kw)
        if code == 402:
            return QuotaError(f"{self.name} refused for credits (HTTP 402): {message}", **kw)
        if code == 429:  # no Retry-After is documented; honour one if it comes
            return RateLimited(
                f"Rate limited by {self.name}: {message}", retry_after=retry_after(response), **kw
            )
        if 500 <= code <= 599:
            return ServerError(f"{self.name} server error (HTTP {code}): {message}", **kw)
        if 400 <= code <= 499:
            return ProviderError(f"{self.name} error (HTTP {code}): {message}", **kw)
        return ProviderError(f"{self.name} error (code {code}): {message}", **kw)

    def error_message(self, body: Any) -> str | None:
        """``error.message``, else the wrapper's ``message`` unless it is the word "success"."""
        message = super().error_message(body)
        return None if message is not None and message.lower() == "success" else message

    # ------------------------------------------------------------------------------- helpers
    def _unwrap(self, response: Response) -> tuple[int, Any]:
        """The effective status code (the body's ``code`` wins inside an HTTP 200) and body."""
        body = response.json_or_none()
        code = response.status_code
        if response.ok and isinstance(body, Mapping):
            inner = _as_int(body.get("code"))
            err = body.get("error")
            if inner is not None:
                code = inner
            elif err and body.get("data") is None:
                code = (_as_int(err.get("code")) if isinstance(err, Mapping) else None) or 400
        return code, body

    def _data(
        self, body: Any, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> Mapping[str, Any]:
        if body is None:
            self.json_body(response, task)  # raises MalformedResponse naming what came instead
        if isinstance(body, Mapping):
            data = body.get("data", body if "task_id" in body else None)
            if isinstance(data, Mapping):
                return data
        raise self._malformed("the body has no data object", response, task=task, model=model)

    def _outputs(self, urls: Any, model: str, kind: OutputKind | None) -> list[Any]:
        outputs = []
        for item in urls if isinstance(urls, list) else []:
            url = item.get("url") if isinstance(item, Mapping) else item
            if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
                continue  # server text: only http(s) links become outputs
            # Order: URL extension, then our catalogue, then OneRouter's `object` hint.
            guessed = guess_kind(url) or self.kind_of(model) or kind
            outputs.append(self.output(url, kind=guessed, model=model))
        return outputs


def _poll_url(data: Mapping[str, Any]) -> str | None:
    urls = data.get("urls")
    url = urls.get("get") if isinstance(urls, Mapping) else None
    return url if isinstance(url, str) else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _cost(value: Any, previous: float | None) -> float | None:
    """``data.cost.total_cost`` (seen in a third-party mock), or a bare number."""
    if isinstance(value, Mapping):
        value = value.get("total_cost")
    if isinstance(value, bool):
        return previous
    try:
        return float(value) if value is not None and value != "" else previous
    except (TypeError, ValueError):
        return previous


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"code {code}"
