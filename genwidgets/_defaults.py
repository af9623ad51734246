"""The process defaults: one `AsyncClient` per event loop, shared by cards, `%gen` and `run`.

Clients are keyed by their loop without keeping a dead loop alive (a `WeakKeyDictionary`; an
`id()` could be reused by the next loop). `configure` replaces the default and closes the client
it replaces, so its connections and local workers do not linger.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._models import Task
from ._runner import LoopRunner

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["cancel_all", "configure", "get_client", "run"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_closing: set[asyncio.Task[None]] = set()  # closes scheduled on a running loop, kept till done


def _loop() -> asyncio.AbstractEventLoop:
    """The running loop (Jupyter's), else this thread's private loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return LoopRunner.shared().loop


def get_client() -> AsyncClient:
    """The process-wide `AsyncClient` of the running (or default) event loop.

    Widgets, the magic and `genwidgets.run` share it, so they share connections, the local
    engine's workers and the event streams.
    """
    from ._client import AsyncClient

    loop = _loop()
    client = _clients.get(loop)
    if client is None or client.closed:
        client = _clients[loop] = AsyncClient()
    return client


def configure(**options: Any) -> AsyncClient:
    """Replace the default client (the one cards, `%gen` and `run` use) with one made from
    `options`, e.g. `configure(journal="data/journal.sqlite", cache_dir="data/blobs")`; the
    client it replaces is closed."""
    from ._client import AsyncClient

    loop = _loop()
    old = _clients.get(loop)
    client = _clients[loop] = AsyncClient(**options)
    if old is not None and not old.closed:
        if loop.is_running():  # a notebook cell: close it on the loop, soon
            closing = loop.create_task(old.aclose())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
        else:
            LoopRunner.shared().run(old.aclose())
    return client


def cancel_all() -> builtins.list[Task]:
    """Cancel every live task of the default clients (cards, gallery, `%gen`, `run`), where the
    provider can cancel. Background cards belong to no cell, so an interrupt leaves them alone."""

    async def go() -> builtins.list[Task]:
        stopped: builtins.list[Task] = []
        for client in builtins.list(_clients.values()):
            if not client.closed:
                stopped += await client.cancel_all()
        return stopped

    return LoopRunner.shared().run(go())


def run(
    model: str,
    *,
    timeout: float | timedelta | None = None,
    dest: str | os.PathLike[str] | None = None,
    **params: Any,
) -> Task:
    """Submit, wait and download, blocking: for scripts and notebook cells.

    In Jupyter it runs on the kernel's loop re-entrantly, so cards keep updating meanwhile.
    Raises `TaskFailed`/`TaskCancelled`/`TaskExpired` when the task does not succeed.
    """

    async def go() -> Task:
        return await get_client().run(model, timeout=timeout, dest=dest, **params)

    return LoopRunner.shared().run(go())
