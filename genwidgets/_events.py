"""Push events (Oxen's SSE): one shared subscription per provider, handed out per task id.

Events arrive for ids we may not know yet (the completion can beat the submit's answer), so the
newest event per id is kept in a bounded buffer and handed out when that task asks. If the stream
cannot be opened, waiting falls back to plain polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from ._exceptions import TransportError
from .providers import Provider

__all__ = ["EventStream"]

log = logging.getLogger("genwidgets")

#: Newest events kept for ids nobody asked about yet.
BUFFER = 4096
#: Seconds to wait for the stream to open before a task polls instead.
CONNECT_WAIT = 5.0
#: Seconds a waiting task gives a dropped stream to come back before it polls.
RECONNECT_WAIT = 2.0
#: Reconnection backoff after the stream drops: first wait, then doubling up to the cap.
RECONNECT_FIRST, RECONNECT_CAP = 0.5, 30.0
#: Seconds to wait for the stream's response headers (the body itself may be silent for long).
OPEN_TIMEOUT = 10.0


class EventStream:
    """One SSE subscription per provider, shared by every task of the client."""

    def __init__(self, http: httpx.AsyncClient, adapter: Provider) -> None:
        self._http = http
        self._adapter = adapter
        self._events: OrderedDict[str, Any] = OrderedDict()
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def ensure_connected(self, timeout: float = CONNECT_WAIT) -> bool:
        if self._runner is None or self._runner.done():
            self._connected.clear()
            self._runner = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("%s event stream not available; polling instead", self._adapter.name)
            return False

    async def wait(self, task_id: str, timeout: float) -> Any:
        """The pushed event for `task_id` if one arrives within `timeout`, else None."""
        if task_id in self._events:
            return self._events.pop(task_id)  # handed out once: a stale event must not spin
        if timeout > 0 and (self._runner is None or self._runner.done()):
            with contextlib.suppress(Exception):
                await self.ensure_connected(timeout=min(timeout, RECONNECT_WAIT))
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: task_id in self._events), timeout
                )
        return self._events.pop(task_id, None)

    async def _listen(self) -> None:
        backoff = RECONNECT_FIRST
        while True:
            try:
                await self._stream()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect; waiting tasks poll meanwhile
                log.debug("%s event stream dropped: %s", self._adapter.name, type(exc).__name__)
            if self._connected.is_set():  # it worked for a while: start the backoff afresh
                backoff = RECONNECT_FIRST
            self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_CAP)

    async def _stream(self) -> None:
        """Read one connection of the stream until it ends, buffering every event."""
        request = self._adapter.build_events()
        async with aconnect_sse(
            self._http,
            request.method,
            request.url,
            headers=dict(request.headers),
            timeout=httpx.Timeout(OPEN_TIMEOUT, read=None),
        ) as source:
            if source.response.status_code != 200:
                raise TransportError(f"event stream answered {source.response.status_code}")
            self._connected.set()
            async for sse in source.aiter_sse():
                event = self._adapter.parse_event(sse.event, sse.data)
                if event is None:
                    continue
                async with self._changed:
                    self._events[event.task_id] = event
                    self._events.move_to_end(event.task_id)
                    while len(self._events) > BUFFER:
                        self._events.popitem(last=False)
                    self._changed.notify_all()

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
