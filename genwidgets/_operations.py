"""One operation on one task: at its provider (through the transport) or at the local engine.

Submit, poll, fetch the result, cancel, list, delete: each builds the adapter's request, sends it
(`_transport`) and parses the answer. What comes back is a raw snapshot; the client passes every
snapshot through its tracking, journal and observers. Local tasks go to the in-process engine,
and push events to one shared stream per provider (Oxen) or one per task (fal), see `_events`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import httpx

from ._accounts import Accounts
from ._cache import Cache
from ._events import EventStream, StreamView, TaskStreams
from ._models import Output, Status, Task
from ._transport import Note, Transport, WaitNotice, bounded
from .providers import Request
from .providers._fields import same_origin

__all__ = ["Operations", "with_deadline"]


def with_deadline(request: Request, header: str, seconds: float) -> Request:
    """`request` with a provider's deadline header (`Provider.deadline_header`, e.g.
    ``"Cancel-After: {minutes}m"``): ``{seconds}`` and ``{minutes}`` are rounded up (at least 1),
    so the provider never stops a task before the client's own deadline would."""
    name, _, template = header.partition(":")
    left = max(0.0, seconds)
    value = template.strip().format(
        seconds=max(1, math.ceil(left)), minutes=max(1, math.ceil(left / 60))
    )
    return replace(request, headers={**request.headers, name.strip(): value})


class Operations:
    """The requests about tasks, for every provider of one client."""

    def __init__(
        self, http: httpx.AsyncClient, accounts: Accounts, transport: Transport, cache: Cache
    ) -> None:
        self._http = http
        self._accounts = accounts
        self._transport = transport
        self._cache = cache
        self._streams: dict[str, EventStream] = {}
        self.task_streams = TaskStreams(http)
        self.local: Any = None  # the LocalEngine, once a local task ran
        #: Around a submit's wait for a budget slot (`Following.watching_slots` polls the tasks
        #: that hold the slots meanwhile).
        self.slot_watch: Callable[[str], AbstractAsyncContextManager[Any]] = _no_watch
        self.stop_watching: Callable[[], Awaitable[None]] | None = None  # on aclose, first

    def local_engine(self) -> Any:
        """The in-process engine of `local:` models (Pillow, PyAV), started on first use."""
        if self.local is None:
            from ._local import LocalEngine

            self.local = LocalEngine(self._cache)
        return self.local

    def events(self, provider: str) -> EventStream | None:
        """The provider's shared push-event stream, if it has one."""
        adapter = self._accounts.adapter(provider)
        if not adapter.has_events:
            return None
        stream = self._streams.get(provider)
        if stream is None:
            stream = self._streams[provider] = EventStream(self._http, adapter)
        return stream

    def task_events(self, task: Task) -> StreamView | None:
        """A look at the task's own event stream, opened in the background and shared by the
        task's followers (`task_streams.release` it when done), or None: the task is polled
        (`local`, a provider without one, or the streams cap)."""
        if task.provider == "local" or task.done:
            return None
        adapter = self._accounts.adapter(task.provider)
        budget = self._accounts.known_budget(task.provider)
        return self.task_streams.follow(adapter, task, budget)

    async def submit(
        self,
        provider: str,
        model: str,
        params: dict[str, Any],
        note: Note,
        on_wait: WaitNotice | None,
        until: float | None,
        seen: Callable[[Task], Task],
    ) -> Task:
        """Take a budget slot (waiting at most `until`, a `time.monotonic()` deadline), send the
        submit, and pass its first snapshot to `seen` (which records it before the note goes: a
        crash between loses nothing)."""
        if provider == "local":
            return seen(await self.local_engine().submit(model, params))
        adapter = self._accounts.adapter(provider)
        budget = self._accounts.budget(provider)
        if budget is not None:
            watch = self.slot_watch
            await bounded(budget.reserve(on_wait, lambda: watch(provider)), until, provider)
        try:
            stream = self.events(provider)
            if stream is not None:
                # Oxen broadcasts completion once, with no replay: listen before enqueueing.
                await stream.ensure_connected()
            request = adapter.build_submit(model, params)
            if until is not None and adapter.deadline_header:  # the provider enforces it too
                request = with_deadline(request, adapter.deadline_header, until - time.monotonic())
            response = await self._transport.submit(
                adapter, request, model, note=note, on_wait=on_wait, ends=until
            )
            task = seen(adapter.parse_submit(model, params, response))
        except BaseException:
            if budget is not None:
                budget.unreserve()
            raise
        if budget is not None:
            budget.bind(task.id)
            if task.done:
                budget.release(task.id)
        return task

    async def poll(self, task: Task) -> Task:
        """A fresh snapshot, with the full result once it is ready."""
        if task.provider == "local":
            return self.local_engine().get(task)
        adapter = self._accounts.adapter(task.provider)
        new = await self._transport.call(
            adapter, adapter.build_poll(task), lambda r: adapter.parse_poll(task, r)
        )
        return await self.complete(new)

    async def complete(self, task: Task) -> Task:
        """Fetch the full result when the status endpoint said done without outputs (Segmind)."""
        if task.status is Status.SUCCEEDED and not task.outputs:
            adapter = self._accounts.adapter(task.provider)
            request = adapter.build_result(task)
            if request is not None:
                return await self._transport.call(
                    adapter, request, lambda r: adapter.parse_result(task, r), kind="result"
                )
        return task

    async def refresh_output(self, task: Task, index: int) -> Output | None:
        """Output `index` as the provider reports it now (an expired URL may have a new one)."""
        polled = await self.poll(task.evolve(outputs=()))
        return polled.outputs[index] if len(polled.outputs) > index else None

    def download_headers(self, task: Task, url: str) -> dict[str, str]:
        """What a download of `url` for `task` carries: the key's headers where the adapter says
        its outputs need them (`authenticated_downloads`) and `url` is on exactly its base
        origin; nothing otherwise (asked again at every redirect, see `_downloads`)."""
        if task.provider == "local":
            return {}
        if not self._accounts.catalogue(task.provider).authenticated_downloads:
            return {}
        adapter = self._accounts.adapter(task.provider)
        return adapter.auth_headers() if same_origin(url, adapter.base_url) else {}

    async def cancel(self, task: Task) -> Task:
        if task.provider == "local":
            return await self.local_engine().cancel(task)
        adapter = self._accounts.adapter(task.provider)
        if not adapter.can_cancel:
            raise adapter.not_supported("cancel")
        if getattr(adapter, "cancel_deletes_finished", False):
            # Its cancel deletes a task that already finished (Runway's DELETE): cancel only
            # what the provider says is live now, never on a snapshot up to a poll gap old.
            task = await self.poll(task)
            if task.done:
                return task
        return await self._transport.call(
            adapter,
            adapter.build_cancel(task),
            lambda r: adapter.parse_cancel(task, r),
            kind="cancel",
        )

    async def list(self, provider: str, **filters: str) -> list[Task]:
        adapter = self._accounts.adapter(provider)
        if not adapter.can_list:
            raise adapter.not_supported("list")
        return await self._transport.call(
            adapter, adapter.build_list(**filters), adapter.parse_list, kind="list"
        )

    async def delete(self, task: Task) -> None:
        adapter = self._accounts.adapter(task.provider)
        if not adapter.can_delete:
            raise adapter.not_supported("delete")
        await self._transport.call(
            adapter,
            adapter.build_delete(task),
            lambda r: adapter.parse_delete(task, r),
            kind="delete",
        )

    async def aclose(self) -> None:
        if self.stop_watching is not None:
            await self.stop_watching()
        for stream in self._streams.values():
            await stream.aclose()
        await self.task_streams.aclose()
        if self.local is not None:
            self.local.close()
        await self._accounts.aclose()


def _no_watch(provider: str) -> AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()
