"""The normalized data model: one `Task` snapshot shape over every provider.

A `Task` is immutable: every poll, push event or local progress tick produces a new snapshot
(`task.evolve(...)`), so widgets and the journal can compare snapshots and never see a half-updated
object.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Output", "OutputKind", "Status", "Task", "utcnow"]

OutputKind = Literal["image", "video", "audio", "text"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Status(str, enum.Enum):
    """The normalized lifecycle of a task; values are lower-case strings."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True once the task can no longer change (nothing more to poll)."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.EXPIRED})


class Output(BaseModel):
    """One produced file (or text).

    `url` is where the provider serves it (often a presigned URL that expires); `path` is the
    local copy in the content-addressed cache once downloaded, named by its `sha256`, never by a
    name the server chose; `store_url` is the team object store's copy (`GENWIDGETS_STORE`), from
    which a cache on another machine fetches it.
    """

    model_config = ConfigDict(frozen=True)

    kind: OutputKind
    url: str | None = None
    content_type: str | None = None
    size: int | None = Field(default=None, description="bytes, when known")
    path: Path | None = None
    sha256: str | None = None
    text: str | None = Field(default=None, description="the output itself, for text models")
    store_url: str | None = Field(
        default=None, description="the object store's copy, named by sha256; never credentials"
    )


class Task(BaseModel):
    """One immutable snapshot of a generation task at one provider."""

    model_config = ConfigDict(frozen=True)

    id: str
    provider: str
    model: str
    status: Status
    provider_status: str | None = Field(default=None, description="the provider's raw status")
    outputs: tuple[Output, ...] = ()
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, description="when this snapshot was made")
    queue_position: int | None = None
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    logs: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = Field(default=None, description="provider-reported cost, if any")
    usage: dict[str, Any] | None = Field(default=None, description="provider-reported usage")
    replayed: bool = Field(
        default=False, description="answered from the journal and cache, with no provider call"
    )
    provider_data: dict[str, Any] = Field(
        default_factory=dict,
        repr=False,
        description="what the adapter needs to poll this task again (poll URLs); never a key",
    )

    @property
    def name(self) -> str:
        """`provider:model`, the name the task was submitted under."""
        return f"{self.provider}:{self.model}"

    @property
    def done(self) -> bool:
        return self.status.is_terminal

    @property
    def prompt(self) -> str | None:
        value = self.params.get("prompt")
        return value if isinstance(value, str) else None

    @property
    def elapsed(self) -> float | None:
        """Seconds from creation to finish (or to this snapshot while running)."""
        if self.created_at is None:
            return None
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.created_at).total_seconds())

    def evolve(self, **changes: Any) -> Task:
        """A new snapshot with `changes` applied (and a fresh `updated_at`)."""
        changes.setdefault("updated_at", utcnow())
        return self.model_copy(update=changes)

    def __repr__(self) -> str:
        extra = f", error={self.error!r}" if self.error else ""
        return (
            f"<Task {self.provider}:{self.model} id={self.id!r} status={self.status.value}"
            f" outputs={len(self.outputs)}{extra}>"
        )

    __str__ = __repr__
