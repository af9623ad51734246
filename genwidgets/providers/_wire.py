"""What crosses the wire, as plain values: the `Request` to send, the `Response` that came back,
and an `Event` a provider pushed. The client turns these into HTTP and back; adapters only read
and write them, so they never need a socket or a clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .._models import utcnow

__all__ = ["Event", "Method", "Request", "Response"]

Method = Literal["GET", "POST", "PUT", "DELETE"]


@dataclass(frozen=True)
class Request:
    """What to send. `url` is absolute; `headers` include auth (so never log this object)."""

    method: Method
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json: Any = None
    params: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Response:
    """What came back. Header names are lower-case.

    `received_at` is stamped when the caller (the transport) builds the response: adapters date
    what they first see in an answer ("finished by then") with it instead of reading the clock.
    """

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    url: str = ""
    received_at: datetime = field(default_factory=utcnow, compare=False)

    @classmethod
    def from_json(
        cls, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Convenience for tests: a JSON response."""
        hdrs = {
            "content-type": "application/json",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        return cls(status_code, hdrs, json.dumps(body).encode())

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def json_or_none(self) -> Any:
        """The decoded body, or None when it is empty or not JSON."""
        try:
            return json.loads(self.content) if self.content else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Event:
    """A push notification about one task (Oxen's SSE), already decoded by the adapter.

    `received_at` plays the part `Response.received_at` plays for polls: the caller may pass the
    moment the message arrived; by default it is when the event was decoded."""

    task_id: str
    payload: Mapping[str, Any]
    received_at: datetime = field(default_factory=utcnow, compare=False)
