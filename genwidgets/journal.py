"""The journal: a record of every task, for resume, replay and provenance.

Every snapshot the client sees is recorded (the journal observes the client's tasks): the
request (provider, model, canonical params and their fingerprint), the provider's task id and
polling data, each status change with its time, the outputs with url, sha256, size and local
path, cost and the error. Never an API key: keys are not parameters and adapters keep them out of
`provider_data`.

Replay: a request whose fingerprint already succeeded is answered from the journal and the cache,
with zero provider calls. Resume: tasks that were running when the kernel died are found again
and followed to the end.

A busy journal never holds up the work: records are written in order by a background thread
(`_journal_writer`), lookups see what is still waiting to be written, and `flush`/`close` (also
at exit) wait until everything is on disk, however long another process holds the write lock.

Submits in flight: a submit is noted (`begin_submit`) before it is sent, the provider's answer
is added to the note at once (`answer_submit`, durable: no SQLite lock, no queue), and the note
ends once the task's record is written. A note left by a process that died (kill -9, a crashed
kernel) either has no answer, so the request may have been accepted and billed without its task
id ever reaching the journal and the client refuses to send it again blindly
(`orphaned_submits`); or it has one whose record died in the writer's queue: the next process
adopts that task as if it had been recorded (lookups, `unfinished`, resume) and writes it.

Storage is two small interfaces, so a backend plugs in with `Journal(store=..., notes=...)` and
no change to the client: `JournalStore` keeps the records, `SubmitNotes` keeps the notes. A file
path is SQLite (`_journal_sqlite`) with per-process notes files beside it (`_journal_notes`); a
``postgresql://`` URL is a team's shared database (`_journal_postgres`) where notes are leases
with a heartbeat, since senders are on other machines (`_journal_leases`); `_journal_backends`
tells them apart.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ._journal_backends import locate, open_backend
from ._journal_export import provenance_rows, write_rows
from ._journal_notes import _alive
from ._journal_postgres import nul_free
from ._journal_writer import Writer
from ._models import Status, Task

__all__ = [
    "Journal",
    "JournalStore",
    "SubmitNotes",
    "default_journal_path",
    "export",
    "fingerprint",
]

log = logging.getLogger("genwidgets.journal")

#: How long closing a journal (or leaving the interpreter) waits for records another process's
#: lock still holds back, before it gives up on them with an error in the log.
CLOSE_WAIT_SECONDS = 60.0


class JournalStore(Protocol):
    """Where a journal keeps its records. `write` is called from one thread only, in order;
    lookups from any thread, and they must not wait for a writer's lock."""

    def write(self, snapshots: Sequence[tuple[str, Task]]) -> None:
        """Record `(fingerprint, snapshot)` pairs atomically, or raise."""

    def retryable(self, error: Exception) -> bool:
        """Whether a failed `write` may succeed later (busy, locked, unreachable): then it is
        retried until it lands; otherwise its records are dropped with an error in the log."""

    def get(self, provider: str, task_id: str) -> Task | None: ...
    def tasks(self) -> list[Task]: ...
    def latest(self, fp: str, status: Status | None = None) -> Task | None: ...
    def unfinished(self) -> list[Task]: ...
    def durations(self, provider: str, model: str, limit: int) -> list[float]: ...
    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]: ...
    def close(self) -> None: ...


class SubmitNotes(Protocol):
    """Notes of submits on the wire (see the module docstring)."""

    def begin(self, fp: str, provider: str, model: str) -> str:
        """Note a submit about to be sent: durable when this returns; returns its token."""

    def answered(self, token: str, task: Task) -> None:
        """The provider's first snapshot of the noted submit: durable when this returns."""

    def end(self, token: str) -> None:
        """The note's outcome is recorded (also for a token `adoptable` handed out)."""

    def orphans(self, fp: str) -> list[dict[str, Any]]:
        """Unanswered notes of this request left by dead processes."""

    def adoptable(self) -> list[tuple[str, Task]]:
        """Answered notes left by dead processes (token, task), each handed out once."""

    def forget(self, fp: str) -> None: ...
    def close(self) -> None: ...


def fingerprint(provider: str, model: str, params: Mapping[str, Any]) -> str:
    """The identity of a request: sha256 of canonical JSON of provider, model and params."""
    canonical = json.dumps(
        {"provider": provider, "model": model, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_journal_path() -> Path | str:
    """`GENWIDGETS_JOURNAL` (a file path or a PostgreSQL URL, see `_journal_backends`), else
    `.genwidgets/journal.sqlite` in the working directory (beside the notebook, since Jupyter
    starts kernels in the notebook's folder)."""
    env = os.environ.get("GENWIDGETS_JOURNAL")
    return locate(env) if env else Path.cwd() / ".genwidgets" / "journal.sqlite"


def _unfinished(task: Task) -> bool:
    """Still running at the provider, or succeeded but not yet downloaded."""
    if not task.done:
        return True
    return task.status is Status.SUCCEEDED and any(o.path is None for o in task.outputs)


def _newest(task: Task) -> datetime:
    stamp = task.updated_at
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


class _Shared:
    """One journal's store, notes and writer, shared by every `Journal` on the same file in this
    process, so each sees the others' records before they are written."""

    def __init__(self, store: JournalStore, notes: SubmitNotes, name: str) -> None:
        self.store, self.notes = store, notes
        self.writer: Writer[tuple[str, Task] | str] = Writer(self._commit, name, store.retryable)
        self.lock = threading.Lock()
        self.unwritten: dict[tuple[str, str], tuple[str, Task]] = {}  # newest, by task
        self.unwritten_by_fp: dict[str, set[tuple[str, str]]] = {}  # for lookups in O(1)
        self.last: dict[tuple[str, str], bytes] = {}  # digest of each task's last record
        self.users = 0

    def _commit(self, batch: list[tuple[str, Task] | str]) -> None:
        """Snapshots first, in one transaction, then the notes ended after them (a note never
        goes before the task it announced is on disk). Trims what landed, for a retry."""
        snapshots = [item for item in batch if isinstance(item, tuple)]
        if snapshots:
            self.store.write(snapshots)
            with self.lock:
                for item in snapshots:
                    key = (item[1].provider, item[1].id)
                    if self.unwritten.get(key) is item:
                        del self.unwritten[key]
                        keys = self.unwritten_by_fp[item[0]]
                        keys.discard(key)
                        if not keys:
                            del self.unwritten_by_fp[item[0]]
            batch[:] = [item for item in batch if isinstance(item, str)]
        while batch:
            self.notes.end(batch[0])  # type: ignore[arg-type]
            del batch[0]

    def close(self) -> bool:
        flushed = self.writer.close(CLOSE_WAIT_SECONDS)
        if not flushed:
            log.error(
                "journal %s: %d records could not be written in %g s (locked by another "
                "process?); they are lost",
                self.store,
                self.writer.waiting,
                CLOSE_WAIT_SECONDS,
            )
        self.notes.close()
        self.store.close()
        return flushed


_OPEN: dict[Path | str, _Shared] = {}  # by resolved path or database URL
_OPEN_LOCK = threading.Lock()
_ALL: weakref.WeakSet[Journal] = weakref.WeakSet()


class Journal:
    """A task journal: SQLite at `path` by default, PostgreSQL when `path` is a
    ``postgresql://`` URL, or any `store` and `notes`."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: JournalStore | None = None,
        notes: SubmitNotes | None = None,
    ) -> None:
        self._key: Path | str | None = None
        if store is not None:
            if notes is None:
                raise TypeError("a custom journal store needs its submit notes too")
            self.path = None if path is None else Path(path)
            self._shared = _Shared(store, notes, f"journal {store!r}")
        else:
            where = locate(path) if path is not None else default_journal_path()
            self.path = where if isinstance(where, Path) else None  # None: in PostgreSQL
            self._key = where.resolve() if isinstance(where, Path) else where
            with _OPEN_LOCK:
                shared = _OPEN.get(self._key)
                if shared is None:
                    shared = _OPEN[self._key] = _Shared(*open_backend(self._key))
                shared.users += 1
            self._shared = shared
        self._closed = False
        _ALL.add(self)

    def __repr__(self) -> str:
        return f"<Journal {str(self.path) if self.path else self._shared.store!r}>"

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record so far is written; False if `timeout` passed first."""
        return self._shared.writer.flush(timeout)

    def close(self) -> None:
        """Write what is still waiting, then release the file (the last `Journal` on it)."""
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        if self._key is None:
            shared.close()
            return
        with _OPEN_LOCK:
            shared.users -= 1
            last = shared.users == 0
            if last:
                del _OPEN[self._key]
        if last:
            shared.close()
        else:
            shared.writer.flush(CLOSE_WAIT_SECONDS)

    # ------------------------------------------------------------------ writing
    def record(self, task: Task) -> None:
        """Record a snapshot (the client's observer): queued for the writer, never blocking.
        Replayed snapshots and ones equal to the task's last record are skipped."""
        if task.replayed:
            return
        shared, key = self._shared, (task.provider, task.id)
        text = task.model_dump_json(exclude={"updated_at"})
        if "\\u0000" in text:  # a NUL, which PostgreSQL refuses: U+FFFD on every backend
            task = nul_free(task)
            text = task.model_dump_json(exclude={"updated_at"})
        digest = hashlib.sha1(text.encode()).digest()
        with shared.lock:
            if shared.last.get(key) == digest:
                return
            shared.last[key] = digest
            item = (fingerprint(task.provider, task.model, task.params), task)
            shared.unwritten[key] = item
            shared.unwritten_by_fp.setdefault(item[0], set()).add(key)
        shared.writer.put(item)

    def begin_submit(self, provider: str, model: str, params: Mapping[str, Any]) -> str:
        """Note a submit about to be sent (durable on return); returns the token for
        `end_submit`."""
        return self._shared.notes.begin(fingerprint(provider, model, params), provider, model)

    def answer_submit(self, token: str, task: Task) -> None:
        """The provider accepted the noted submit: keep its first snapshot in the note, durable
        on return, so a hard kill before the record is written loses no task. A failed write
        (disk full) is logged, not raised: the task is accepted and its record still queued."""
        try:
            self._shared.notes.answered(token, task)
        except OSError as exc:
            log.warning("journal: the answer to a submit could not be noted: %s", exc)

    def end_submit(self, token: str, *, at_once: bool = False) -> None:
        """The submit's outcome is known. By default the note ends once every snapshot recorded
        before this call is written (its task's among them); `at_once` when the request
        certainly never reached the provider (there is no task to wait for)."""
        if at_once:
            self._shared.notes.end(token)
        else:
            self._shared.writer.put(token)

    def orphaned_submits(self, fp: str) -> list[dict[str, Any]]:
        """Notes for this request left by processes that died between sending and recording
        (also in the retired `submits` table of an older version's SQLite journal)."""
        old = getattr(self._shared.store, "old_notes", None)
        older = [n for n in old(fp) if not _alive(n)] if old is not None else []
        return self._shared.notes.orphans(fp) + older

    def forget_submits(self, fp: str) -> None:
        """Drop this request's notes (the user chose to submit it again: `fresh=True`)."""
        self._shared.notes.forget(fp)
        forget_old = getattr(self._shared.store, "forget_old_notes", None)
        if forget_old is not None:
            forget_old(fp)

    # ------------------------------------------------------------------ reading
    def _adopt(self) -> None:
        """Tasks a dead process was told of but never recorded (its answered notes): recorded
        now, as if it had, and each note ended once its record is written (at once when the
        store already holds the task)."""
        shared = self._shared
        for token, task in shared.notes.adoptable():
            with shared.lock:
                queued = (task.provider, task.id) in shared.unwritten
            if queued or shared.store.get(task.provider, task.id) is not None:
                shared.writer.put(token)  # ends after whatever is queued for it
                continue
            self.record(task)
            shared.writer.put(token)

    def _unwritten(self, fp: str | None = None) -> list[Task]:
        """Snapshots still waiting to be written (of this request only, given `fp`)."""
        shared = self._shared
        with shared.lock:
            if fp is None:
                return [task for _, task in shared.unwritten.values()]
            return [shared.unwritten[key][1] for key in shared.unwritten_by_fp.get(fp, ())]

    def get(self, provider: str, task_id: str) -> Task | None:
        self._adopt()
        with self._shared.lock:
            pending = self._shared.unwritten.get((provider, task_id))
        return pending[1] if pending else self._shared.store.get(provider, task_id)

    def tasks(self) -> list[Task]:
        """Every task recorded (waits for the records still being written)."""
        self._adopt()
        self.flush(CLOSE_WAIT_SECONDS)
        return self._shared.store.tasks()

    def latest(self, fp: str, status: Status | None = None) -> Task | None:
        """The newest task with this request fingerprint (and status, if given)."""
        self._adopt()
        mine = [t for t in self._unwritten(fp) if status is None or t.status is status]
        return max(mine, key=_newest) if mine else self._shared.store.latest(fp, status)

    def durations(self, provider: str, model: str, limit: int = 25) -> list[float]:
        """`finished_at - created_at` of this model's latest succeeded tasks, oldest first: the
        provider's own times where its adapter reads them, else when the client saw them (to time
        the first polls of a new task before this process has seen any finish; `_tracking`)."""
        return self._shared.store.durations(provider, model, limit)

    def unfinished(self) -> list[Task]:
        """Tasks still running at the provider, or succeeded but not yet downloaded."""
        self._adopt()
        pending = {(t.provider, t.id): t for t in self._unwritten()}
        found = [t for t in self._shared.store.unfinished() if (t.provider, t.id) not in pending]
        found += [t for t in pending.values() if _unfinished(t)]
        return found

    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]:
        self.flush(CLOSE_WAIT_SECONDS)
        return self._shared.store.status_changes(provider, task_id)

    # ------------------------------------------------------------------ provenance
    def provenance(self) -> Iterator[dict[str, Any]]:
        """One row per output file: its sha256 and everything that produced it."""
        return provenance_rows(self.tasks(), fingerprint)

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the provenance as JSON (`.json`) or CSV (any other suffix)."""
        return write_rows(list(self.provenance()), Path(path))

def export(path: str | os.PathLike[str], journal: str | os.PathLike[str] | None = None) -> Path:
    """Export the provenance of the (default) journal to JSON or CSV: each output's sha256
    mapped to its request, provider, model, seed and timings."""
    book = Journal(journal)
    try:
        return book.export(path)
    finally:
        book.close()


@atexit.register
def _close_all() -> None:
    """Leaving the interpreter: write what every open journal still holds."""
    for journal in list(_ALL):
        journal.close()
