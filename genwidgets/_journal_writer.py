"""A journal's writes, in order, on one background thread, so a busy journal never holds up work.

Another kernel may hold the journal's write lock for seconds (a long transaction, a slow disk).
`put` only appends to a queue; the thread commits what has queued in batches and, when the store
is busy or unreachable (`retryable`), keeps the batch and tries again until it lands: `flush`
waits until everything put so far is committed, and `close` (also run at exit) flushes. A batch
that can never land (a read-only file, a bug) is dropped with an error in the log rather than
retried for ever; its submit notes stay open, so a later run asks before resending.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Writer"]

log = logging.getLogger("genwidgets.journal")

T = TypeVar("T")

#: Most items committed in one transaction (a batch of 10,000 tasks still commits often).
MAX_BATCH = 500
#: Retry pacing while the store refuses a batch: from the first to the longest pause, seconds.
RETRY_FIRST, RETRY_MAX = 0.05, 1.0


class Writer(Generic[T]):
    """Commits items in the order they were put, off the caller's thread."""

    def __init__(
        self,
        commit: Callable[[list[T]], None],
        name: str,
        retryable: Callable[[Exception], bool] = lambda error: True,
    ) -> None:
        self._commit = commit  # commits a batch, or raises
        self._retryable = retryable  # whether that error passes (busy, locked, unreachable)
        self._name = name
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._put = 0  # items put so far
        self._done = 0  # items committed so far
        self._closing = False
        self._thread: threading.Thread | None = None
        _WRITERS.add(self)

    @property
    def waiting(self) -> int:
        """Items put but not yet committed."""
        with self._cond:
            return self._put - self._done

    def put(self, item: T) -> None:
        """Queue an item; never blocks on the store."""
        with self._cond:
            self._queue.append(item)
            self._put += 1
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is committed; False if `timeout` passed first."""
        with self._cond:
            target = self._put
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread (a later `put` starts a new one)."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if flushed and thread is not None:
            thread.join(timeout)
        return flushed

    def _after_fork(self) -> None:
        """In a forked child: the thread did not come along, and its lock may be held."""
        self._cond = threading.Condition()
        self._thread = None
        if self._queue:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    self._thread = None
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            size = len(batch)  # `commit` may trim what landed, to retry only the rest
            self._commit_until_it_lands(batch)
            with self._cond:
                self._done += size
                self._cond.notify_all()

    def _commit_until_it_lands(self, batch: list[T]) -> None:
        pause, failures = RETRY_FIRST, 0
        while True:
            try:
                self._commit(batch)
            except Exception as exc:
                if not self._retryable(exc):
                    log.error("%s: %d records cannot be written: %r", self._name, len(batch), exc)
                    return
                failures += 1  # busy, locked, unreachable: keep the batch, try again
                if failures == 1:
                    log.warning(
                        "%s: %s; %d records wait and will be written once it is free",
                        self._name,
                        exc,
                        self.waiting,
                    )
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            if failures:
                log.info("%s: written again after %d attempts", self._name, failures + 1)
            return


_WRITERS: weakref.WeakSet[Writer[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
