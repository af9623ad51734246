"""The journal: a SQLite record of every task, for resume, replay and provenance.

Every snapshot the client sees is recorded: the request (provider, model, canonical params and
their fingerprint), the provider's task id and polling data, each status change with its time,
the outputs with url, sha256, size and local path, cost and the error. Never an API key: keys are
not parameters and adapters keep them out of `provider_data`.

Replay: a request whose fingerprint already succeeded is answered from the journal and the cache,
with zero provider calls. Resume: tasks that were running when the kernel died are found again
and followed to the end.

Submits in flight: a submit is noted (`begin_submit`) before it is sent and the note removed once
the provider's answer is recorded. A note left by a process that died in between (kill -9, a
crashed kernel) means the request may have been accepted and billed without its task id ever
reaching the journal; the client then refuses to send it again blindly (`orphaned_submits`).

Two kernels may write at once: WAL mode, a busy timeout, and short transactions.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ._models import Output, Status, Task

__all__ = ["Journal", "default_journal_path", "export", "fingerprint"]

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
CREATE TABLE IF NOT EXISTS submits (
    token TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submits_fingerprint ON submits (fingerprint);
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
    PRIMARY KEY (provider, id, idx)
);
"""

_TERMINAL = tuple(s.value for s in Status if s.is_terminal)
#: This process, as the owner of its submit notes (a pid alone can be reused after a restart).
_PROCESS = uuid.uuid4().hex
_HOST = socket.gethostname()


def _alive(host: str, pid: int, process: str) -> bool:
    """Whether the process that wrote a submit note may still be running."""
    if process == _PROCESS:
        return True
    if host != _HOST:
        return True  # another machine: we cannot tell, so assume it still works on it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()  # our pid but another process token: a reused pid, long dead


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


def default_journal_path() -> Path:
    """`GENWIDGETS_JOURNAL`, else `.genwidgets/journal.sqlite` in the working directory (beside
    the notebook, since Jupyter starts kernels in the notebook's folder)."""
    env = os.environ.get("GENWIDGETS_JOURNAL")
    return Path(env) if env else Path.cwd() / ".genwidgets" / "journal.sqlite"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Journal:
    """A task journal in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._last: dict[tuple[str, str], bytes] = {}  # digest of each task's last record

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r}>"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ writing
    def record(self, task: Task) -> None:
        """Record a snapshot: upsert the task and its outputs, append a status change if any."""
        if task.replayed:
            return
        key = (task.provider, task.id)
        digest = hashlib.sha1(task.model_dump_json(exclude={"updated_at"}).encode()).digest()
        if self._last.get(key) == digest:
            return
        self._last[key] = digest
        fp = fingerprint(task.provider, task.model, task.params)
        with self._lock, self._db:
            previous = self._db.execute(
                "SELECT status FROM tasks WHERE provider=? AND id=?", key
            ).fetchone()
            self._db.execute(
                """INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT (provider, id) DO UPDATE SET
                    status=excluded.status, provider_status=excluded.provider_status,
                    error=excluded.error, started_at=coalesce(excluded.started_at, started_at),
                    finished_at=coalesce(excluded.finished_at, finished_at),
                    updated_at=excluded.updated_at, cost=coalesce(excluded.cost, cost),
                    usage=coalesce(excluded.usage, usage), provider_data=excluded.provider_data""",
                (
                    task.provider,
                    task.id,
                    task.model,
                    fp,
                    json.dumps(task.params, sort_keys=True, default=str),
                    task.status.value,
                    task.provider_status,
                    task.error,
                    _iso(task.created_at),
                    _iso(task.started_at),
                    _iso(task.finished_at),
                    _iso(task.updated_at),
                    task.cost,
                    json.dumps(task.usage) if task.usage is not None else None,
                    json.dumps(task.provider_data, default=str),
                ),
            )
            if previous is None or previous["status"] != task.status.value:
                self._db.execute(
                    "INSERT INTO status_changes VALUES (?,?,?,?,?)",
                    (*key, task.status.value, task.provider_status, _iso(task.updated_at)),
                )
            for index, output in enumerate(task.outputs):
                self._db.execute(
                    """INSERT INTO outputs VALUES (?,?,?,?,?,?,?,?,?,?)
                    ON CONFLICT (provider, id, idx) DO UPDATE SET
                        url=coalesce(excluded.url, url),
                        content_type=coalesce(excluded.content_type, content_type),
                        size=coalesce(excluded.size, size),
                        sha256=coalesce(excluded.sha256, sha256),
                        path=coalesce(excluded.path, path), text=coalesce(excluded.text, text)""",
                    (
                        *key,
                        index,
                        output.kind,
                        output.url,
                        output.content_type,
                        output.size,
                        output.sha256,
                        str(output.path) if output.path else None,
                        output.text,
                    ),
                )

    def begin_submit(self, provider: str, model: str, params: Mapping[str, Any]) -> str:
        """Note a submit about to be sent; returns the token for `end_submit`."""
        token = uuid.uuid4().hex
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO submits VALUES (?,?,?,?,?,?,?,?)",
                (
                    token,
                    fingerprint(provider, model, params),
                    provider,
                    model,
                    _HOST,
                    os.getpid(),
                    _PROCESS,
                    datetime.now().astimezone().isoformat(),
                ),
            )
        return token

    def end_submit(self, token: str) -> None:
        """The submit's outcome is known (its task is recorded, or it was refused)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM submits WHERE token=?", (token,))

    def orphaned_submits(self, fp: str) -> list[dict[str, Any]]:
        """Notes for this request left by processes that died between sending and recording."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM submits WHERE fingerprint=?", (fp,)).fetchall()
        return [dict(row) for row in rows if not _alive(row["host"], row["pid"], row["process"])]

    def forget_submits(self, fp: str) -> None:
        """Drop this request's notes (the user chose to submit it again: `fresh=True`)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM submits WHERE fingerprint=?", (fp,))

    # ------------------------------------------------------------------ reading
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
            )
            for o in self._db.execute(
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
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM tasks WHERE provider=? AND id=?", (provider, task_id)
            ).fetchone()
            return self._task(row) if row else None

    def tasks(self) -> list[Task]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM tasks ORDER BY created_at, rowid").fetchall()
            return [self._task(row) for row in rows]

    def latest(self, fp: str, status: Status | None = None) -> Task | None:
        """The newest task with this request fingerprint (and status, if given)."""
        query = "SELECT * FROM tasks WHERE fingerprint=?"
        args: tuple[Any, ...] = (fp,)
        if status is not None:
            query += " AND status=?"
            args += (status.value,)
        with self._lock:
            row = self._db.execute(query + " ORDER BY updated_at DESC LIMIT 1", args).fetchone()
            return self._task(row) if row else None

    def durations(self, provider: str, model: str, limit: int = 25) -> list[float]:
        """Seconds from creation to finish of this model's latest succeeded tasks (to time the
        first poll of a new one before this process has seen any finish)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT created_at, finished_at FROM tasks WHERE provider=? AND model=? AND "
                "status='succeeded' AND created_at IS NOT NULL AND finished_at IS NOT NULL "
                "ORDER BY updated_at DESC LIMIT ?",
                (provider, model, limit),
            ).fetchall()
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

    def unfinished(self) -> list[Task]:
        """Tasks still running at the provider, or succeeded but not yet downloaded."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM tasks WHERE status NOT IN ({','.join('?' * len(_TERMINAL))}) "
                "OR (status='succeeded' AND EXISTS (SELECT 1 FROM outputs o WHERE "
                "o.provider=tasks.provider AND o.id=tasks.id AND o.path IS NULL)) "
                "ORDER BY created_at, rowid",
                _TERMINAL,
            ).fetchall()
            return [self._task(row) for row in rows]

    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return [
                (row["status"], row["at"])
                for row in self._db.execute(
                    "SELECT status, at FROM status_changes WHERE provider=? AND id=? "
                    "ORDER BY rowid",
                    (provider, task_id),
                )
            ]

    # ------------------------------------------------------------------ provenance
    def provenance(self) -> Iterator[dict[str, Any]]:
        """One row per output file: its sha256 and everything that produced it."""
        for task in self.tasks():
            for index, output in enumerate(task.outputs):
                yield {
                    "sha256": output.sha256,
                    "path": str(output.path) if output.path else None,
                    "kind": output.kind,
                    "size": output.size,
                    "output_index": index,
                    "provider": task.provider,
                    "model": task.model,
                    "task_id": task.id,
                    "status": task.status.value,
                    "seed": task.params.get("seed"),
                    "prompt": task.params.get("prompt"),
                    "params": json.dumps(task.params, sort_keys=True, default=str),
                    "created_at": _iso(task.created_at),
                    "started_at": _iso(task.started_at),
                    "finished_at": _iso(task.finished_at),
                    "cost": task.cost,
                    "fingerprint": fingerprint(task.provider, task.model, task.params),
                }

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the provenance as JSON (`.json`) or CSV (any other suffix)."""
        target = Path(path)
        rows = list(self.provenance())
        if target.suffix.lower() == ".json":
            target.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
        else:
            fields = list(rows[0]) if rows else ["sha256"]
            with target.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        return target


def export(path: str | os.PathLike[str], journal: str | os.PathLike[str] | None = None) -> Path:
    """Export the provenance of the (default) journal to JSON or CSV: each output's sha256
    mapped to its request, provider, model, seed and timings."""
    book = Journal(journal)
    try:
        return book.export(path)
    finally:
        book.close()
