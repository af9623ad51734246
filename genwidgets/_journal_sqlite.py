"""The SQLite store behind `Journal`: one file, a versioned schema, reads that never write.

Reads go through their own connection, which only ever runs SELECTs, so a lookup before a submit
never waits for the write lock (WAL readers do not block on writers) and a replay of a journal
committed beside a notebook leaves the file exactly as it was. (It is opened read-write, not
`mode=ro`, only so that closing it removes the -wal and -shm files SQLite adds beside a WAL
journal; a write-protected file is opened read-only.) Only `write` creates or migrates the
schema, from the journal's background writer thread.

Schema versions (`PRAGMA user_version`): 0 is every journal written before versions existed (the
same tables, sometimes with the retired `submits` table of submit notes, still read for the
notes of a process that died before its upgrade: `old_notes`); 2 added nothing to the tables;
3 (this one) adds `outputs.store_url`, the team object store's copy of a file (`_store`), as
the last column: a 0 or 2 journal gains it (`ALTER TABLE`) on its first write, and reads of a
journal not yet written by version 3 see None. A journal written by a newer version is refused
rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError
from ._models import Output, Status, Task

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "iso"]

SCHEMA_VERSION = 3
#: How long one write waits for another process's lock before the writer thread retries (the
#: wait is on that thread, never on the caller's).
_BUSY_SECONDS = 5.0
#: Reads wait at most this long for a writer that is committing (WAL readers rarely wait at all).
_READ_BUSY_SECONDS = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_status TEXT,
    error TEXT,
    created_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL,
    cost REAL,
    usage TEXT,
    provider_data TEXT NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE INDEX IF NOT EXISTS tasks_fingerprint ON tasks (fingerprint, status);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS status_changes (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_status TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_changes_task ON status_changes (provider, id);
CREATE TABLE IF NOT EXISTS outputs (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL,
    url TEXT,
    content_type TEXT,
    size INTEGER,
    sha256 TEXT,
    path TEXT,
    text TEXT,
    store_url TEXT,
    PRIMARY KEY (provider, id, idx)
);
"""

_UPSERT_TASK = """INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (provider, id) DO UPDATE SET
    status=excluded.status, provider_status=excluded.provider_status,
    error=excluded.error, started_at=coalesce(excluded.started_at, started_at),
    finished_at=coalesce(excluded.finished_at, finished_at),
    updated_at=excluded.updated_at, cost=coalesce(excluded.cost, cost),
    usage=coalesce(excluded.usage, usage), provider_data=excluded.provider_data"""

_UPSERT_OUTPUT = """INSERT INTO outputs VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (provider, id, idx) DO UPDATE SET
    url=coalesce(excluded.url, url),
    content_type=coalesce(excluded.content_type, content_type),
    size=coalesce(excluded.size, size),
    sha256=coalesce(excluded.sha256, sha256),
    path=coalesce(excluded.path, path), text=coalesce(excluded.text, text),
    store_url=coalesce(excluded.store_url, store_url)"""

_TERMINAL = tuple(s.value for s in Status if s.is_terminal)
_UNFINISHED = (
    f"SELECT * FROM tasks WHERE status NOT IN ({','.join('?' * len(_TERMINAL))}) "
    "OR (status='succeeded' AND EXISTS (SELECT 1 FROM outputs o WHERE "
    "o.provider=tasks.provider AND o.id=tasks.id AND o.path IS NULL)) "
    "ORDER BY created_at, rowid"
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _task_row(fp: str, task: Task) -> tuple[Any, ...]:
    return (
        task.provider,
        task.id,
        task.model,
        fp,
        json.dumps(task.params, sort_keys=True, default=str),
        task.status.value,
        task.provider_status,
        task.error,
        iso(task.created_at),
        iso(task.started_at),
        iso(task.finished_at),
        iso(task.updated_at),
        task.cost,
        json.dumps(task.usage) if task.usage is not None else None,
        json.dumps(task.provider_data, default=str),
    )


def _output_row(task: Task, index: int, output: Output) -> tuple[Any, ...]:
    path = str(output.path) if output.path else None
    return (task.provider, task.id, index, output.kind, output.url, output.content_type,
            output.size, output.sha256, path, output.text, output.store_url)  # fmt: skip


def _check_version(db: sqlite3.Connection, path: Path) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"The journal {str(path)!r} has schema version {version}, newer than this "
            f"genwidgets understands ({SCHEMA_VERSION}): upgrade genwidgets to use it"
        )
    return version


def _add_store_column(db: sqlite3.Connection) -> None:
    """Version 3's column, on a journal created before it (two processes may race here)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outputs)")}
    if "store_url" not in columns:
        try:
            db.execute("ALTER TABLE outputs ADD COLUMN store_url TEXT")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


class SQLiteStore:
    """A journal's records in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None  # the writer thread's own
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"

    # ------------------------------------------------------------------ writing
    def _write_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=_BUSY_SECONDS, check_same_thread=False)
            try:
                if _check_version(db, self.path) < SCHEMA_VERSION:
                    db.execute("PRAGMA journal_mode=WAL")  # two kernels may write at once
                    with db:
                        db.executescript(_SCHEMA)
                        _add_store_column(db)
                        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                db.close()
                raise
            self._writer = db
        return self._writer

    def write(self, snapshots: Sequence[tuple[str, Task]]) -> None:
        """Record `(fingerprint, snapshot)` pairs in order, in one transaction: upsert each task
        and its outputs, and append a status change when the status moved. Safe to repeat after
        a failure (the transaction either happened or not)."""
        db = self._write_connection()
        with db:
            for fp, task in snapshots:
                key = (task.provider, task.id)
                previous = db.execute(
                    "SELECT status FROM tasks WHERE provider=? AND id=?", key
                ).fetchone()
                db.execute(_UPSERT_TASK, _task_row(fp, task))
                if previous is None or previous[0] != task.status.value:
                    db.execute(
                        "INSERT INTO status_changes VALUES (?,?,?,?,?)",
                        (*key, task.status.value, task.provider_status, iso(task.updated_at)),
                    )
                db.executemany(
                    _UPSERT_OUTPUT,
                    [_output_row(task, i, output) for i, output in enumerate(task.outputs)],
                )

    def retryable(self, error: Exception) -> bool:
        """Another process holds the lock (SQLITE_BUSY/LOCKED): it will let go."""
        return isinstance(error, sqlite3.OperationalError) and (
            "locked" in str(error) or "busy" in str(error)
        )

    # ------------------------------------------------------------------ reading
    def _read(self, query: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a query on the reading connection; none while the file or table is missing
        (nothing was written yet). Never creates, migrates or locks the file for writing."""
        with self._read_lock:
            if self._reader is None:
                if not self.path.is_file():
                    return []
                db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=rw",  # rw: never creates the file
                    uri=True,
                    timeout=_READ_BUSY_SECONDS,
                    check_same_thread=False,
                )
                db.row_factory = sqlite3.Row
                try:
                    _check_version(db, self.path)
                except BaseException:
                    db.close()
                    raise
                self._reader = db
            try:
                return self._reader.execute(query, tuple(args)).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

    def _tasks(self, rows: list[sqlite3.Row]) -> list[Task]:
        return [self._task(row) for row in rows]

    def _task(self, row: sqlite3.Row) -> Task:
        outputs = tuple(
            Output(
                kind=o["kind"],
                url=o["url"],
                content_type=o["content_type"],
                size=o["size"],
                sha256=o["sha256"],
                path=Path(o["path"]) if o["path"] else None,
                text=o["text"],
                store_url=o["store_url"] if "store_url" in o.keys() else None,  # noqa: SIM118
            )
            for o in self._read(
                "SELECT * FROM outputs WHERE provider=? AND id=? ORDER BY idx",
                (row["provider"], row["id"]),
            )
        )
        return Task(
            id=row["id"],
            provider=row["provider"],
            model=row["model"],
            status=Status(row["status"]),
            provider_status=row["provider_status"],
            error=row["error"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            cost=row["cost"],
            usage=json.loads(row["usage"]) if row["usage"] else None,
            params=json.loads(row["params"]),
            provider_data=json.loads(row["provider_data"]),
            outputs=outputs,
        )

    def get(self, provider: str, task_id: str) -> Task | None:
        rows = self._read("SELECT * FROM tasks WHERE provider=? AND id=?", (provider, task_id))
        return self._task(rows[0]) if rows else None

    def tasks(self) -> list[Task]:
        return self._tasks(self._read("SELECT * FROM tasks ORDER BY created_at, rowid"))

    def latest(self, fp: str, status: Status | None = None) -> Task | None:
        query, args = "SELECT * FROM tasks WHERE fingerprint=?", [fp]
        if status is not None:
            query += " AND status=?"
            args.append(status.value)
        rows = self._read(query + " ORDER BY updated_at DESC LIMIT 1", args)
        return self._task(rows[0]) if rows else None

    def unfinished(self) -> list[Task]:
        return self._tasks(self._read(_UNFINISHED, _TERMINAL))

    def durations(self, provider: str, model: str, limit: int) -> list[float]:
        rows = self._read(
            "SELECT created_at, finished_at FROM tasks WHERE provider=? AND model=? AND "
            "status='succeeded' AND created_at IS NOT NULL AND finished_at IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT ?",
            (provider, model, limit),
        )
        seconds = []
        for row in rows:
            try:
                span = datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(
                    row["created_at"]
                )
            except (TypeError, ValueError):
                continue
            if span.total_seconds() > 0:
                seconds.append(span.total_seconds())
        return seconds[::-1]

    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]:
        rows = self._read(
            "SELECT status, at FROM status_changes WHERE provider=? AND id=? ORDER BY rowid",
            (provider, task_id),
        )
        return [(row["status"], row["at"]) for row in rows]

    def old_notes(self, fp: str) -> list[dict[str, Any]]:
        """Submit notes of this request in the retired `submits` table (written before notes
        moved to files); a live process's are ended by it, a dead one's stay until forgotten."""
        return [dict(row) for row in self._read("SELECT * FROM submits WHERE fingerprint=?", [fp])]

    def forget_old_notes(self, fp: str) -> None:
        """Delete this request's notes from the retired table (`fresh=True` only, so waiting
        for another process's lock here holds up nothing else)."""
        if self.old_notes(fp):
            db = sqlite3.connect(self.path, timeout=_BUSY_SECONDS)
            try:
                with db:
                    db.execute("DELETE FROM submits WHERE fingerprint=?", (fp,))
            finally:
                db.close()

    def close(self) -> None:
        with self._read_lock:
            for db in (self._reader, self._writer):
                if db is not None:
                    db.close()
            self._reader = self._writer = None
