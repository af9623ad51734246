"""Replicate's Predictions API.

Protocol (reference digest ``shared/providers/beyond/replicate.md``; Replicate's docs on the
prediction lifecycle, creating a prediction, rate limits and data retention):

- ``replicate:owner/name`` runs an official model: ``POST {base}/v1/models/{owner}/{name}/
  predictions`` with ``{"input": {...}}``. ``replicate:owner/name:version`` (or a bare 64-hex
  version id) runs a version: ``POST {base}/v1/predictions`` with ``{"version", "input"}``. Every
  parameter (the seed too) goes inside ``input``. ``Authorization: Bearer <REPLICATE_API_TOKEN>``.
- The answer, every ``GET urls.get`` (``/v1/predictions/{id}``) and ``POST urls.cancel``
  (``/v1/predictions/{id}/cancel``) is the Prediction: ``{id, status, input, output, error,
  logs, metrics: {predict_time, total_time}, created_at, started_at, completed_at, data_removed,
  urls: {get, cancel, web}}``. The URLs are followed only on Replicate's own site (`same_site`):
  every poll carries the key.
- Statuses: ``starting`` (queued or booting), ``processing``, ``succeeded``, ``failed`` (reason in
  ``error``), ``canceled`` (by us, or a ``Cancel-After`` deadline reached while running) and
  ``aborted`` (the deadline was reached before it started; not billed). Both official Python SDKs
  leave ``aborted`` out and spin forever; here it is terminal.
- ``output`` is whatever the model returns: a URL (video), a list of URLs (images), a list of
  tokens or a string (language models), or an object. URLs anywhere in it become outputs;
  otherwise the text (tokens joined, an object as JSON) becomes one text output, never a download.
  A ``data:`` URI (the SDK's ``FileOutput`` accepts them) is neither downloaded nor taken as text.
- The task's deadline goes with the create as ``Cancel-After`` (`deadline_header`), so Replicate
  stops the prediction itself even when nobody is left to cancel it.
- ``Prefer: wait=N`` holds the create up to N s and answers with the prediction as it is then:
  possibly ``succeeded``, but also ``processing`` with every file already in ``output``, or
  ``starting`` with nothing. Neither is done: both are polled on until a terminal status.
- API predictions' inputs, outputs and logs are removed after an hour: the prediction still
  exists, with ``output: null`` and ``data_removed: true``. A ``succeeded`` one in that state has
  nothing left to fetch: expired.
- Errors are RFC 7807 problem details ``{title, detail, status}``: 401 ``Unauthenticated``, 402
  out of credit, 422 ``Invalid version or not permitted`` or invalid input, 429 ``Request was
  throttled``. A model's own failure is a 2xx create and a ``failed`` prediction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import InvalidParams
from .._models import Output, Status, Task
from ._base import Provider
from ._catalogue import SUBMITS, Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, ErrorRule, model_refused
from ._fields import dig, is_http_url, same_site, text
from ._wire import Request, Response

__all__ = ["ReplicateProvider"]

STATUSES: Mapping[str, Status] = {
    "starting": Status.QUEUED,
    "processing": Status.RUNNING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELLED,
    "cancelled": Status.CANCELLED,  # not Replicate's spelling; tolerated
    # Its deadline passed before it ran: nothing was made, nothing will be (the digest's table
    # files it under "expired"). Terminal, unlike in both official SDKs.
    "aborted": Status.EXPIRED,
}
_BAD_INPUT = "{provider} refused the input ({status}): {message}"
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes={404}),  # /v1/models/{owner}/{name}/predictions of no such model
    model_refused(codes={422}, kind="version|model"),  # "Invalid version or not permitted"
    ErrorRule(InvalidParams, _BAD_INPUT, {400, 422}, submit=True),
    *DEFAULT_RULES,
)
#: owner/name[:version] (slugs), or a bare version id; each becomes a URL path segment
_SLUG = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_MODEL = re.compile(rf"({_SLUG})/({_SLUG})(?::([A-Za-z0-9]{{1,128}}))?")
_VERSION = re.compile(r"[0-9a-f]{64}")
#: Two documented buckets: creates spend from the 600, polls and the rest from the 3,000.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=600, max_in_flight=None, other_requests_per_minute=3000),
    SUBMITS,
    "documented (replicate.com/docs/topics/predictions/rate-limits): 600 creates/min and 3,000 "
    "other requests/min, short bursts allowed; creates count against the first, every other "
    "request against the second (GENWIDGETS_REPLICATE_RPM sets the first). No concurrency cap is "
    "documented",
)
#: Seconds a create of a short job (an image or a text in our catalogue) waits for its result.
#: Well under the client's 30-s read timeout, so a held create never turns into SubmitUncertain;
#: short, since a held create keeps one of the client's connections to Replicate busy.
SYNC_WAIT = 5

FLUX_SCHNELL = ModelInfo(
    "black-forest-labs/flux-schnell",
    "image",
    "FLUX.1 [schnell] text-to-image (official model; output: a list of image URLs)",
    params={
        "aspect_ratio": Param(str, "frame shape, e.g. 1:1 or 16:9", pattern=r"\d{1,2}:\d{1,2}"),
        "num_outputs": Param(int, "images to generate", minimum=1, maximum=4),
        "num_inference_steps": Param(int, "denoising steps", minimum=1, maximum=4),
        "output_format": Param(str, "image file format", choices=("webp", "jpg", "png")),
        "go_fast": Param(bool, "faster fp8 inference"),
    },
)
SEEDANCE = ModelInfo(
    "bytedance/seedance-1-pro",
    "video",
    "Seedance 1 Pro text-to-video (official model; output: one video URL)",
    params={
        "duration": Param(int, "length in seconds", minimum=1, maximum=12),
        "resolution": Param(str, "output resolution", choices=("480p", "720p", "1080p")),
        "aspect_ratio": Param(str, "frame shape, e.g. 16:9", pattern=r"\d{1,2}:\d{1,2}"),
    },
)
SPEECH = ModelInfo(
    "minimax/speech-02-turbo",
    "audio",
    "MiniMax Speech-02 Turbo text-to-speech (official model; output: one audio URL)",
    params={"voice_id": Param(str, "the voice, e.g. Wise_Woman")},
)
LLAMA = ModelInfo(
    "meta/meta-llama-3-8b-instruct",
    "text",
    "Llama 3 8B Instruct (official model; output: a list of text tokens)",
    params={"max_tokens": Param(int, "longest answer, in tokens", minimum=1)},
)


class ReplicateProvider(Provider):
    """Sans-IO adapter for Replicate predictions (create, get, cancel).

    Where the digest marks a fact UNVERIFIED, the defensive reading is taken:

    - create answers 201 (async) or 200/201 (``Prefer: wait``): any 2xx is accepted;
    - ``Cancel-After`` grammar: only the documented form (``1m``) is sent, in whole minutes
      rounded up, so the server never stops a prediction before the client's own deadline (which
      still cancels explicitly at the second);
    - cancelling a finished prediction: whatever comes back is read as a poll (a prediction is
      taken as it is, an error is raised);
    - 429: ``Retry-After`` honoured when sent, and backoff when not;
    - the two documented buckets (600 creates/min, 3,000 other requests/min) are the budget's
      two buckets (`Limits.other_requests_per_minute`);
    - a 404 for a prediction we created (it should exist after its data is removed) is read as
      expired, like any provider's 404 for a known task;
    - a ``failed`` or ``canceled`` prediction whose data was removed keeps its status (it had
      nothing to fetch); only a ``succeeded`` one becomes expired;
    - a 422 that does not speak of the version is a refused input (``InvalidParams``), a 404 to a
      create an unknown model; 402 is a credit refusal whatever its text;
    - output files (``replicate.delivery``) are fetched without the key: it never leaves
      Replicate's API site, and the digest cannot say the files need it;
    - the 30-minute platform limit ends in a status the table reads like any other (an unknown
      word keeps the task polled until the client's own deadline).
    """

    name: ClassVar[str] = "replicate"
    env_var: ClassVar[str | None] = "REPLICATE_API_TOKEN"
    default_base_url: ClassVar[str] = "https://api.replicate.com"
    about: ClassVar[str] = "predictions; short jobs answered at create; deadlines as Cancel-After"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(FLUX_SCHNELL, SEEDANCE, SPEECH, LLAMA)
    can_cancel: ClassVar[bool] = True
    deadline_header: ClassVar[str | None] = "Cancel-After: {minutes}m"  # the documented form
    poll_interval: ClassVar[tuple[float, float]] = (1.0, 8.0)  # the SDKs poll every 0.5 s
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    error_kind: ClassVar[str] = "title"
    time_fields: ClassVar[tuple[str | None, ...]] = ("created_at", "started_at", "completed_at")

    def check_model(self, model: str) -> None:
        """``owner/name``, ``owner/name:version`` or a version id: URL-safe slugs only."""
        super().check_model(model)
        if not (_MODEL.fullmatch(model) or _VERSION.fullmatch(model)) or ".." in model:
            raise self.unknown_model(model)

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        headers = {"Content-Type": "application/json"}
        if self.kind_of(model) in ("image", "text"):
            headers["Prefer"] = f"wait={SYNC_WAIT}"
        found = _MODEL.fullmatch(model)
        if found and not found[3]:
            path = f"/v1/models/{quote(found[1], safe='')}/{quote(found[2], safe='')}/predictions"
            return self.request("POST", path, headers=headers, json={"input": dict(params)})
        version = found[3] if found else model
        body = {"version": version, "input": dict(params)}
        return self.request("POST", "/v1/predictions", headers=headers, json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        body = response.json_or_none()
        return self.new_task(model, params, response, body if isinstance(body, Mapping) else None)

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._url(task, "get"))

    def build_cancel(self, task: Task) -> Request:
        return self.request("POST", self._url(task, "cancel"))

    parse_cancel = Provider.parse_poll  # the answer is the prediction, as for a poll

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["status"])
        status = self.status_of(raw)
        outputs = self._outputs(record.get("output"), task.model)
        error = self.failure(raw, record.get("error")) if status is Status.FAILED else None
        if raw.strip().lower() == "aborted":
            error = f"{self.name} aborted it: its deadline (Cancel-After) passed before it started"
        elif status is Status.SUCCEEDED and not outputs and record.get("data_removed") is True:
            status, error = Status.EXPIRED, f"{self.name} removed its output (kept 1 h)"
        logs = _logs(record.get("logs")) or task.logs
        return task.evolve(
            status=status,
            provider_status=raw,
            error=error,
            **self.times(task, status, record, now),
            outputs=tuple(outputs) if status is Status.SUCCEEDED else (),
            logs=logs,
            progress=1.0 if status is Status.SUCCEEDED else _progress(logs, task.progress),
            usage=_usage(record.get("metrics"), task.usage),
            provider_data=self._keep(record, task.provider_data),
        )

    def _outputs(self, value: Any, model: str) -> list[Output]:
        """Every http(s) URL in `value`; else its text (tokens joined, objects as JSON)."""
        urls = [] if self.kind_of(model) == "text" else list(_urls(value, 3))
        if urls:
            return [self.output(url, model=model) for url in urls]
        strings = isinstance(value, list) and all(isinstance(item, str) for item in value)
        said = "".join(value) if strings else value if isinstance(value, str) else json.dumps(value)
        empty = value is None or value == {} or not said.strip() or said.startswith("data:")
        return [] if empty else [Output(kind="text", text=said)]

    def _keep(self, record: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
        """``urls.get`` and ``urls.cancel``, on Replicate's own site only (they get the key)."""
        kept = dict(known)
        for key in ("get", "cancel"):
            url = dig(record, f"urls.{key}")
            if isinstance(url, str) and same_site(url, self.base_url):
                kept[key] = url
        return kept

    def _url(self, task: Task, key: str) -> str:
        url = task.provider_data.get(key)
        # Checked again: provider_data comes back from the journal, and base_url may have changed.
        if isinstance(url, str) and same_site(url, self.base_url):
            return url
        path = f"/v1/predictions/{quote(task.id, safe='')}"
        return self.url(path + "/cancel" if key == "cancel" else path)


def _urls(value: Any, depth: int) -> Iterator[str]:
    """The http(s) URLs in a model's output: itself, its items, its values (a few levels)."""
    if is_http_url(value):
        yield value
    elif depth > 0 and isinstance(value, (list, Mapping)):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _urls(item, depth - 1)


def _logs(value: Any) -> tuple[str, ...]:
    """The last 50 non-blank lines of ``logs`` (one string), each clipped."""
    lines = (line.strip()[:2000] for line in (value or "").splitlines()) if text(value) else ()
    return tuple(line for line in lines if line)[-50:]


def _progress(logs: tuple[str, ...], previous: float | None) -> float | None:
    """The last tqdm percentage ("42%|███ | 21/50") in the logs, as 0..1 (no progress field)."""
    found = [int(m) for line in logs for m in re.findall(r"(\d{1,3})%\|", line) if int(m) <= 100]
    return found[-1] / 100 if found else previous


def _usage(metrics: Any, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """``metrics`` (``predict_time``: seconds of GPU/CPU billed; ``total_time``), numbers only."""
    items = metrics.items() if isinstance(metrics, Mapping) else ()
    found = {k: v for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**(previous or {}), **found} if found else previous
