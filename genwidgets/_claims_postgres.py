"""Batch claims in PostgreSQL: the team mode, workers on any number of machines (see `_claims`).

`SELECT ... FOR UPDATE SKIP LOCKED` hands each open or expired line to exactly one worker without
making concurrent workers wait on each other's rows; every time is the server's clock (`now()`),
so the machines' clocks do not matter. The table is created on first use and versioned as the
component "batch" of the team database (`_postgres.ensure_schema`); the connection is the team
backend's `Link` (reopened after the server comes back; the URL only ever shown redacted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ._claims import _HOST, FAILED, SUCCEEDED, _Base, _dumps
from ._postgres import Link, ensure_schema, lost, redacted

__all__ = ["PostgresClaims"]

_T = "batch_claims"
#: The "batch" component's schema, one step per version (a later release appends migrations).
SCHEMA = [
    f"""
    CREATE TABLE {_T} (
        batch text NOT NULL,
        line integer NOT NULL,
        fingerprint text NOT NULL,
        state text NOT NULL DEFAULT 'open',
        owner text, host text, pid integer,
        expires_at timestamptz,
        entry text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (batch, line)
    );
    CREATE INDEX {_T}_live ON {_T} (batch, line) WHERE state IN ('open', 'claimed');
    """
]

_CLAIMABLE = (
    f"SELECT line, host, pid, state, owner FROM {_T} WHERE batch = %s AND (state = 'open' OR "
    "(state = 'claimed' AND expires_at < now())) ORDER BY line LIMIT %s FOR UPDATE SKIP LOCKED"
)


class PostgresClaims(_Base):
    """Claims in PostgreSQL: the team mode, workers on any number of machines."""

    def __init__(self, url: str, batch: str) -> None:
        super().__init__(batch)
        self._link = Link(url)
        self._link(lambda conn: ensure_schema(conn, "batch", SCHEMA))  # Unreachable: ConfigError

    def __repr__(self) -> str:
        return f"<PostgresClaims {redacted(self._link.url)} batch={self.batch[:12]}>"

    def _tx(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
        def work(conn: Any) -> list[tuple[Any, ...]]:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []

        return self._locked(lambda: self._link(work))

    def register(self, lines: Sequence[tuple[int, str]], *, reopen_failed: bool) -> None:
        def work(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {_T} (batch, line, fingerprint) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [(self.batch, line, fp) for line, fp in lines],
                )
                if reopen_failed:
                    cur.execute(
                        f"UPDATE {_T} SET state = 'open', entry = NULL WHERE batch = %(b)s "
                        f"AND state = 'failed' AND NOT EXISTS (SELECT 1 FROM {_T} WHERE "
                        "batch = %(b)s AND state = 'claimed' AND expires_at > now())",
                        {"b": self.batch},
                    )

        self._locked(lambda: self._link(work))

    def claim(self, limit: int, lease: float) -> list[int]:
        def work(conn: Any) -> list[int]:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_CLAIMABLE, (self.batch, limit))
                lines = self._takeable(cur.fetchall())
                if lines:
                    cur.execute(
                        f"UPDATE {_T} SET state = 'claimed', owner = %s, host = %s, pid = %s, "
                        "expires_at = now() + make_interval(secs => %s), updated_at = now() "
                        "WHERE batch = %s AND line = ANY(%s)",
                        (self.worker, _HOST, os.getpid(), lease, self.batch, lines),
                    )
                return lines

        return self._locked(lambda: self._link(work)) if limit > 0 else []

    def heartbeat(self, lease: float) -> set[int]:
        rows = self._tx(
            f"UPDATE {_T} SET expires_at = now() + make_interval(secs => %(lease)s) "
            "WHERE batch = %(batch)s AND owner = %(me)s AND state = 'claimed' RETURNING line",
            {"lease": lease, "batch": self.batch, "me": self.worker},
        )
        return {row[0] for row in rows}

    def finish(self, line: int, entry: dict[str, Any]) -> bool:
        state = SUCCEEDED if entry.get("status") == SUCCEEDED else FAILED
        rows = self._tx(
            f"UPDATE {_T} SET state = %(state)s, entry = %(entry)s, expires_at = NULL, "
            "updated_at = now() WHERE batch = %(batch)s AND line = %(line)s AND owner = %(me)s "
            "AND state = 'claimed' RETURNING line",
            {
                "state": state,
                "entry": _dumps(entry),
                "batch": self.batch,
                "line": line,
                "me": self.worker,
            },
        )
        return bool(rows)

    def release(self) -> None:
        self._tx(
            f"UPDATE {_T} SET state = 'open', owner = NULL, expires_at = NULL "
            "WHERE batch = %(batch)s AND owner = %(me)s AND state = 'claimed'",
            {"batch": self.batch, "me": self.worker},
        )

    def counts(self) -> dict[str, int]:
        rows = self._tx(f"SELECT state, count(*) FROM {_T} WHERE batch = %s GROUP BY state",
                        (self.batch,))  # fmt: skip
        return {state: int(n) for state, n in rows}

    def entries(self) -> list[dict[str, Any]]:
        rows = self._tx(
            f"SELECT entry FROM {_T} WHERE batch = %s AND entry IS NOT NULL ORDER BY line",
            (self.batch,),
        )
        return [json.loads(row[0]) for row in rows]

    def hosts(self) -> set[str]:
        rows = self._tx(f"SELECT DISTINCT host FROM {_T} WHERE batch = %s AND host IS NOT NULL",
                        (self.batch,))  # fmt: skip
        return {row[0] for row in rows}

    def succeeded(self) -> set[int]:
        rows = self._tx(f"SELECT line FROM {_T} WHERE batch = %s AND state = %s",
                        (self.batch, SUCCEEDED))  # fmt: skip
        return {row[0] for row in rows}

    def retryable(self, error: Exception) -> bool:
        return lost(error)

    def close(self) -> None:
        self._link.close()
