"""Push events over SSE, in the two shapes providers offer (`providers._push`).

`EventStream`: one shared subscription per provider (Oxen), handed out per task id. Events
arrive for ids we may not know yet (the completion can beat the submit's answer), so the newest
event per id is kept in a bounded buffer and handed out when that task asks. If the stream cannot
be opened, waiting falls back to plain polling.

`TaskStream`: one task's own stream (fal's status stream), opened while the task is followed and
shared by its followers (`TaskStreams`), each through a `StreamView` of what it has not taken yet
(one result fetch serves them all). Each message becomes the task's next snapshot; while the
stream is open the task is not polled, and whenever it is not (still opening, refused, cut,
silent past `SILENT_AFTER`) the poll schedule goes on as if it did not exist. An open is one
request of the provider's budget; open streams are capped per client and have connections of their
own in the pool (`_transport.new_http_client`), so they never hold a slot a submit, poll or result
GET needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from ._budget import Budget
from ._exceptions import TransportError
from ._models import Task, utcnow
from .providers import Provider

__all__ = ["MAX_TASK_STREAMS", "EventStream", "StreamView", "TaskStream", "TaskStreams"]

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
#: Per-task streams one client keeps open at most, every provider together; a task beyond them
#: is polled. The connection pool holds this many connections more (see `_transport`).
MAX_TASK_STREAMS = 256
#: Opens of one task's stream at most: the first, then one more after an open stream was cut; a
#: refused one is not asked again. Meanwhile and after, the task is polled.
TASK_STREAM_OPENS = 2
#: Seconds a task's open stream may say nothing at all (no event, no keep-alive comment) before it
#: counts as dead: fal sends a keep-alive every 15 s.
SILENT_AFTER = 35.0
#: Seconds before a cut stream is opened again.
REOPEN_WAIT = 0.5


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


class TaskStream:
    """One task's own event stream, read in the background while the task is followed, and
    shared by the task's followers: each looks at it through its own `StreamView`.

    `task` is the newest snapshot (each message is read against it), `version` counts the news;
    `streaming` once the stream answered 200 (followers stop polling), `alive` False once it is
    closed for good (followers poll only)."""

    def __init__(
        self, http: httpx.AsyncClient, adapter: Provider, task: Task, budget: Budget | None
    ) -> None:
        self.key = (task.provider, task.id)
        self.task = task
        self.version = 0
        self.streaming = False
        self.alive = True
        self.views: set[StreamView] = set()
        self.completing = asyncio.Lock()  # one result fetch for all the task's followers
        self._http, self._adapter, self._budget = http, adapter, budget
        self._runner = asyncio.get_running_loop().create_task(self._run())

    def news(self, task: Task) -> None:
        """A newer snapshot (a message, or a follower's poll or fetched result): every view
        takes it once, and later messages are read against it."""
        self.task = task
        self.version += 1
        self._changed()

    def _changed(self) -> None:
        for view in self.views:
            view.changed.set()

    def close(self) -> None:
        self._runner.cancel()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._runner

    async def _run(self) -> None:
        try:
            for opened in range(TASK_STREAM_OPENS):
                if opened:
                    await asyncio.sleep(REOPEN_WAIT)
                if not await self._read() or self.task.done:
                    return
        finally:
            self.alive = self.streaming = False
            self._changed()

    async def _read(self) -> bool:
        """Open the stream once and read it until it ends; whether it was worth opening again
        (it answered 200, and the task did not end)."""
        name, answered = self._adapter.name, False
        try:
            request = self._adapter.build_task_events(self.task)
            if request is None:
                return False
            if self._budget is not None:
                await self._budget.spend("poll")  # an open is a status request
            async with aconnect_sse(
                self._http,
                request.method,
                request.url,
                headers=dict(request.headers),
                params=dict(request.params) if request.params else None,
                timeout=httpx.Timeout(OPEN_TIMEOUT, read=SILENT_AFTER),
            ) as source:
                code = source.response.status_code
                if code != 200:
                    if code == 429 and self._budget is not None:
                        self._budget.penalize(None, kind="poll")
                    log.debug("%s refused the event stream of %s: %s", name, self.key[1], code)
                    return False
                answered = self.streaming = True
                self._changed()
                async for sse in source.aiter_sse():
                    new = self._adapter.parse_task_event(self.task, sse.event, sse.data, utcnow())
                    if new is not None:
                        self.news(new)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # cut, silent, malformed, a broken adapter: the follower polls
            log.debug("%s event stream of %s dropped: %s", name, self.key[1], type(exc).__name__)
        finally:
            if self.streaming:
                self.streaming = False
                self._changed()
        return answered


class StreamView:
    """One follower's look at a task's shared stream: what it has not taken yet."""

    def __init__(self, stream: TaskStream) -> None:
        self.stream = stream
        self.changed = asyncio.Event()
        self._taken = 0  # the stream's version this follower last took

    @property
    def streaming(self) -> bool:
        return self.stream.streaming

    @property
    def alive(self) -> bool:
        return self.stream.alive

    def take(self) -> Task | None:
        """The stream's newest snapshot if it is news to this follower, else None."""
        if self.stream.version == self._taken:
            return None
        self._taken = self.stream.version
        return self.stream.task

    def polled(self, task: Task) -> None:
        """This follower's own news (a poll, a fetched result): shared, not taken again; unless
        the stream brought newer news meanwhile (a message during the poll), taken next."""
        if self.stream.version == self._taken:
            self.stream.news(task)
            self._taken = self.stream.version

    async def wait(self, timeout: float | None) -> bool:
        """Whether news came or the stream's state changed, waiting at most `timeout` seconds
        (None: until one does)."""
        if not self.changed.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)
        changed = self.changed.is_set()
        self.changed.clear()
        return changed


class TaskStreams:
    """The per-task streams of one client, by task: shared by a task's followers, closed when
    the last one stops following, at most `limit` open at once."""

    def __init__(self, http: httpx.AsyncClient, limit: int | None = None) -> None:
        self._http = http
        self.limit = MAX_TASK_STREAMS if limit is None else limit
        self._streams: dict[tuple[str, str], TaskStream] = {}

    def follow(self, adapter: Provider, task: Task, budget: Budget | None) -> StreamView | None:
        """A view of the stream of `task` to wait on (`release` it after), or None: it is polled
        (the provider offers no stream for it, or `limit` streams are open)."""
        stream = self._streams.get((task.provider, task.id))
        if stream is None:
            if len(self._streams) >= self.limit or adapter.build_task_events(task) is None:
                return None
            stream = TaskStream(self._http, adapter, task, budget)
            self._streams[stream.key] = stream
        view = StreamView(stream)
        stream.views.add(view)
        return view

    def release(self, view: StreamView) -> None:
        stream = view.stream
        stream.views.discard(view)
        if not stream.views and self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
            stream.close()

    def __len__(self) -> int:
        return len(self._streams)

    async def aclose(self) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            await stream.aclose()
