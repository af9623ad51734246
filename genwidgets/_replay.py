"""What the journal already knows about a request: replay it, re-attach it, or refuse to resend it.

The client asks this module before it sends anything (see `AsyncClient.submit`):

- replay: a request that already succeeded, with its files still in the cache (or in the team's
  object store), is answered from the journal with no provider call (`GENWIDGETS_REPLAY`: auto,
  off, require);
- re-attach: one still running from an earlier kernel is followed instead of submitted again;
- orphaned submits: a request an earlier process died while sending is refused (it may have been
  accepted and billed); the submit note that makes this possible is `SubmitNote`.

It is also the client's only way to the journal: `record` is registered as the client's
observer of task snapshots (the journal writes them in the background), and the lookups for
unfinished tasks and for the durations that time first polls go through here. `aclose` waits
until every record is written.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Container
from pathlib import Path
from types import TracebackType
from typing import Any

from ._cache import Cache
from ._config import journal_off
from ._exceptions import ReplayMissing, SubmitUncertain
from ._journal_backends import names_database
from ._models import Output, Status, Task
from .journal import CLOSE_WAIT_SECONDS, Journal, fingerprint

__all__ = ["JournalSetting", "Replay", "SubmitNote"]

JournalSetting = Journal | str | os.PathLike[str] | bool | None


class Replay:
    """The client's view of the journal: lookups before a submit, and the records after."""

    def __init__(self, cache: Cache, journal: JournalSetting, mode: str) -> None:
        self.cache = cache
        self.mode = mode  # auto, off or require (checked by `_config.replay_mode`)
        self._setting = journal
        self._journal: Journal | None = None
        if names_database(journal):
            _ = self.journal  # a team journal connects now: unreachable is an error at start

    @property
    def journal(self) -> Journal | None:
        """The task journal (opened on first use); None when disabled."""
        if self._journal is None:
            setting = self._setting
            if setting is False or (setting is None and journal_off()):
                return None
            if isinstance(setting, Journal):
                self._journal = setting
            else:
                path = None if setting in (None, True) else setting
                self._journal = Journal(path)  # type: ignore[arg-type]
        return self._journal

    # ------------------------------------------------------------------ before a submit
    async def answer(
        self,
        provider: str,
        model: str,
        params: dict[str, Any],
        *,
        fresh: bool,
        following: Container[tuple[str, str]] = (),
    ) -> Task | None:
        """`recorded`, off the event loop when a replay may fetch its files from the store."""
        if self.cache.store is None:
            return self.recorded(provider, model, params, fresh=fresh, following=following)
        _ = self.journal  # opened here, never by two worker threads at once
        return await asyncio.to_thread(
            self.recorded, provider, model, params, fresh=fresh, following=following
        )

    def recorded(
        self,
        provider: str,
        model: str,
        params: dict[str, Any],
        *,
        fresh: bool,
        following: Container[tuple[str, str]] = (),
        fetch: bool = True,
    ) -> Task | None:
        """The recorded answer to this request, if replay applies: a success with its files in
        the cache (marked `replayed`), or a task an earlier kernel submitted that is still
        running and not already in `following` (to be followed, not sent again).

        `fetch=False` (a cost plan) fetches nothing from the store: a file recorded there
        counts as at hand, and the answer's outputs may then have no local path."""
        journal = self.journal
        if fresh or self.mode == "off":
            return None
        if journal is None:
            if self.mode == "require":
                raise ReplayMissing("GENWIDGETS_REPLAY=require but the journal is off")
            return None
        fp = fingerprint(provider, model, params)
        done = journal.latest(fp, Status.SUCCEEDED)
        outputs = self.cached_outputs(done, fetch) if done is not None else None
        if done is not None and outputs is not None:
            return done.evolve(replayed=True, outputs=outputs)
        if self.mode == "require":
            raise ReplayMissing(
                "GENWIDGETS_REPLAY=require but this request has no recorded success with its "
                "files in the cache; run it once with replay on (auto) to record it",
                provider=provider,
                model=model,
            )
        pending = journal.latest(fp)
        if (
            pending is not None
            and not pending.done
            and (provider, pending.id) not in following
            and provider != "local"  # local work dies with its process: run it again
        ):
            return pending  # submitted by an earlier kernel and still running: follow it
        return None

    def cached_outputs(self, task: Task, fetch: bool = True) -> tuple[Output, ...] | None:
        """The task's outputs with paths into this client's cache, or None if one is missing.

        Files are found by sha256 when the recorded path is gone, so a journal and cache folder
        committed beside a notebook replay on any machine, wherever the checkout lives; with a
        team object store, a file this cache misses is fetched from it (once)."""
        found = []
        for output in task.outputs:
            if output.path is not None and Path(output.path).is_file():
                found.append(output)
                continue
            if not fetch and output.store_url and self.cache.store is not None:
                path = self.cache.find(output.sha256) if output.sha256 else None
                found.append(output if path is None else output.model_copy(update={"path": path}))
                continue
            path = self.cache.fetch(output)
            if path is None:
                return None
            found.append(output.model_copy(update={"path": path}))
        return tuple(found) if found else None

    def refuse_orphaned(
        self, provider: str, model: str, params: dict[str, Any], fresh: bool
    ) -> None:
        """Refuse to resend a request an earlier process died while sending (see `journal`):
        its answer was never recorded, so it may have been accepted and billed. `fresh=True`
        sends it anyway."""
        journal = self.journal
        if journal is None or provider == "local":  # local work dies with its process
            return
        fp = fingerprint(provider, model, params)
        if fresh:
            journal.forget_submits(fp)
            return
        orphans = journal.orphaned_submits(fp)
        if orphans:
            first = orphans[0]
            raise SubmitUncertain(
                f"An earlier process (pid {first['pid']}, {first['started_at']}) was sending this "
                "exact request when it stopped, before the provider's answer was recorded: it "
                "may have been accepted and billed. It is not sent again; pass fresh=True "
                "(%gen --fresh) to submit it anyway",
                provider=provider,
                model=model,
            )

    def submit_note(self, provider: str, model: str, params: dict[str, Any]) -> SubmitNote:
        """The note for one submit, as a context manager (see `SubmitNote`)."""
        journal = None if provider == "local" else self.journal
        return SubmitNote(journal, provider, model, params)

    # ------------------------------------------------------------------ records
    def record(self, task: Task) -> None:
        """The client's observer: record a snapshot (queued, never blocking; the journal skips
        replayed and unchanged ones)."""
        journal = self.journal
        if journal is not None:
            journal.record(task)

    async def aclose(self) -> None:
        """Wait (off the event loop) until every record is written; close the journal if this
        client opened it (one given to the client stays open for its owner)."""
        journal = self._journal
        if journal is None:
            return
        if isinstance(self._setting, Journal):
            await asyncio.to_thread(journal.flush, CLOSE_WAIT_SECONDS)
        else:
            self._journal = None
            await asyncio.to_thread(journal.close)

    def unfinished(self) -> list[Task]:
        """Tasks the journal holds as running, or succeeded but not downloaded."""
        journal = self.journal
        return [] if journal is None else journal.unfinished()

    def durations(self, provider: str, model: str, limit: int) -> list[float]:
        """Seconds the latest succeeded tasks of this model took, oldest first."""
        journal = self.journal
        return [] if journal is None else journal.durations(provider, model, limit)


class SubmitNote:
    """The journal's note that one submit is on the wire, kept only while its outcome is unknown.

    `await sending()` right before the bytes go writes the note (on disk when it returns); the
    transport calls `clear()` when the request certainly never reached the server (a refused
    connection, a 429), which ends the note at once, so a process stopped while it could not even
    connect leaves nothing behind; the next attempt's `sending()` notes it again. `answered(task)`
    as soon as the provider accepted it puts the task in the note (on disk when it returns: the
    journal's record of it is written later, in the background, and a hard kill must not lose a
    task the provider bills for). Leaving the `with` block ends the note after the task's record
    is written, except on `SubmitUncertain`: then the request may have been accepted and billed,
    and a later run must not resend it blindly either.
    """

    def __init__(
        self, journal: Journal | None, provider: str, model: str, params: dict[str, Any]
    ) -> None:
        self._journal = journal
        self._request = (provider, model, params)
        self._token: str | None = None
        #: When the (last) submit request left (`time.monotonic()`; None: none did): the
        #: provider's clock for the task starts about then, not when its answer came back (a
        #: `Prefer: wait` create is held for seconds), so its polls are timed from here.
        self.sent_at: float | None = None

    async def sending(self) -> None:
        journal = self._journal
        if journal is not None and self._token is None:
            # Off the event loop (an fsync, or a database round trip), shielded: a note that
            # lands after its submit was cancelled is ended at once (nothing was sent).
            writing = asyncio.ensure_future(
                asyncio.to_thread(journal.begin_submit, *self._request)
            )
            try:
                self._token = await asyncio.shield(writing)
            except asyncio.CancelledError:
                writing.add_done_callback(self._never_sent)
                raise
        self.sent_at = time.monotonic()

    def _never_sent(self, writing: asyncio.Future[str]) -> None:
        if self._journal is not None and not writing.cancelled() and not writing.exception():
            self._journal.end_submit(writing.result(), at_once=True)

    def clear(self) -> None:
        self._end(at_once=True)

    async def answered(self, task: Task) -> None:
        """Shielded: once the provider took the task, its note is kept even if the caller is
        cancelled meanwhile."""
        if self._journal is not None and self._token is not None:
            await asyncio.shield(
                asyncio.to_thread(self._journal.answer_submit, self._token, task)
            )

    def _end(self, at_once: bool) -> None:
        if self._journal is not None and self._token is not None:
            self._journal.end_submit(self._token, at_once=at_once)
        self._token = None

    def __enter__(self) -> SubmitNote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(exc, SubmitUncertain):
            self._end(at_once=False)
