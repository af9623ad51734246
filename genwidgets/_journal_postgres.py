"""The PostgreSQL store behind `Journal`: a team's shared journal, same semantics as SQLite's.

`GENWIDGETS_JOURNAL=postgresql://user@host:port/db` puts the records here (the submit notes
become leases, `_journal_leases`). Each task is one row holding the whole snapshot as JSONB (so
every `Task` and `Output` field is kept, including fields a later release adds), with the
columns lookups need beside it (fingerprint, status, times); outputs are one row each, merged
field by field; status changes are appended. The merge rules are SQLite's: a later snapshot
replaces a task's fields except that the start and finish times, cost and usage, and every
output field, keep their recorded value when the new snapshot lacks one.

Writes come from the journal's background writer, in one transaction per batch, on their own
connection; lookups use another, and PostgreSQL's readers never wait for a writer, so a lookup
before a submit is never held up by another machine's batch. A lost connection (the server
restarted or went away) is `retryable`: the writer keeps the batch and tries again until the
server is back, so records made while it was down land later, none lost. Lookups need the server:
while it is away a new submit fails with a clear error before anything is sent (its note cannot
be made), while tasks already running keep being followed.

The tables (``journal_*``, component ``journal`` in ``genwidgets_schema``) are created on first
use, when the store opens, which is also when an unreachable server or a refused password is
reported (`ConfigError` naming the URL without its password).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ._models import Status, Task
from ._postgres import DatabaseURL, Link, ensure_schema, lost, redacted

__all__ = ["SCHEMA", "PostgresStore", "jsonb", "nul_free"]

log = logging.getLogger("genwidgets.journal")

#: The journal's tables, one step per schema version (`_postgres.ensure_schema`): a later
#: release appends a migration, never edits a step.
SCHEMA: list[str] = [
    """
    CREATE TABLE journal_tasks (
        provider text NOT NULL,
        id text NOT NULL,
        model text NOT NULL,
        fingerprint text NOT NULL,
        status text NOT NULL,
        created_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        task jsonb NOT NULL,
        PRIMARY KEY (provider, id)
    );
    CREATE INDEX journal_tasks_fingerprint ON journal_tasks (fingerprint, status);
    CREATE INDEX journal_tasks_status ON journal_tasks (status);
    CREATE INDEX journal_tasks_model ON journal_tasks (provider, model, status);
    CREATE TABLE journal_outputs (
        provider text NOT NULL,
        id text NOT NULL,
        idx integer NOT NULL,
        output jsonb NOT NULL,
        PRIMARY KEY (provider, id, idx)
    );
    CREATE TABLE journal_status_changes (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        provider text NOT NULL,
        id text NOT NULL,
        status text NOT NULL,
        provider_status text,
        at text NOT NULL
    );
    CREATE INDEX journal_status_changes_task ON journal_status_changes (provider, id);
    CREATE TABLE journal_submits (
        token text PRIMARY KEY,
        fingerprint text NOT NULL,
        provider text NOT NULL,
        model text NOT NULL,
        host text NOT NULL,
        machine text NOT NULL,
        pid integer NOT NULL,
        process text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        task jsonb
    );
    CREATE INDEX journal_submits_fingerprint ON journal_submits (fingerprint);
    CREATE INDEX journal_submits_process ON journal_submits (process);
    """
]

#: Task fields a snapshot without a value leaves as recorded (SQLite's coalesce).
_KEPT = ("started_at", "finished_at", "cost", "usage")
_TERMINAL = [s.value for s in Status if s.is_terminal]

# A status change is appended when the task is new or its recorded status differs; it runs before
# the upsert, in the same transaction, so it compares with the previous snapshot.
_STATUS_CHANGE = """
INSERT INTO journal_status_changes (provider, id, status, provider_status, at)
SELECT %(provider)s, %(id)s, %(status)s, %(provider_status)s, %(at)s
WHERE NOT EXISTS (SELECT 1 FROM journal_tasks
                  WHERE provider = %(provider)s AND id = %(id)s AND status = %(status)s)"""
_UPSERT_TASK = """
INSERT INTO journal_tasks
    (provider, id, model, fingerprint, status, created_at, finished_at, updated_at, task)
VALUES (%(provider)s, %(id)s, %(model)s, %(fp)s, %(status)s, %(created_at)s, %(finished_at)s,
        %(updated_at)s, %(task)s::jsonb)
ON CONFLICT (provider, id) DO UPDATE SET
    status = excluded.status,
    finished_at = coalesce(excluded.finished_at, journal_tasks.finished_at),
    updated_at = excluded.updated_at,
    task = journal_tasks.task || excluded.task"""
_UPSERT_OUTPUT = """
INSERT INTO journal_outputs (provider, id, idx, output) VALUES (%s, %s, %s, %s::jsonb)
ON CONFLICT (provider, id, idx) DO UPDATE SET output = journal_outputs.output || excluded.output"""
# One task per row, its outputs gathered in order.
_SELECT = """
SELECT t.task, coalesce((SELECT jsonb_agg(o.output ORDER BY o.idx) FROM journal_outputs o
                         WHERE o.provider = t.provider AND o.id = t.id), '[]'::jsonb)
FROM journal_tasks t"""
_IN_ORDER = " ORDER BY t.created_at NULLS FIRST, t.seq"
_UNFINISHED = f"""{_SELECT}
WHERE t.status <> ALL(%s) OR (t.status = 'succeeded' AND EXISTS (
    SELECT 1 FROM journal_outputs o
    WHERE o.provider = t.provider AND o.id = t.id AND o.output->>'path' IS NULL)){_IN_ORDER}"""


#: One escape of JSON text: NUL's is replaced, every other kept as it is (a typed backslash
#: before "u0000" is the escape ``\\`` then plain text, not a NUL).
_ESCAPE = re.compile(r"\\(u0000|.)")


def jsonb(value: Any) -> str:
    """JSON text PostgreSQL's jsonb accepts: anything `json` cannot encode as its `str`, and
    the NUL character (which jsonb refuses) replaced by U+FFFD."""
    return _no_nul(json.dumps(value, default=str, separators=(",", ":")))


def _no_nul(text: str) -> str:
    """JSON text with each NUL escape made U+FFFD's."""
    if "\\u0000" not in text:
        return text
    return _ESCAPE.sub(lambda m: "\\ufffd" if m[1] == "u0000" else m[0], text)


def nul_free(task: Task) -> Task:
    """`task` with every NUL character in its text (provider_status, error, outputs, provider
    data...) replaced by U+FFFD: PostgreSQL text cannot hold NUL, and a snapshot it refuses
    would never be written. `Journal.record` applies it on every backend, so a SQLite journal
    and a PostgreSQL one give the same task back."""
    text = task.model_dump_json()
    return task if "\\u0000" not in text else Task.model_validate_json(_no_nul(text))


def _utc(value: datetime | None) -> datetime | None:
    """A timestamp for a timestamptz column; a naive one is taken as UTC (as `Journal` does)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _task_row(fp: str, task: Task) -> dict[str, Any]:
    snapshot = task.model_dump(mode="json", fallback=str, exclude={"outputs", "replayed"})
    for name in _KEPT:
        if snapshot.get(name) is None:
            snapshot.pop(name, None)  # absent: `old || new` keeps the recorded value
    return {
        "provider": task.provider,
        "id": task.id,
        "model": task.model,
        "fp": fp,
        "status": task.status.value,
        "provider_status": _text(task.provider_status),
        "at": task.updated_at.isoformat(),
        "created_at": _utc(task.created_at),
        "finished_at": _utc(task.finished_at),
        "updated_at": _utc(task.updated_at),
        "task": jsonb(snapshot),
    }


def _text(value: str | None) -> str | None:
    """A text column's value: NUL replaced (see `nul_free`)."""
    return value.replace("\x00", "\ufffd") if value else value


def _task(row: tuple[Any, Any]) -> Task:
    return Task.model_validate({**row[0], "outputs": row[1]})


class PostgresStore:
    """A journal's records in PostgreSQL (see the module docstring). Opening it connects and
    creates the tables if needed, so a wrong URL or an unreachable server fails at once."""

    def __init__(self, url: str) -> None:
        self.url = DatabaseURL(url)
        self._writer = Link(url)  # the journal's writer thread's
        self._reader = Link(url)  # lookups, from any thread
        try:
            self._reader(lambda conn: ensure_schema(conn, "journal", SCHEMA))
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresStore {redacted(self.url)}>"

    # ------------------------------------------------------------------ writing
    def write(self, snapshots: Sequence[tuple[str, Task]]) -> None:
        """Record `(fingerprint, snapshot)` pairs in order, in one transaction (pipelined: one
        round trip per batch, not per row). Safe to repeat after a failure: the transaction
        either happened or not, and every statement is an upsert or conditional."""
        rows = [(_task_row(fp, task), task) for fp, task in snapshots]

        def work(conn: Any) -> None:
            with conn.transaction(), conn.pipeline():
                for row, task in rows:
                    conn.execute(_STATUS_CHANGE, row)
                    conn.execute(_UPSERT_TASK, row)
                    if task.outputs:
                        conn.cursor().executemany(
                            _UPSERT_OUTPUT,
                            [
                                (task.provider, task.id, i, jsonb(_present(output)))
                                for i, output in enumerate(task.outputs)
                            ],
                        )

        self._writer(work)

    def retryable(self, error: Exception) -> bool:
        """The server is unreachable or the connection was cut: it will come back."""
        return lost(error)

    # ------------------------------------------------------------------ reading
    def _tasks(self, where: str, args: Sequence[Any] = ()) -> list[Task]:
        rows = self._reader(lambda conn: conn.execute(where, args).fetchall())
        return [_task(row) for row in rows]

    def get(self, provider: str, task_id: str) -> Task | None:
        found = self._tasks(f"{_SELECT} WHERE t.provider = %s AND t.id = %s", (provider, task_id))
        return found[0] if found else None

    def tasks(self) -> list[Task]:
        return self._tasks(_SELECT + _IN_ORDER)

    def latest(self, fp: str, status: Status | None = None) -> Task | None:
        query, args = f"{_SELECT} WHERE t.fingerprint = %s", [fp]
        if status is not None:
            query += " AND t.status = %s"
            args.append(status.value)
        found = self._tasks(query + " ORDER BY t.updated_at DESC, t.seq DESC LIMIT 1", args)
        return found[0] if found else None

    def unfinished(self) -> list[Task]:
        return self._tasks(_UNFINISHED, (_TERMINAL,))

    def durations(self, provider: str, model: str, limit: int) -> list[float]:
        """Only a hint for the first poll of a new task: none while the server is away, so
        following running tasks never depends on it."""
        query = (
            "SELECT extract(epoch FROM finished_at - created_at) FROM journal_tasks "
            "WHERE provider = %s AND model = %s AND status = 'succeeded' "
            "AND created_at IS NOT NULL AND finished_at IS NOT NULL "
            "ORDER BY updated_at DESC, seq DESC LIMIT %s"
        )
        args = (provider, model, limit)
        try:
            rows = self._reader(lambda conn: conn.execute(query, args).fetchall())
        except Exception as exc:
            if not lost(exc):
                raise
            log.warning("journal: durations not read (%s)", type(exc).__name__)
            return []
        return [float(row[0]) for row in rows if row[0] and row[0] > 0][::-1]

    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]:
        query = (
            "SELECT status, at FROM journal_status_changes WHERE provider = %s AND id = %s "
            "ORDER BY seq"
        )
        rows = self._reader(lambda conn: conn.execute(query, (provider, task_id)).fetchall())
        return [(row[0], row[1]) for row in rows]

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def _present(output: Any) -> dict[str, Any]:
    """An output's fields that have a value (`old || new` keeps the recorded ones for the rest:
    SQLite's coalesce, field by field)."""
    dumped = output.model_dump(mode="json", fallback=str)
    return {k: v for k, v in dumped.items() if v is not None}
