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

import re
from collections.abc import Mapping
from typing import Any, ClassVar, cast
from urllib.parse import quote

from .._exceptions import ProviderError, UnknownModel
from .._models import Output, OutputKind, Status, Task, utcnow
from ._base import (
    MAX_SERVER_TEXT,
    ModelInfo,
    Param,
    Provider,
    Request,
    Response,
    guess_kind,
    is_http_url,
    parse_time,
)

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

_KINDS: frozenset[str] = frozenset({"image", "video", "audio", "text"})
_UNKNOWN_MODEL = re.compile(
    r"\bmodel\b[^\n]{0,160}?\b(not exists?|not found|does not exist|doesn't exist|"
    r"is not supported)\b|\b(unknown|invalid|unsupported|no such) model\b",
    re.IGNORECASE,
)
_MAX_TEXT = MAX_SERVER_TEXT
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


class NetMindProvider(Provider):
    """Sans-IO adapter for NetMind's generation API (create, get, list, delete).

    There is no cancel: the docs document ``DELETE /v1/generation/{id}`` only as "Delete
    generation" and do not say it stops a running job (FINDINGS lists "Is DELETE a cancel?" as an
    open question), so `can_cancel` is False and delete is offered as delete.
    """

    name: ClassVar[str] = "netmind"
    env_var: ClassVar[str | None] = "NETMIND_API_KEY"
    default_base_url: ClassVar[str] = "https://api.netmind.ai"
    models: ClassVar[Mapping[str, ModelInfo]] = {m.name: m for m in (QWEN_IMAGE, MMAUDIO)}
    open_catalogue: ClassVar[bool] = True
    can_cancel: ClassVar[bool] = False
    can_list: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True
    # A generation takes seconds to minutes (the docs' example: 13 min); nothing pushes.
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)

    # ------------------------------------------------------------------------------- protocol
    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        return Request(
            "POST",
            self.url("/v1/generation"),
            headers={**self.auth_headers(), "Content-Type": "application/json"},
            json={"model": model, "config": dict(params)},
        )

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        body = response.json_or_none()
        if not response.ok:
            message = self._clean(self.error_message(body))
            if response.status_code in (400, 404) and message and _UNKNOWN_MODEL.search(message):
                raise self._unknown_model(model, message)
            raise self.error_for(response, model=model)
        record = self._record(body, response, model=model)
        task = Task(
            id=_record_id(record) or "",
            provider=self.name,
            model=model,
            status=Status.QUEUED,
            created_at=utcnow(),
            params=dict(params),
        )
        if not task.id:
            raise self._malformed("the answer has no generation id", response, model=model)
        return self._snapshot(task, record)

    def build_poll(self, task: Task) -> Request:
        return Request("GET", self._generation_url(task.id), headers=self.auth_headers())

    def parse_poll(self, task: Task, response: Response) -> Task:
        if response.status_code == 404:
            # A generation we created: deleted, or past a retention NetMind does not document.
            said = self._clean(self.error_message(response.json_or_none()))
            error = f"{self.name} no longer knows this generation (deleted or expired)"
            return self.expired(task).evolve(error=f"{error}: {said}" if said else error)
        if not response.ok:
            raise self.error_for(response, task=task)
        record = self._record(response.json_or_none(), response, task=task)
        if not _text(record.get("status")):
            raise self._malformed("the generation has no status", response, task=task)
        return self._snapshot(task, record)

    def build_list(self, **filters: str) -> Request:
        """All generations of the account. Pagination is undocumented: filters pass through as
        query parameters."""
        return Request(
            "GET",
            self.url("/v1/generation"),
            headers=self.auth_headers(),
            params=dict(filters) or None,
        )

    def parse_list(self, response: Response) -> list[Task]:
        if not response.ok:
            raise self.error_for(response)
        body = self.json_body(response)
        items = body.get("generation_list") if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise self._malformed("the answer has no generation_list", response)
        tasks = []
        for record in items:
            task_id = _record_id(record) if isinstance(record, Mapping) else None
            if not task_id:
                continue  # nothing to poll or delete without an id
            model = _text(record.get("model")) or _text(record.get("model_id")) or "unknown"
            config = record.get("config")
            base = Task(
                id=task_id,
                provider=self.name,
                model=model,
                status=Status.QUEUED,
                params=dict(config) if isinstance(config, Mapping) else {},
            )
            tasks.append(self._snapshot(base, record))
        return tasks

    def build_delete(self, task: Task) -> Request:
        return Request("DELETE", self._generation_url(task.id), headers=self.auth_headers())

    def parse_delete(self, task: Task, response: Response) -> None:
        """Done on 2xx, and on 404 too: a generation that is already gone is what was asked."""
        if response.ok or response.status_code == 404:
            return
        raise self.error_for(response, task=task)

    # ------------------------------------------------------------------------------- errors
    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """The base mapping, with the key scrubbed from echoed text and the premium-model hint."""
        error = super().error_for(response, task=task, model=model)
        message = self._scrub(error.message[: _MAX_TEXT + 100])
        said = self.error_message(response.json_or_none()) or ""
        if response.status_code == 500 and "unavailable" in said.lower() and task is None:
            message += (
                " (NetMind also answers this for premium models the account has not unlocked)"
            )
        error.message = message
        error.args = (message,)
        return error

    def error_message(self, body: Any) -> str | None:
        """``error``/``message``/``detail`` text; FastAPI-style ``detail`` lists are joined."""
        message = super().error_message(body)
        if message is None and isinstance(body, Mapping) and isinstance(body.get("detail"), list):
            parts = [d.get("msg") for d in body["detail"] if isinstance(d, Mapping)]
            message = "; ".join(p for p in parts if isinstance(p, str)) or None
        return message

    # ------------------------------------------------------------------------------- helpers
    def _snapshot(self, task: Task, record: Mapping[str, Any]) -> Task:
        raw = _text(record.get("status"))
        status = STATUSES.get(raw.lower(), Status.RUNNING) if raw else task.status
        updated = parse_time(record.get("updated_at"))
        logs = _logs(record.get("logs")) or task.logs
        if record.get("is_deleted") is True:
            # Deleted at NetMind (by us or elsewhere): its files can no longer be fetched.
            return task.evolve(
                status=Status.EXPIRED,
                provider_status=raw or task.provider_status,
                error=f"{self.name} reports this generation deleted",
                created_at=parse_time(record.get("created_at")) or task.created_at,
                finished_at=parse_time(record.get("deleted_at")) or updated or utcnow(),
                logs=logs,
                outputs=(),
            )
        started = task.started_at
        if status is Status.RUNNING and started is None:
            started = updated or utcnow()  # the record changed to running at `updated_at`
        finished = task.finished_at
        if status.is_terminal and finished is None:
            finished = updated or utcnow()
        error = None
        if status is Status.FAILED:
            reason = self.error_message(record) or (logs[-1] if logs else None)
            error = self._clean(reason) or f"{self.name} reported {raw!r} with no reason"
        outputs = tuple(self._outputs(record, task.model)) if status is Status.SUCCEEDED else ()
        return task.evolve(
            status=status,
            provider_status=raw or task.provider_status,
            error=error,
            created_at=parse_time(record.get("created_at")) or task.created_at,
            started_at=started,
            finished_at=finished,
            outputs=outputs,
            logs=logs,
        )

    def _outputs(self, record: Mapping[str, Any], model: str) -> list[Output]:
        """``result.data[]`` (current API), else ``meta_info.result_download_url`` (older one)."""
        outputs: list[Output] = []
        result = record.get("result")
        data = result.get("data") if isinstance(result, Mapping) else None
        for item in data if isinstance(data, list) else []:
            url = item.get("url") if isinstance(item, Mapping) else None
            if not is_http_url(url):
                continue  # server text: only http(s) links become outputs
            # `file_name` is never read: the cache names files by their hash.
            kind, ctype = _file_type(item.get("file_type"))
            outputs.append(self.output(url, kind=kind, content_type=ctype, model=model))
        if outputs:
            return outputs
        meta = record.get("meta_info")
        urls = meta.get("result_download_url") if isinstance(meta, Mapping) else None
        for url in urls if isinstance(urls, list) else [urls]:
            if is_http_url(url):
                outputs.append(self.output(url, model=model))
        return outputs

    def _record(
        self, body: Any, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> Mapping[str, Any]:
        if body is None:
            self.json_body(response, task)  # raises MalformedResponse naming what came instead
        if isinstance(body, Mapping):
            data = body.get("data")
            if "id" not in body and "status" not in body and isinstance(data, Mapping):
                return data  # tolerated: a gateway's {"data": {...}} wrapper
            return body
        raise self._malformed("the answer is not a generation", response, task=task, model=model)

    def _unknown_model(self, model: str, said: str) -> UnknownModel:
        error = self.unknown_model(model)
        error.message = f"{error.message} ({self.name} said: {said})"
        error.args = (error.message,)
        return error

    def _generation_url(self, task_id: str) -> str:
        return self.url(f"/v1/generation/{quote(task_id, safe='')}")


def _record_id(record: Mapping[str, Any]) -> str | None:
    """``id`` (current), or ``job_id``/``generation_id`` (older or variant shapes)."""
    for key in ("id", "job_id", "generation_id"):
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _logs(value: Any) -> tuple[str, ...]:
    """``logs: [{text}]`` (or plain strings) as clipped lines; the last `_MAX_LOGS` are kept."""
    lines = []
    for entry in value if isinstance(value, list) else []:
        text = entry.get("text") if isinstance(entry, Mapping) else entry
        if isinstance(text, str) and text.strip():
            lines.append(text.strip()[:2000])
    return tuple(lines[-_MAX_LOGS:])


def _file_type(value: Any) -> tuple[OutputKind | None, str | None]:
    """NetMind states each file's kind in ``file_type`` ("image" in the docs); a MIME type or an
    extension there is understood too. Returns (kind, content type)."""
    if not isinstance(value, str) or not value.strip():
        return None, None
    text = value.strip().lower()
    if text in _KINDS:
        return cast("OutputKind", text), None
    if "/" in text:
        kind = guess_kind(None, text)
        return kind, text if kind else None
    return guess_kind(f"file.{text.lstrip('.')}"), None
