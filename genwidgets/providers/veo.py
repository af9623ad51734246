"""Google's Veo through the Gemini API: long-running operations and an authenticated download.

Protocol (digest ``shared/providers/beyond/veo.md``: googleapis/python-genai@6680718
``models.py``/``operations.py``/``files.py``, the cookbook's ``Get_started_Veo_REST``, the docs'
video page):

- ``POST {base}/v1beta/models/{model}:predictLongRunning`` with ``{"instances": [{prompt, image,
  lastFrame, referenceImages, video}], "parameters": {durationSeconds, aspectRatio, resolution,
  negativePrompt, personGeneration, sampleCount, enhancePrompt, seed}}`` answers the operation
  ``{"name": "models/{model}/operations/{id}"}``; the name, kept verbatim, is the task id and the
  poll path. The key goes in ``x-goog-api-key`` (never ``?key=``: URLs end up in logs).
- ``GET {base}/v1beta/{name}``: there is no status word. ``done`` absent or false is running
  (queued and running cannot be told apart, so no start time is invented); ``done`` with
  ``error`` (a google.rpc.Status) failed; ``done`` with
  ``response.generateVideoResponse.generatedSamples[].video.uri`` succeeded; ``done`` with no
  sample is the RAI safety filter (``raiMediaFilteredCount``/``raiMediaFilteredReasons``) and a
  failure with those reasons. SDK-shaped proxies (``generatedVideos``/``generated_videos``) are
  read too. A sample with inline bytes only (``encodedVideo``) is not downloadable here: without
  any URI the task fails saying so.
- Each ``video.uri`` (``.../v1beta/files/{id}:download?alt=media``) is a second, authenticated
  GET that redirects: the adapter sets `authenticated_downloads`, so the key goes to the base
  origin only and the redirect's target (storage) gets none. Generated videos are removed after
  2 days (`retention`); a removed file or operation answers 404 (UNVERIFIED, "likely 404"): the
  download's 404 is an expired URL, a poll's 404 an expired task.
- A bad key is HTTP **400** ``INVALID_ARGUMENT`` (reason ``API_KEY_INVALID``, message "API key not
  valid"): an `AuthError`, not bad parameters; a missing one 403 ``PERMISSION_DENIED``. 404 to a
  submit is an unknown model, other 400s bad parameters, ``FAILED_PRECONDITION`` billing (how
  Veo reports no credit is UNVERIFIED: 400 FAILED_PRECONDITION or 429), 429
  ``RESOURCE_EXHAUSTED`` (``Retry-After`` UNVERIFIED: honoured when present).
- UNVERIFIED and read defensively: whether REST takes ``parameters.seed`` (the docs say Veo 3
  does, the SDK refuses it): sent when given, and a refusal surfaces as `InvalidParams`; the
  submit's HTTP code (any 2xx with a ``name`` is accepted); an operation's lifetime.
- No cancel (the SDK has only ``operations.get``), no deadline, no list; no push we can receive
  (webhooks are a preview and need a public URL). Video only: Imagen is a synchronous ``:predict``
  call, not an operation, so ``veo:`` serves no images. No cost field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._exceptions import AuthError, InvalidParams, MalformedResponse, QuotaError
from .._limits import SUBMITS, Limits, ProviderLimits
from .._models import Status, Task
from ._base import Provider
from ._catalogue import ModelInfo, Param, catalogue
from ._errors import AUTH, DEFAULT_RULES, ErrorRule, error_context, model_refused
from ._fields import dig, is_http_url, text
from ._wire import Request, Response

__all__ = ["VeoProvider"]

#: The fields of ``instances[0]``; every other parameter goes to ``parameters``.
INSTANCE_FIELDS = ("prompt", "image", "lastFrame", "referenceImages", "video")
#: An operation's name, as the poll path takes it (server text: checked before it is followed).
OPERATION = re.compile(r"models/[\w.-]+/operations/[\w.-]+")
#: Veo has no status word: these are genwidgets' names for what an operation shows (not done;
#: done with a video; done without one), kept as the task's provider_status.
STATUSES: Mapping[str, Status] = {
    "running": Status.RUNNING,
    "done": Status.SUCCEEDED,
    "failed": Status.FAILED,
}
_SAMPLES = (
    "response.generateVideoResponse.generatedSamples",
    "response.generatedVideos",
    "response.generated_videos",
)
ERRORS: tuple[ErrorRule, ...] = (
    AUTH.where(codes={400, 401, 403}, text=r"\bapi[ _]?key\b"),  # 400 API_KEY_INVALID
    ErrorRule(AuthError, "{provider} refused the call ({status}): {message}", {403}),
    ErrorRule(QuotaError, "{provider} refused for billing ({status}): {message}",
              kind="failed_precondition"),
    model_refused(codes={404}),
    ErrorRule(InvalidParams, "{provider} refused the parameters ({status}): {message}", {400},
              submit=True),
    *DEFAULT_RULES,
)

_IMAGE = "an image {bytesBase64Encoded, mimeType}"


def _veo(name: str, description: str, durations: tuple[int, ...]) -> ModelInfo:
    return ModelInfo(name, "video", description, params={
        "durationSeconds": Param(int, "length in seconds", choices=durations),
        "aspectRatio": Param(str, "frame shape", choices=("16:9", "9:16"), implied="16:9"),
        "resolution": Param(str, "720p, or 1080p (8 s only)", choices=("720p", "1080p"),
                            implied="720p"),
        "negativePrompt": Param(str, "what to keep out of the video"),
        "personGeneration": Param(str, "people allowed", choices=("allow_all", "allow_adult",
                                                                  "dont_allow")),
        "sampleCount": Param(int, "videos per request", minimum=1, maximum=4),
        "enhancePrompt": Param(bool, "let the model rewrite the prompt"),
        "image": Param(dict, f"first frame: {_IMAGE}"),
        "lastFrame": Param(dict, f"last frame: {_IMAGE}"),
        "referenceImages": Param(list, "up to 3 {image, referenceType: asset} (Veo 3.1)"),
        "video": Param(dict, "a video to extend: {uri} of an earlier Veo output"),
    })


VEO_31 = _veo("veo-3.1-generate-preview", "Veo 3.1 with sound", (4, 6, 8))
VEO_31_FAST = _veo("veo-3.1-fast-generate-preview", "Veo 3.1 Fast with sound", (4, 6, 8))
VEO_3 = _veo("veo-3.0-generate-001", "Veo 3 with sound", (4, 6, 8))
VEO_3_FAST = _veo("veo-3.0-fast-generate-001", "Veo 3 Fast with sound", (4, 6, 8))
VEO_2 = _veo("veo-2.0-generate-001", "Veo 2, silent", (5, 6, 8))

#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=10, max_in_flight=10),
    SUBMITS,
    "invented: ai.google.dev/gemini-api/docs/rate-limits sets per-project RPM/RPD by tier and "
    "shows Veo's numbers only in AI Studio (third-party notes: ~10 RPM for preview Veo 3.1); "
    "10 submits/min (operation polls are not model calls) and 10 in flight, cautiously",
)


class VeoProvider(Provider):
    """Sans-IO adapter for Veo's ``:predictLongRunning`` operations (submit, poll, download)."""

    name: ClassVar[str] = "veo"
    # The google-genai SDK reads GOOGLE_API_KEY first, then GEMINI_API_KEY: the same key wins.
    env_var: ClassVar[str | None] = "GOOGLE_API_KEY"
    env_vars: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY",)
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    about: ClassVar[str] = "Veo on the Gemini API: long-running operations, keyed file downloads"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(
        VEO_31, VEO_31_FAST, VEO_3, VEO_3_FAST, VEO_2
    )
    # The docs poll every 10 s, the REST cookbook every 5 s; a video takes 11 s to 6 min.
    poll_interval: ClassVar[tuple[float, float]] = (5.0, 15.0)
    retention: ClassVar[float | None] = 2 * 24 * 3600.0
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    error_kind: ClassVar[str] = "error.status"
    id_keys: ClassVar[tuple[str, ...]] = ("name",)
    authenticated_downloads: ClassVar[bool] = True
    expired_text: ClassVar[str | None] = (
        "{name} no longer knows this operation (videos are removed after 2 days)"
    )

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        instance = {k: v for k, v in params.items() if k in INSTANCE_FIELDS}
        rest = {k: v for k, v in params.items() if k not in INSTANCE_FIELDS}
        path = f"/v1beta/models/{quote(model, safe='')}:predictLongRunning"
        return self.request("POST", path, json={"instances": [instance], "parameters": rest})

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        record = self.state_in(response)
        if record is None:
            raise self.malformed("no operation name", response, model=model)
        return self.new_task(model, params, response, record)

    def build_poll(self, task: Task) -> Request:
        if not OPERATION.fullmatch(task.id):  # from the journal too: never an arbitrary path
            why = f"Not a {self.name} operation name: {task.id[:80]!r}"
            raise MalformedResponse(why, **error_context(self.name, task))
        return self.request("GET", f"/v1beta/{quote(task.id, safe='/')}")

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        body = response.json_or_none() if response.ok else None
        named = isinstance(body, Mapping) and OPERATION.fullmatch(str(body.get("name", "")))
        return body if named else None

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        if record.get("done") is not True:  # queued and running look the same
            return task.evolve(status=self.status_of("running"), provider_status="running")
        samples = next((s for p in _SAMPLES if isinstance(s := dig(record, p), list)), [])
        uris = [dig(s, "video.uri") for s in samples if isinstance(s, Mapping)]
        outputs = tuple(self.output(u, kind="video") for u in uris if is_http_url(u))
        raw = "done" if outputs else "failed"
        status = self.status_of(raw)
        return task.evolve(
            status=status,
            provider_status=raw,
            error=None if outputs else self._why(record, samples),
            **self.times(task, status, record, now),
            outputs=outputs,
        )

    def _why(self, record: Mapping[str, Any], samples: list[Any]) -> str:
        """Why a done operation has no video: its error, the safety filter, or inline bytes."""
        if isinstance(record.get("error"), Mapping):
            code = dig(record, "error.code")
            said = self._clean(dig(record, "error.message")) or "no message"
            return f"{self.name} failed the operation (code {code}): {said}"
        filtered = dig(record, "response.generateVideoResponse.raiMediaFilteredCount")
        reasons = dig(record, "response.generateVideoResponse.raiMediaFilteredReasons")
        if filtered or reasons:
            listed = reasons if isinstance(reasons, list) else [reasons]
            said = "; ".join(r for r in listed if text(r)) or "no reason given"
            removed = f"the safety filter removed {filtered or 'every'} video: {said}"
            return self.failure("done", removed)
        if samples:
            return f"{self.name} returned the video inline only; genwidgets downloads URIs"
        return self.failure("done", None)
