"""Luma's Dream Machine API (v1), the one `lumaai-python` speaks.

Protocol (/work/shared/providers/beyond/luma.md, part A: lumalabs/lumaai-api openapi.yaml and
lumaai-python; UNVERIFIED points are read the defensive way, as said):

- ``POST {base}/dream-machine/v1/generations/video`` (ray models) or ``.../generations/image``
  (photon models) with ``{model, prompt, ...}`` and ``Authorization: Bearer <LUMAAI_API_KEY>``
  answers 201 with the Generation record. (The docs' older examples post video to
  ``.../generations``; the SDK and the spec use ``/generations/video``.) Which path a model
  takes comes from the catalogue, else from its name: ``photon-*`` makes images, the rest video.
- ``GET {base}/dream-machine/v1/generations/{id}`` is the record: ``{id, state, failure_reason,
  created_at, generation_type, model, request, assets}`` with ``state`` one of ``queued``,
  ``dreaming`` (running; no numeric progress), ``completed`` (``assets.video`` or
  ``assets.image``; ``assets.progress_video``, a preview whose timing is UNVERIFIED, is not an
  output) and ``failed`` (``failure_reason``). There is no cancelled or expired state.
- No seed exists in the API (the SDK's types have none): a ``seed`` stays in the task's
  parameters (so each seed is its own request to the journal) but is not sent, since what Luma
  does with an unknown field is UNVERIFIED. Results are not reproducible by seed.
- ``DELETE .../generations/{id}`` (204) deletes a generation; whether it stops one still
  dreaming is UNVERIFIED, so it is offered as `delete`, never as cancel (`can_cancel` False).
  ``GET .../generations?limit=&offset=`` lists them (``generations``).
- Asset URL lifetime and generation retention are UNVERIFIED: outputs are downloaded at once,
  a dead URL is asked for again with a fresh GET, and a 404 for a task we submitted is expired.
- Errors are ``{"detail": "..."}`` for every code (the spec enumerates none). 401 bad key, 402
  no credits (both documented for the newer Agents API only); a 400/403 that speaks of credits
  is read as a billing refusal too; 429 is rate limited.
- Credits: ``GET .../credits`` answers ``{"credit_balance"}`` (USD cents), an account balance,
  not a per-generation cost; recording it would cost a request per task and has no place in a
  `Task`, so it is not read (the sandbox serves it). No push is followed (``callback_url`` needs
  a public endpoint), and there is no server-side deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._models import Output, OutputKind, Status, Task
from ._base import Provider
from ._catalogue import SUBMITS, Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, MODEL_NOT_FOUND, QUOTA, ErrorRule, model_refused
from ._fields import dig, is_http_url, text
from ._wire import Request, Response

__all__ = ["LumaProvider"]

STATUSES: Mapping[str, Status] = {
    "queued": Status.QUEUED,
    "dreaming": Status.RUNNING,
    "processing": Status.RUNNING,  # the Agents API's word, should v1 adopt it
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
}
_MONEY = r"credit|balance|insufficient|billing|payment"
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes={400, 404, 422}, text=MODEL_NOT_FOUND),
    QUOTA.where(codes={400, 403}, text=_MONEY),
    *DEFAULT_RULES,
)
_ROOT = "/dream-machine/v1/generations"
_ASSETS: tuple[OutputKind, ...] = ("video", "image")

LIMITS = ProviderLimits(
    Limits(requests_per_minute=20, max_in_flight=5),
    SUBMITS,
    "invented: the Dream Machine API documents no limit; Luma's newer Agents API limits "
    "generation POSTs per minute and concurrent jobs (429 + Retry-After), so submits count and "
    "20/min with 5 in flight is a cautious guess",
)
_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")


def _video(name: str, about: str) -> ModelInfo:
    return ModelInfo(name, "video", about, params={
        "aspect_ratio": Param(str, "frame shape", choices=_RATIOS, implied="16:9"),
        "duration": Param(str, "clip length", choices=("5s", "9s")),
        "resolution": Param(str, "frame size", choices=("540p", "720p", "1080p", "4k")),
        "loop": Param(bool, "make the clip loop"),
        "keyframes": Param(dict, "frame0/frame1: {type: image, url} or {type: generation, id}"),
    })  # fmt: skip


def _image(name: str, about: str) -> ModelInfo:
    return ModelInfo(name, "image", about, params={
        "aspect_ratio": Param(str, "frame shape", choices=_RATIOS, implied="16:9"),
        "format": Param(str, "file format", choices=("jpg", "png")),
        "image_ref": Param(list, "[{url, weight}] image references"),
        "style_ref": Param(list, "[{url, weight}] style references"),
    })  # fmt: skip


MODELS = catalogue(
    _video("ray-2", "Ray 2 text/image to video"),
    _video("ray-flash-2", "Ray 2 Flash, faster and cheaper"),
    _video("ray-1-6", "Ray 1.6"),
    _image("photon-1", "Photon text to image"),
    _image("photon-flash-1", "Photon Flash text to image"),
)


class LumaProvider(Provider):
    """Sans-IO adapter for the Dream Machine API (create, get, list, delete; no cancel: its only
    stop is DELETE, which deletes)."""

    name: ClassVar[str] = "luma"
    env_var: ClassVar[str | None] = "LUMAAI_API_KEY"
    default_base_url: ClassVar[str] = "https://api.lumalabs.ai"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    about: ClassVar[str] = "Dream Machine v1: queued, dreaming, completed; DELETE deletes"
    models: ClassVar[Mapping[str, ModelInfo]] = MODELS
    model_in_body: ClassVar[bool] = True
    can_list: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True
    # Videos take minutes, images seconds; Luma's own docs poll their newer API every 2 s.
    poll_interval: ClassVar[tuple[float, float]] = (3.0, 10.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    time_fields: ClassVar[tuple[str | None, str | None, str | None]] = ("created_at", None, None)
    stamp_start: ClassVar[bool] = True  # Luma reports only created_at
    list_path: ClassVar[str] = _ROOT
    list_filters: ClassVar[tuple[str, ...] | None] = ("limit", "offset")
    list_key: ClassVar[str] = "generations"
    expired_text: ClassVar[str | None] = "{name} no longer knows this generation (deleted?)"

    def kind_of(self, model: str) -> OutputKind | None:
        return super().kind_of(model) or ("image" if model.startswith("photon") else "video")

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body = {"model": model, **{k: v for k, v in params.items() if k != "seed"}}
        path = f"{_ROOT}/{self.kind_of(model)}"
        return self.request("POST", path, headers={"Content-Type": "application/json"}, json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        body = response.json_or_none()
        task = self.new_task(model, params, response, body if isinstance(body, Mapping) else None)
        record = self.state_in(response, task)
        return self.snapshot(task, record, response.received_at) if record else task

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._path(task))

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        body = response.json_or_none()
        ok = response.ok and isinstance(body, Mapping) and isinstance(body.get("state"), str)
        return body if ok else None

    def listed(self, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        asked = record.get("request")
        params = dict(asked) if isinstance(asked, Mapping) else {}
        return text(record.get("model")) or "unknown", params

    def build_delete(self, task: Task) -> Request:
        return self.request("DELETE", self._path(task), headers={"Accept": "*/*"})

    def parse_delete(self, task: Task, response: Response) -> None:
        """Done on 2xx, and on 404 too: a generation already gone is what was asked."""
        if not response.ok and response.status_code != 404:
            raise self.error_for(response, task=task)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["state"])
        status = self.status_of(raw)
        failed = status is Status.FAILED
        outputs = self._outputs(record) if status is Status.SUCCEEDED else ()
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, record.get("failure_reason")) if failed else None,
            outputs=outputs,
            **self.times(task, status, record, now),
        )

    def _outputs(self, record: Mapping[str, Any]) -> tuple[Output, ...]:
        """``assets.video`` / ``assets.image`` (``progress_video`` is a preview, not a result)."""
        assets = (dig(record, f"assets.{kind}") for kind in _ASSETS)
        pairs = zip(_ASSETS, assets, strict=True)
        return tuple(self.output(url, kind=kind) for kind, url in pairs if is_http_url(url))

    def _path(self, task: Task) -> str:
        return f"{_ROOT}/{quote(task.id, safe='')}"
