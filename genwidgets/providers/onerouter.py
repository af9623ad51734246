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

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import GenError, InvalidParams, ProviderError, ServerError
from .._models import Status, Task
from ._base import Provider
from ._catalogue import Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, MODEL_NOT_FOUND, ErrorRule, model_refused
from ._fields import as_float, as_int, dig, kind_word, parse_time, same_site
from ._wire import Request, Response

__all__ = ["OneRouterProvider", "same_site"]

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
_MODERATION = r"moderat|content[ _-]?policy|safety|sensitive"
_MODERATED = ErrorRule(
    ProviderError,
    "{provider} refused the request by moderation ({status}): {message}",
    codes={400, 403, 422},
)
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes={400, 404, 422}, text=MODEL_NOT_FOUND),
    # OneRouter's 403 means moderation (type content_policy_violation), not a refused key.
    _MODERATED.where(kind=_MODERATION),
    _MODERATED.where(text=_MODERATION),
    ErrorRule(ServerError, "{provider} timed out ({status}): {message}", {408}),
    *DEFAULT_RULES,
)

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


#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=600, max_in_flight=30),
    None,
    "documented (docs.onerouter.pro/features/rate-limits): community accounts get 600 "
    "requests/min and 30 concurrent tasks; the docs count every request",
)


class OneRouterProvider(Provider):
    """Sans-IO adapter for OneRouter's asynchronous media API."""

    name: ClassVar[str] = "onerouter"
    env_var: ClassVar[str | None] = "ONEROUTER_API_KEY"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(SEEDANCE)
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    id_keys: ClassVar[tuple[str, ...]] = ("task_id", "id")
    model_in_body: ClassVar[bool] = True
    time_fields: ClassVar[tuple[str | None, ...]] = ("submit_time", "start_time", "finish_time")

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base checks, plus: ``content`` holds objects (the prompt becomes its text item)."""
        clean = super().validate(model, params)
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

    def auth_headers(self) -> dict[str, str]:
        # The docs show the raw key, not "Bearer <key>" (Bearer is also accepted, per FINDINGS).
        return {"Authorization": self._api_key} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        rest = {k: v for k, v in params.items() if k not in ("prompt", "content", "model")}
        content: list[Any] = [{"type": "text", "text": params["prompt"]}]
        content.extend(params.get("content") or [])
        body = {"model": model, "content": content, **rest}
        return self.request("POST", "/v1/images/generations", json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        response = self._effective(response)
        if not response.ok:
            raise self.error_for(response, model=model)
        data = _data(response.json_or_none())
        created = parse_time(dig(data, "created_at")) or response.received_at
        keep = self._keep(data or {}, {})
        return self.new_task(model, params, response, data, created_at=created, provider_data=keep)

    def build_poll(self, task: Task) -> Request:
        poll_url = task.provider_data.get("poll_url")
        # Checked again: provider_data comes back from the journal, and base_url may have changed.
        if not (isinstance(poll_url, str) and same_site(poll_url, self.base_url, same_port=False)):
            origin = DEFAULT_POLL_BASE if self.base_url == DEFAULT_BASE_URL else self.base_url
            poll_url = f"{origin}/v1/videos/tasks/{quote(task.id, safe='')}"
        return self.request("GET", poll_url)

    def parse_poll(self, task: Task, response: Response) -> Task:
        return super().parse_poll(task, self._effective(response))

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        data = _data(response.json_or_none()) if response.ok else None
        return data if data is not None and isinstance(data.get("status"), str) else None

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        provider_data = self._keep(record, task.provider_data)
        reason = record.get("fail_reason") or record.get("error")
        # Output kinds: URL extension, then our catalogue, then OneRouter's `object` hint.
        hint = kind_word(provider_data.get("object"))
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, reason) if status is Status.FAILED else None,
            **self.times(task, status, record, now),
            outputs=tuple(self.outputs(record.get("outputs") or [], task.model, hint)),
            cost=_cost(record.get("cost"), task.cost),
            provider_data=provider_data,
        )

    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> GenError:
        """From the error table, with a ``code`` other than 200 inside an HTTP 200 as the code."""
        return super().error_for(self._effective(response), task=task, model=model)

    def _effective(self, response: Response) -> Response:
        """The answer with the status its body states: the wrapper's ``code`` wins inside an
        HTTP 200, and an ``error`` object without ``data`` is an error (its code, else 400)."""
        body = response.json_or_none()
        if not response.ok or not isinstance(body, Mapping):
            return response
        code = as_int(body.get("code"))
        if code is None and body.get("error") and body.get("data") is None:
            code = as_int(dig(body, "error.code")) or 400
        return response if code is None else replace(response, status_code=code)

    def _keep(self, record: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
        """What later polls need: the poll URL (on OneRouter's own site only: it gets the key)
        and the `object` kind hint."""
        kept = dict(known)
        url = dig(record, "urls.get")
        if isinstance(url, str) and same_site(url, self.base_url, same_port=False):
            kept["poll_url"] = url
        if kind_word(record.get("object")):
            kept["object"] = record["object"]
        return kept


def _data(body: Any) -> Mapping[str, Any] | None:
    """The ``data`` object of the ``{code, message, data}`` wrapper (or an unwrapped task)."""
    if not isinstance(body, Mapping):
        return None
    data = body.get("data", body if "task_id" in body else None)
    return data if isinstance(data, Mapping) else None


def _cost(value: Any, previous: float | None) -> float | None:
    """``data.cost.total_cost`` (seen in a third-party mock), or a bare number."""
    cost = as_float(value.get("total_cost") if isinstance(value, Mapping) else value)
    return previous if cost is None else cost
