"""Claims: which worker runs which line of a batch, so several processes share one batch.

Every line of a batch is a row keyed by the batch's identity (a hash of all its lines: the same
jobs file is the same batch on every machine) and the line number, with the line's request
fingerprint beside it. A worker claims open lines as it has room for them; a claim is a lease
with an expiry that the worker's heartbeat keeps pushing forward. A worker that dies (SIGKILL, a
machine lost) stops beating; once its leases expire, the other workers claim its lines and run
them through the journal, which re-attaches every task whose id was recorded instead of
submitting it again. A line that ended keeps its manifest entry in its row, so any worker can
write the one manifest at the end, whichever worker ran each line.

Two stores, one interface (`Claims`):

- PostgreSQL (`postgresql://...`): `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent workers
  never wait on each other's rows and never claim the same line; times are the server's clock,
  so machines' clocks do not matter. This is the team mode: workers on several machines.
- SQLite (a file beside a SQLite journal): one machine only; SQLite's single write lock makes
  each claim exclusive (`BEGIN IMMEDIATE`).

A lease is never taken from a worker on the same machine whose process is still alive, even if
it expired (a stalled event loop is not a dead worker); across machines only the expiry can tell.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ._exceptions import ConfigError
from ._postgres import is_postgres_url
from ._processes import pid_alive

__all__ = ["Claims", "SQLiteClaims", "batch_identity", "is_postgres", "open_claims"]

T = TypeVar("T")
log = logging.getLogger("genwidgets.batch")

#: States of a line: waiting, leased to a worker, ended (its entry kept). "failed" lines (ended
#: otherwise than succeeded) are opened again by the next command that starts on the batch.
OPEN, CLAIMED, SUCCEEDED, FAILED = "open", "claimed", "succeeded", "failed"

def _machine() -> str:
    """This host, boot and pid namespace (as `_journal_leases`): a lease whose owner has the
    same value is one whose pid this process can check."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"{socket.gethostname()}/{uuid.uuid4().hex}"  # never equal: leases only
    return f"{socket.gethostname()}/{boot}/{namespace}"


#: Stored as each claim's `host`: which machine (boot, pid namespace) holds it.
_HOST = _machine()


def batch_identity(lines: Sequence[tuple[int, str]]) -> str:
    """The batch's identity: sha256 over every (line number, request fingerprint)."""
    text = json.dumps(sorted(lines), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def single_host_error(host: str, line: int | None = None) -> str:
    name = host.partition("/")[0]
    where = f" (line {line} was claimed on {name})" if line is not None else f" ({name})"
    return (
        f"This batch has workers on several machines{where}, but this one's journal is a local "
        "file: a line taken over from another machine would be submitted again. Workers on "
        "several machines need one postgresql:// journal (GENWIDGETS_JOURNAL)"
    )


def is_postgres(location: str | os.PathLike[str]) -> bool:
    return is_postgres_url(os.fspath(location))


def _alive_here(host: str | None, pid: int | None) -> bool:
    """Whether the owner of a lease is a live process on this machine (never taken over)."""
    if host != _HOST or not pid or pid == os.getpid():
        return False
    return pid_alive(pid)


class Claims(Protocol):
    """The lines of one batch and their leases (see the module docstring). Thread-safe."""

    batch: str
    worker: str

    def register(self, lines: Sequence[tuple[int, str]], *, reopen_failed: bool) -> None:
        """Add every line (those already there are kept). Ended lines stay ended, except failed
        ones with `reopen_failed` when no live worker holds a line: a new run of a batch that
        ended (or was abandoned) tries them again; joining a running batch does not."""

    def claim(self, limit: int, lease: float) -> list[int]:
        """Lease up to `limit` open or expired lines to this worker; their numbers."""

    def heartbeat(self, lease: float) -> set[int]:
        """Push this worker's leases forward; the lines it still holds."""

    def finish(self, line: int, entry: dict[str, Any]) -> bool:
        """Record the line's manifest entry; False if this worker no longer held it."""

    def release(self) -> None:
        """Give this worker's lines back at once (it stops: Ctrl-C)."""

    def counts(self) -> dict[str, int]:
        """Lines by state."""

    def entries(self) -> list[dict[str, Any]]:
        """The manifest entries of the ended lines, by line."""

    def hosts(self) -> set[str]:
        """Machines whose workers have claimed a line of this batch."""

    def succeeded(self) -> set[int]:
        """The lines that ended succeeded (never run again)."""

    def retryable(self, error: Exception) -> bool:
        """Whether a failed call may succeed later (the database is away, or busy)."""

    def close(self) -> None: ...


class _Base:
    """What both stores share: the worker's identity and one lock around the connection."""

    def __init__(self, batch: str) -> None:
        self.batch = batch
        self.worker = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        #: Set when this worker's journal is a local file: taking over a line from a worker on
        #: another machine is then refused (its task ids are in a journal this one cannot read).
        self.single_host = False
        self._lock = threading.Lock()

    def _locked(self, work: Callable[[], T]) -> T:
        with self._lock:
            return work()

    def _takeable(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """The lines of `rows` (line, host, pid, state, owner: open or expired) this worker may
        take; a take-over from another worker is logged, as the user's only sign that one died
        (or stalled past its lease)."""
        for line, host, *_ in rows:
            if self.single_host and host not in (None, _HOST):
                raise ConfigError(single_host_error(host, line))
        taken = [row for row in rows if not _alive_here(row[1], row[2])]
        from_others: dict[str, list[int]] = {}
        for line, _, _, state, owner in taken:
            if state == CLAIMED and owner != self.worker:
                from_others.setdefault(owner, []).append(line)
        for owner, lines in from_others.items():
            named = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines))}"
            log.warning("batch: %s taken over from worker %s: its lease expired (it died, or "
                        "lost the claims store)", named, owner)  # fmt: skip
        return [row[0] for row in taken]


_T = "batch_claims"


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


#: Version 1 (`PRAGMA user_version`; a later release migrates from it).
_SQLITE_SCHEMA = f"""
PRAGMA user_version = 1;
CREATE TABLE IF NOT EXISTS {_T} (
    batch TEXT NOT NULL, line INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open', owner TEXT, host TEXT, pid INTEGER,
    expires_at REAL, entry TEXT, updated_at REAL,
    PRIMARY KEY (batch, line)
);
"""


class SQLiteClaims(_Base):
    """Claims in a SQLite file: several workers on one machine, without a database server."""

    def __init__(self, path: str | os.PathLike[str], batch: str) -> None:
        super().__init__(batch)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > 1:
            raise ConfigError(
                f"The batch claims file {str(self.path)!r} is at schema version {version}, "
                "newer than this genwidgets knows (1): upgrade genwidgets"
            )
        if version < 1:
            self._db.executescript(_SQLITE_SCHEMA)

    def __repr__(self) -> str:
        return f"<SQLiteClaims {str(self.path)!r} batch={self.batch[:12]}>"

    def _tx(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

        return self._locked(run)

    def register(self, lines: Sequence[tuple[int, str]], *, reopen_failed: bool) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                f"INSERT OR IGNORE INTO {_T} (batch, line, fingerprint) VALUES (?, ?, ?)",
                [(self.batch, line, fp) for line, fp in lines],
            )
            if reopen_failed:
                db.execute(
                    f"UPDATE {_T} SET state = 'open', entry = NULL WHERE batch = ?1 "
                    f"AND state = 'failed' AND NOT EXISTS (SELECT 1 FROM {_T} WHERE "
                    "batch = ?1 AND state = 'claimed' AND expires_at > ?2)",
                    (self.batch, time.time()),
                )

        self._tx(work)

    def claim(self, limit: int, lease: float) -> list[int]:
        def work(db: sqlite3.Connection) -> list[int]:
            now = time.time()
            rows = db.execute(
                f"SELECT line, host, pid, state, owner FROM {_T} WHERE batch = ? AND "
                "(state = 'open' OR (state = 'claimed' AND expires_at < ?)) ORDER BY line LIMIT ?",
                (self.batch, now, limit),
            ).fetchall()
            lines = self._takeable(rows)
            me = (self.worker, _HOST, os.getpid(), now + lease, now, self.batch)
            db.executemany(
                f"UPDATE {_T} SET state = 'claimed', owner = ?, host = ?, pid = ?, "
                "expires_at = ?, updated_at = ? WHERE batch = ? AND line = ?",
                [(*me, line) for line in lines],
            )
            return lines

        return self._tx(work) if limit > 0 else []

    def heartbeat(self, lease: float) -> set[int]:
        def work(db: sqlite3.Connection) -> set[int]:
            where = "WHERE batch = ? AND owner = ? AND state = 'claimed'"
            db.execute(
                f"UPDATE {_T} SET expires_at = ? {where}",
                (time.time() + lease, self.batch, self.worker),
            )
            rows = db.execute(f"SELECT line FROM {_T} {where}", (self.batch, self.worker))
            return {row[0] for row in rows}

        return self._tx(work)

    def finish(self, line: int, entry: dict[str, Any]) -> bool:
        state = SUCCEEDED if entry.get("status") == SUCCEEDED else FAILED
        return self._tx(
            lambda db: db.execute(
                f"UPDATE {_T} SET state = ?, entry = ?, expires_at = NULL, updated_at = ? "
                "WHERE batch = ? AND line = ? AND owner = ? AND state = 'claimed'",
                (state, _dumps(entry), time.time(), self.batch, line, self.worker),
            ).rowcount
            == 1
        )

    def release(self) -> None:
        self._tx(
            lambda db: db.execute(
                f"UPDATE {_T} SET state = 'open', owner = NULL, expires_at = NULL "
                "WHERE batch = ? AND owner = ? AND state = 'claimed'",
                (self.batch, self.worker),
            )
        )

    def _read(self, sql: str) -> list[tuple[Any, ...]]:
        return self._locked(lambda: self._db.execute(sql, (self.batch,)).fetchall())

    def counts(self) -> dict[str, int]:
        rows = self._read(f"SELECT state, count(*) FROM {_T} WHERE batch = ? GROUP BY state")
        return {state: int(n) for state, n in rows}

    def entries(self) -> list[dict[str, Any]]:
        rows = self._read(
            f"SELECT entry FROM {_T} WHERE batch = ? AND entry IS NOT NULL ORDER BY line"
        )
        return [json.loads(row[0]) for row in rows]

    def hosts(self) -> set[str]:
        rows = self._read(f"SELECT DISTINCT host FROM {_T} WHERE batch = ? AND host IS NOT NULL")
        return {row[0] for row in rows}

    def succeeded(self) -> set[int]:
        rows = self._read(f"SELECT line FROM {_T} WHERE batch = ? AND state = '{SUCCEEDED}'")
        return {row[0] for row in rows}

    def retryable(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    def close(self) -> None:
        self._locked(self._db.close)


def open_claims(location: str | os.PathLike[str], batch: str) -> Claims:
    """Claims at a `postgresql://` URL, or in a SQLite file at a path."""
    if is_postgres(location):
        from ._claims_postgres import PostgresClaims

        return PostgresClaims(str(location), batch)
    scheme, sep, _ = os.fspath(location).partition("://")
    if sep:
        raise ConfigError(
            f"Batch claims live in PostgreSQL (postgresql://...) or a SQLite file; "
            f"{scheme}:// is not supported"
        )
    return SQLiteClaims(location, batch)
