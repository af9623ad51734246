"""Running coroutines from blocking code, including inside Jupyter's already-running loop.

All patching of asyncio for re-entrancy lives here (nest-asyncio2, the maintained line of
nest-asyncio that ipykernel 7.4 itself depends on). Outside a running loop nothing is patched: a
private loop runs the coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["LoopRunner"]

#: One private loop per thread that has no running loop, by thread id. A running loop (Jupyter's)
#: is wrapped afresh on each call instead: caching it would keep it alive after it ends.
_private: dict[int, LoopRunner] = {}
_lock = threading.Lock()


class LoopRunner:
    """Runs coroutines to completion on one loop: the caller's running loop, or a private one."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = asyncio.new_event_loop()
                self._owned = True
            else:
                self._owned = False
        else:
            self._owned = False
        self.loop = loop

    @classmethod
    def shared(cls) -> LoopRunner:
        """The runner of the running loop (Jupyter), or one private loop per thread."""
        try:
            return cls(asyncio.get_running_loop())
        except RuntimeError:
            pass
        key = threading.get_ident()
        with _lock:
            runner = _private.get(key)
            if runner is None or runner.loop.is_closed():
                runner = _private[key] = cls()
        return runner

    def call(self, factory: Callable[[], T]) -> T:
        return factory()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run to completion. An interrupt (Ctrl-C, Jupyter's Stop) cancels and drains the inner
        task before re-raising, so nothing keeps polling on the kernel's loop behind the user."""
        loop = self.loop
        if loop.is_running():
            import nest_asyncio2

            nest_asyncio2.apply(loop)
        task = asyncio.ensure_future(awaitable, loop=loop)
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):  # draining; the original error re-raises
                    loop.run_until_complete(task)
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """A blocking iterator over an async iterator."""
        try:
            while True:
                try:
                    yield self.run(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def close(self) -> None:
        if self._owned and not self.loop.is_closed():
            self.loop.close()


def _anext(agen: AsyncIterator[T]) -> Coroutine[Any, Any, T]:
    async def step() -> T:
        return await agen.__anext__()

    return step()
