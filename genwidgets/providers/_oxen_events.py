"""Oxen's push half: the completion events of ``GET /api/events`` (Server-Sent Events), decoded
and applied to tasks. `OxenProvider` (in `oxen`) states the stream's facts: no replay, keep-alives,
one stream per user, and only ``succeeded``/``failed`` announced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._models import Task
from ._base import Provider
from ._fields import is_http_url, is_id
from ._wire import Event, Request

__all__ = ["COMPLETED_EVENT", "OxenEvents"]

COMPLETED_EVENT = "media_generation_completed"


class OxenEvents(Provider):
    """Oxen's event stream; a completion is read as the generation record it stands for."""

    def build_events(self) -> Request:
        return self.request("GET", "/api/events", headers={"Accept": "text/event-stream"})

    def parse_event(
        self, event: str, data: str, *, received_at: datetime | None = None
    ) -> Event | None:
        """A completion for one generation, or None for anything that cannot complete a task:
        other event types, malformed JSON, an unknown status, a success with no usable URL."""
        if event != COMPLETED_EVENT:
            return None
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            return None
        if not isinstance(payload, Mapping) or not is_id(payload.get("generation_id")):
            return None
        if not _completes(payload):
            return None  # the docs announce only these two; a bare success: the poll reads it
        stamp = {"received_at": received_at} if received_at else {}
        return Event(task_id=str(payload["generation_id"]), payload=dict(payload), **stamp)

    def apply_event(self, task: Task, event: Event) -> Task:
        """The pushed outcome, read as a generation record; the task unchanged when it is
        already terminal, the event is for another generation, or it says nothing usable."""
        payload = event.payload
        if task.done or event.task_id != task.id or not _completes(payload):
            return task
        record = {
            "status": payload["status"],
            "media_type": payload.get("media_type"),
            "result_url": payload.get("url"),
            "error_message": payload.get("error"),
        }
        return self.snapshot(task, record, event.received_at)


def _completes(payload: Mapping[str, Any]) -> bool:
    """Does a completion event say something a task can end with?"""
    status = payload.get("status")
    return status == "failed" or (status == "succeeded" and is_http_url(payload.get("url")))
