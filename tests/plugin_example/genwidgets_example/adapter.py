"""The 'example' protocol, sans-IO, as a plugin adapter.

- ``POST {base}/v1/jobs`` with ``{"model", "input": {...}}`` and ``Authorization: Bearer <key>``
  answers 201 ``{"id", "state": "waiting", "created"}``.
- ``GET {base}/v1/jobs/{id}`` answers the job: ``state`` waiting | working | done | error |
  cancelled, ``files[]`` (``{url, mime}``) once done, ``reason`` when it failed, and ``created``,
  ``started``, ``finished`` as Unix seconds; 404 ``{"message"}`` once it is gone.
- ``POST {base}/v1/jobs/{id}/cancel`` cancels a waiting or working job and answers the job.
- Errors are ``{"message": "..."}`` with the HTTP status saying what kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from genwidgets import Status, Task
from genwidgets.providers import (
    Limits,
    ModelInfo,
    Param,
    Provider,
    ProviderLimits,
    Request,
    Response,
)

__all__ = ["ExampleProvider"]

MODELS = {
    "sketch": ModelInfo("sketch", "image", "a test image from the example sandbox", closed=True),
    "clip": ModelInfo(
        "clip",
        "video",
        "a short test video",
        params={"duration": Param(int, "seconds", default=1, minimum=1, maximum=5)},
        closed=True,
    ),
}


class ExampleProvider(Provider):
    """The example plugin's adapter: every part of the contract, nothing more."""

    name: ClassVar[str] = "example"
    env_var: ClassVar[str | None] = "EXAMPLE_API_KEY"
    env_vars: ClassVar[tuple[str, ...]] = ("EXAMPLE_TOKEN",)
    default_base_url: ClassVar[str] = "https://api.example.invalid"
    about: ClassVar[str] = "a test plugin (tests/plugin_example)"
    limits: ClassVar[ProviderLimits | None] = ProviderLimits(
        Limits(requests_per_minute=300, max_in_flight=8),
        frozenset({"submit"}),
        "invented: the example protocol is a test fixture; submits only, as a real plugin "
        "would say where its provider documents it",
    )
    models: ClassVar[Mapping[str, ModelInfo]] = MODELS
    open_catalogue: ClassVar[bool] = False
    can_cancel: ClassVar[bool] = True
    poll_interval: ClassVar[tuple[float, float]] = (0.5, 4.0)
    statuses: ClassVar[Mapping[str, Status]] = {
        "waiting": Status.QUEUED,
        "working": Status.RUNNING,
        "done": Status.SUCCEEDED,
        "error": Status.FAILED,
        "cancelled": Status.CANCELLED,
    }
    error_texts: ClassVar[tuple[str, ...]] = ("message",)
    time_fields: ClassVar[tuple[str | None, str | None, str | None]] = (
        "created",
        "started",
        "finished",
    )

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        return self.request("POST", "/v1/jobs", json={"model": model, "input": dict(params)})

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        if not response.ok:
            raise self.error_for(response, model=model)
        return self.new_task(model, params, response, response.json_or_none())

    def build_poll(self, task: Task) -> Request:
        return self.request("GET", f"/v1/jobs/{quote(task.id, safe='')}")

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        body = response.json_or_none()
        ok = response.ok and isinstance(body, Mapping) and isinstance(body.get("state"), str)
        return body if ok else None

    def build_cancel(self, task: Task) -> Request:
        return self.request("POST", f"/v1/jobs/{quote(task.id, safe='')}/cancel")

    def parse_cancel(self, task: Task, response: Response) -> Task:
        return self.parse_poll(task, response)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        raw = str(record["state"])
        status = self.status_of(raw)
        files = record.get("files") or []
        return task.evolve(
            status=status,
            provider_status=raw,
            error=self.failure(raw, record.get("reason")) if status is Status.FAILED else None,
            outputs=tuple(self.outputs(files, task.model)) if status.is_terminal else (),
            **self.times(task, status, record, now),
        )
