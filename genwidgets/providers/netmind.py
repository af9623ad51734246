"""NetMind's asynchronous generation API.

Protocol (seed 003, FINDINGS.md section 4):

- ``POST {base}/v1/generation`` with ``{model, config: {prompt, ...}}``: every model parameter
  (seed included) goes inside ``config``. ``Authorization: Bearer <key>`` (the docs' Python
  examples; their curl examples show the raw token, and third-party code uses Bearer).
- The answer, and every ``GET {base}/v1/generation/{id}``, is the generation record ``{id, user_id,
  status, created_at, updated_at, deleted_at, is_deleted, result}``. Times are strings like
  ``"2025-09-18 09:14:20"`` with no time zone; they are read as UTC (an assumption: the docs do
  not say). On completion ``result.data[]`` holds ``{url, file_id, file_name, file_type}``;
  ``file_name`` is server text and is never used as a path.
- An older version of the API (January 2025) answered ``model_id``, ``backend_id`` and
  ``meta_info.result_download_url``; both shapes are read.
- ``GET {base}/v1/generation`` lists generations (``generation_list``);
  ``DELETE {base}/v1/generation/{id}`` deletes one (``{"message": "Generation deleted"}``).
- Errors (third-party notes): 400 "Model name: X not exists", 401, and 500 "Service is
  unavailable" (also for premium models the account has not unlocked).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from .._models import Output, OutputKind, Status, Task
from ._base import Provider
from ._catalogue import Limits, ModelInfo, Param, ProviderLimits, catalogue
from ._errors import DEFAULT_RULES, SERVER, ErrorRule, model_refused
from ._fields import dig, guess_kind, is_http_url, kind_word, parse_time, text, unwrap
from ._wire import Request, Response

__all__ = ["NetMindProvider"]

STATUSES: Mapping[str, Status] = {
    "pending": Status.QUEUED,
    "initializing": Status.RUNNING,  # seen in a third-party test mock
    "processing": Status.RUNNING,  # not seen; tolerated should the enum grow one
    "running": Status.RUNNING,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
    # Not documented either. Guessed so that a cancelled generation ends the wait instead of
    # being polled forever as "running".
    "cancelled": Status.CANCELLED,
    "canceled": Status.CANCELLED,
}
_NO_MODEL = (
    r"\bmodel\b[^\n]{0,160}?\b(not exists?|not found|does not exist|doesn't exist|"
    r"is not supported)\b|\b(unknown|invalid|unsupported|no such) model\b"
)
_PREMIUM = " (NetMind also answers this for premium models the account has not unlocked)"
ERRORS: tuple[ErrorRule, ...] = (
    model_refused(codes={400, 404}, text=_NO_MODEL),
    SERVER.where(codes={500}, text="unavailable", submit=True, message=SERVER.message + _PREMIUM),
    *DEFAULT_RULES,
)
_MAX_LOGS = 200

QWEN_IMAGE = ModelInfo(
    "Qwen/Qwen-Image",
    "image",
    "Qwen-Image text-to-image (the docs' example)",
    params={
        "image_size": Param(
            str,
            "preset frame shape",
            choices=(
                "square_hd",
                "square",
                "portrait_4_3",
                "portrait_16_9",
                "landscape_4_3",
                "landscape_16_9",
            ),
        ),
        "num_inference_steps": Param(int, "denoising steps (the docs use 30)", minimum=1),
        "guidance_scale": Param(float, "how closely to follow the prompt (docs: 2.5)", minimum=0),
        "num_images": Param(int, "images to generate", minimum=1),
        "enable_safety_checker": Param(bool, "let the provider filter unsafe images"),
        "output_format": Param(str, "image file format", choices=("png", "jpeg")),
        "acceleration": Param(
            str, "speed/quality trade-off (docs: none)", choices=("none", "regular", "high")
        ),
    },
)
MMAUDIO = ModelInfo(
    "hkchengrex/MMAudio",
    "audio",
    "MMAudio text-to-audio (the docs' example)",
    params={"duration": Param((int, float), "length in seconds (the docs use 100)", minimum=0)},
)


#: The default budget (see `_limits`): what the numbers rest on.
LIMITS = ProviderLimits(
    Limits(requests_per_minute=120, max_in_flight=10),
    None,
    "invented: NetMind documents 429 for chat completions only; a cautious guess",
)


class NetMindProvider(Provider):
    """Sans-IO adapter for NetMind's generation API (create, get, list, delete).

    There is no cancel: the docs document ``DELETE /v1/generation/{id}`` only as "Delete
    generation" and do not say it stops a running job (FINDINGS lists "Is DELETE a cancel?" as an
    open question), so `can_cancel` is False and delete is offered as delete.
    """

    name: ClassVar[str] = "netmind"
    env_var: ClassVar[str | None] = "NETMIND_API_KEY"
    limits: ClassVar[ProviderLimits | None] = LIMITS
    default_base_url: ClassVar[str] = "https://api.netmind.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = catalogue(QWEN_IMAGE, MMAUDIO)
    can_list: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True
    # A generation takes seconds to minutes (the docs' example: 13 min); nothing pushes.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)
    statuses: ClassVar[Mapping[str, Status]] = STATUSES
    errors: ClassVar[tuple[ErrorRule, ...]] = ERRORS
    id_keys: ClassVar[tuple[str, ...]] = ("id", "job_id", "generation_id")
    time_fields: ClassVar[tuple[str | None, ...]] = ("created_at", None, None)
    stamp_start: ClassVar[bool] = True  # at the record's `updated_at`, else when first seen
    # All generations of the account; pagination is undocumented, so filters pass through.
    list_path: ClassVar[str] = "/v1/generation"
    list_key: ClassVar[str] = "generation_list"
    # A generation we created: deleted, or past a retention NetMind does not document.
    expired_text: ClassVar[str | None] = (
        "{name} no longer knows this generation (deleted or expired)"
    )

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        body = {"model": model, "config": dict(params)}
        json_type = {"Content-Type": "application/json"}
        return self.request("POST", "/v1/generation", headers=json_type, json=body)

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        return self.new_task(model, params, response, unwrap(response.json_or_none()))

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", self._generation_url(task.id))

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        record = unwrap(response.json_or_none()) if response.ok else None
        return record if record is not None and text(record.get("status")) else None

    def listed(self, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        model = text(record.get("model")) or text(record.get("model_id")) or "unknown"
        config = record.get("config")
        return model, dict(config) if isinstance(config, Mapping) else {}

    def build_delete(self, task: Task) -> Request:
        return self.request("DELETE", self._generation_url(task.id))

    def parse_delete(self, task: Task, response: Response) -> None:
        """Done on 2xx, and on 404 too: a generation that is already gone is what was asked."""
        if not response.ok and response.status_code != 404:
            raise self.error_for(response, task=task)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        """Dated by the record's ``updated_at`` where NetMind gives no start or finish time."""
        raw = text(record.get("status"))
        status = self.status_of(raw) if raw else task.status
        seen = parse_time(record.get("updated_at")) or now
        logs = _logs(record.get("logs")) or task.logs
        same = {"provider_status": raw or task.provider_status, "logs": logs}
        if record.get("is_deleted") is True:
            # Deleted at NetMind (by us or elsewhere): its files can no longer be fetched.
            error = f"{self.name} reports this generation deleted"
            deleted = record.get("deleted_at")
            times = self.times(task, Status.EXPIRED, record, seen, finished=deleted)
            return task.evolve(status=Status.EXPIRED, error=error, outputs=(), **times, **same)
        reason = self.error_message(record) or (logs[-1] if logs else None)
        return task.evolve(
            status=status,
            error=self.failure(raw, reason) if status is Status.FAILED else None,
            **self.times(task, status, record, seen),
            outputs=tuple(self._outputs(record, task.model)) if status is Status.SUCCEEDED else (),
            **same,
        )

    def _outputs(self, record: Mapping[str, Any], model: str) -> list[Output]:
        """``result.data[]`` (current API), else ``meta_info.result_download_url`` (older one).
        ``file_name`` is never read: the cache names files by their hash."""
        outputs: list[Output] = []
        data = dig(record, "result.data")
        for item in data if isinstance(data, list) else []:
            url = item.get("url") if isinstance(item, Mapping) else None
            if is_http_url(url):  # server text: only http(s) links become outputs
                kind, ctype = _file_type(item.get("file_type"))
                outputs.append(self.output(url, kind=kind, content_type=ctype, model=model))
        return outputs or self.outputs(dig(record, "meta_info.result_download_url"), model)

    def _generation_url(self, task_id: str) -> str:
        return f"/v1/generation/{quote(task_id, safe='')}"


def _logs(value: Any) -> tuple[str, ...]:
    """``logs: [{text}]`` (or plain strings) as clipped lines; the last `_MAX_LOGS` are kept."""
    entries = value if isinstance(value, list) else []
    lines = (text(dig(e, "text") if isinstance(e, Mapping) else e) for e in entries)
    return tuple(line[:2000] for line in lines if line)[-_MAX_LOGS:]


def _file_type(value: Any) -> tuple[OutputKind | None, str | None]:
    """NetMind states each file's kind in ``file_type`` ("image" in the docs); a MIME type or an
    extension there is understood too. Returns (kind, content type)."""
    word = text(value)
    if word is None or kind_word(word):
        return kind_word(word), None
    word = word.lower()
    if "/" in word:
        kind = guess_kind(None, word)
        return kind, word if kind else None
    return guess_kind(f"file.{word.lstrip('.')}"), None
