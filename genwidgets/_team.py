"""The team backend of budgets and cost caps: which database, its tables, and this process's lease.

One account's limits hold for the account, not for a process: three workers on one key share 600
requests/min and 30 tasks in flight whether they know of each other or not. With a team backend
the shared budget (`_team_budget`) and the cost caps (`_team_cost`) keep their counters in
PostgreSQL, which every process of the team reaches:

- `GENWIDGETS_BUDGETS_BACKEND=postgresql://user@host:port/db` names the database; without it the
  journal's database is used when `GENWIDGETS_JOURNAL` is a ``postgresql://`` URL (a team that
  shares a journal shares its budgets too). `GENWIDGETS_BUDGETS_BACKEND=local` keeps per-process
  budgets even then. Nothing set: per-process budgets and caps, as for one person.
- Tasks in flight are rows with a lease (`LEASE` seconds, `GENWIDGETS_BUDGETS_LEASE`), renewed by
  one thread per process (`Heartbeat`, so a notebook cell that blocks the event loop keeps its
  slots): a process killed with SIGKILL stops renewing, and its slots come back when the lease
  runs out. A process that exits normally deletes its rows.

The password is libpq's business (URL, ``PGPASSWORD``, ``~/.pgpass``); every message names the
database by `redacted(url)`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError
from ._limits import Limits
from ._policy import leaky_bucket
from ._postgres import (
    DatabaseURL,
    Unreachable,
    connect,
    ensure_schema,
    is_postgres_url,
    lost,
    redacted,
    scrub,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "BACKEND_ENV",
    "HOLDER",
    "LEASE",
    "LIVE",
    "ROW",
    "SPEND",
    "SPEND_OTHER",
    "UPSERT",
    "TeamDown",
    "TeamLink",
    "aconnect",
    "buckets",
    "heartbeat",
    "lease_seconds",
    "team_url",
    "upsert_params",
]

log = logging.getLogger("genwidgets")

BACKEND_ENV = "GENWIDGETS_BUDGETS_BACKEND"
LEASE_ENV = "GENWIDGETS_BUDGETS_LEASE"
#: Values of `GENWIDGETS_BUDGETS_BACKEND` that keep budgets in the process.
LOCAL_WORDS = ("local", "process", "memory")
#: Seconds a slot row outlives its holder's last heartbeat (renewed every third of it).
LEASE = 30.0
#: This process, as the holder of slot rows: host and pid for a human, a nonce for uniqueness.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

#: The tables' migrations, step i taking them to version i + 1 (component "budgets" of
#: `_postgres.ensure_schema`).
SCHEMA = (
    """
    CREATE TABLE genwidgets_budgets (
        account text PRIMARY KEY,            -- provider:sha256(key)[:16], never the key
        rpm double precision,                -- the limits in force (None: no rate limit)
        max_in_flight integer,
        rate_factor double precision NOT NULL DEFAULT 1,  -- halved by a 429, recovers
        cap integer,                         -- tasks in flight allowed now (shrunk by a 429)
        gap double precision NOT NULL DEFAULT 0,    -- seconds between requests at this rate
        burst double precision NOT NULL DEFAULT 0,  -- seconds of requests that may go at once
        tat timestamptz NOT NULL DEFAULT now(),     -- the bucket (GCRA's theoretical arrival)
        paused_until timestamptz NOT NULL DEFAULT 'epoch',
        last_penalty timestamptz,
        limited bigint NOT NULL DEFAULT 0,   -- 429s seen by the whole team
        counts_all boolean NOT NULL DEFAULT false
    );
    CREATE TABLE genwidgets_budget_slots (
        slot bigserial PRIMARY KEY,
        account text NOT NULL,
        holder text NOT NULL,
        task_id text,                        -- NULL while the submit is on its way
        expires timestamptz NOT NULL,
        UNIQUE (account, task_id)
    );
    CREATE INDEX genwidgets_budget_slots_holder
        ON genwidgets_budget_slots (holder);
    CREATE TABLE genwidgets_costs (
        scope text PRIMARY KEY,
        paid_tasks bigint NOT NULL DEFAULT 0,
        spent double precision NOT NULL DEFAULT 0,
        pending double precision NOT NULL DEFAULT 0  -- estimates of submits not settled yet
    );
    """,
    # 2: a second bucket for the requests the first does not count (`Limits.other_...`)
    """
    ALTER TABLE genwidgets_budgets
        ADD COLUMN other_rpm double precision,
        ADD COLUMN other_gap double precision NOT NULL DEFAULT 0,
        ADD COLUMN other_burst double precision NOT NULL DEFAULT 0,
        ADD COLUMN other_tat timestamptz NOT NULL DEFAULT now();
    """,
)

# The budgets' statements (`_team_budget`). SPEND moves the bucket on by one request and says how
# long that request waits (GCRA: no row lock held across requests, the server's clock only).
_SPEND = """
UPDATE genwidgets_budgets
   SET {tat} = greatest({tat}, statement_timestamp(), paused_until + make_interval(secs => {burst}))
             + make_interval(secs => {gap})
 WHERE account = %s
RETURNING greatest(0, extract(epoch FROM {tat} - statement_timestamp()) - {gap} - {burst}),
          rate_factor, cap, greatest(0, extract(epoch FROM paused_until - statement_timestamp())),
          counts_all, limited, extract(epoch FROM statement_timestamp() - last_penalty)"""
SPEND = _SPEND.format(tat="tat", gap="gap", burst="burst")
SPEND_OTHER = _SPEND.format(tat="other_tat", gap="other_gap", burst="other_burst")

ROW = """SELECT rate_factor, cap, greatest(0, extract(epoch FROM paused_until -
 statement_timestamp())), counts_all, limited, extract(epoch FROM statement_timestamp() -
 last_penalty), rpm, max_in_flight FROM genwidgets_budgets WHERE account = %s"""

UPSERT = """
INSERT INTO genwidgets_budgets AS b
       (account, rpm, max_in_flight, cap, gap, burst, other_rpm, other_gap, other_burst)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (account) DO UPDATE
   SET rpm = EXCLUDED.rpm, max_in_flight = EXCLUDED.max_in_flight, cap = EXCLUDED.cap,
       gap = EXCLUDED.gap, burst = EXCLUDED.burst, other_rpm = EXCLUDED.other_rpm,
       other_gap = EXCLUDED.other_gap, other_burst = EXCLUDED.other_burst, rate_factor = 1,
       last_penalty = NULL
 WHERE b.rpm IS DISTINCT FROM EXCLUDED.rpm OR b.other_rpm IS DISTINCT FROM EXCLUDED.other_rpm
    OR b.max_in_flight IS DISTINCT FROM EXCLUDED.max_in_flight
"""

LIVE = "account = %s AND expires > statement_timestamp()"


def _bucket(rpm: float | None, rate_factor: float) -> tuple[float, float]:
    if rpm is None:
        return 0.0, 0.0
    capacity, period = leaky_bucket(rpm * rate_factor)
    gap = period / capacity
    return gap, (capacity - 1) * gap


def buckets(limits: Limits, rate_factor: float) -> tuple[float, float, float, float]:
    """(gap, burst) of each GCRA bucket, in seconds: the in-process leaky bucket's rate and burst
    (`capacity` requests at once, then one every `period / capacity`); 0 without a rate."""
    return (
        *_bucket(limits.requests_per_minute, rate_factor),
        *_bucket(limits.other_requests_per_minute, rate_factor),
    )


def upsert_params(account: str, limits: Limits) -> tuple[Any, ...]:
    """UPSERT's parameters: the account's row with these limits, unpenalised."""
    gap, burst, other_gap, other_burst = buckets(limits, 1.0)
    return (account, limits.requests_per_minute, limits.max_in_flight, limits.max_in_flight,
            gap, burst, limits.other_requests_per_minute, other_gap, other_burst)  # fmt: skip


def team_url() -> str | None:
    """The database of the team's budgets and caps, or None for per-process ones."""
    raw = os.environ.get(BACKEND_ENV, "").strip()
    if raw:
        if raw.lower() in LOCAL_WORDS:
            return None
        if not is_postgres_url(raw):
            raise ConfigError(
                f"{BACKEND_ENV} must be 'local' or a postgresql:// URL, not {redacted(raw)!r}"
            )
        return raw
    journal = os.environ.get("GENWIDGETS_JOURNAL", "").strip()
    return journal if is_postgres_url(journal) else None


def lease_seconds() -> float:
    """`GENWIDGETS_BUDGETS_LEASE` (seconds, > 0), else `LEASE`."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return LEASE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{LEASE_ENV} must be a number of seconds > 0, not {raw!r}")
    return value


_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


def ensure_tables(url: str) -> None:
    """Create (or migrate) the tables once per process and database: component ``budgets`` of
    `_postgres.ensure_schema` (blocking: the budgets call it in a thread)."""
    with _schema_lock:
        if url in _schema_ready:
            return
        with connect(url) as conn:
            ensure_schema(conn, "budgets", SCHEMA)
        _schema_ready.add(url)


async def aconnect(url: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection for one budget, the tables created first (`Unreachable`, a
    `ConfigError` naming the redacted URL, when the server cannot be reached or refuses)."""
    import psycopg

    await asyncio.to_thread(ensure_tables, url)
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        reason = " ".join(scrub(str(exc), url).split()) or type(exc).__name__
        raise Unreachable(f"Cannot connect to PostgreSQL at {redacted(url)}: {reason}") from None


class Heartbeat:
    """Renews this process's slot leases in one database, from a daemon thread, every third of
    the lease; deletes them at exit. A process that dies without exiting stops renewing."""

    def __init__(self, url: str, lease: float) -> None:
        self.url, self.lease = DatabaseURL(url), lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genwidgets-lease", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        import psycopg

        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(self.lease / 3):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.url)
                conn.execute(
                    "UPDATE genwidgets_budget_slots SET expires = statement_timestamp()"
                    " + make_interval(secs => %s) WHERE holder = %s",
                    (self.lease, HOLDER),
                )
            except (psycopg.Error, ConfigError) as exc:
                log.warning("team budgets: cannot renew slot leases: %s", type(exc).__name__)
                conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Stop renewing and give this process's slots back (at exit)."""
        import psycopg

        self._stop.set()
        try:
            with connect(self.url, connect_timeout=3) as conn:
                conn.execute("DELETE FROM genwidgets_budget_slots WHERE holder = %s", (HOLDER,))
        except (psycopg.Error, ConfigError):
            pass  # the leases run out on their own


_heartbeats: dict[str, Heartbeat] = {}
_heartbeat_lock = threading.Lock()


def heartbeat(url: str) -> Heartbeat:
    """The process's lease renewer for `url` (started on first use)."""
    with _heartbeat_lock:
        beat = _heartbeats.get(url)
        if beat is None:
            beat = _heartbeats[url] = Heartbeat(url, lease_seconds())
        return beat


#: Seconds a link stays down after the database stopped answering, before it asks again.
RETRY_DB = 5.0

Job = Callable[[Any], Awaitable[Any]]


class TeamDown(Exception):
    """The team database did not answer: the caller does without it for now."""


class TeamLink:
    """One budget's connection to the team database: one query at a time, the queued writes of
    calls that cannot wait sent before the next query, and a pause of `RETRY_DB` seconds after
    the server stopped answering (`TeamDown`). Unreachable before it ever answered is a
    `ConfigError` instead: a wrong URL must not pass for a passing outage."""

    def __init__(self, url: str, name: str, setup: Job) -> None:
        self.url, self.name, self._setup = DatabaseURL(url), name, setup
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._jobs: list[Job] = []
        self._drainer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing: set[asyncio.Task[Any]] = set()
        self._down_until = 0.0
        self.connected_once = False

    async def run(self, fn: Job) -> Any:
        """`fn(conn)` after the queued writes; `TeamDown` while the database does not answer."""
        import psycopg

        if asyncio.get_running_loop().time() < self._down_until:
            raise TeamDown
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await aconnect(self.url)
                    await self._setup(self._conn)
                    self.connected_once = True
                while self._jobs:
                    try:
                        await self._jobs[0](self._conn)
                    except psycopg.Error as exc:
                        if lost(exc):
                            raise
                        log.warning("%s: a team budget write failed: %s", self.name, exc)
                    self._jobs.pop(0)  # done, or refused: drop it, keep the rest
                return await fn(self._conn)
            except Exception as exc:
                if not lost(exc) or not self.connected_once:
                    raise  # unreachable at start: a clear ConfigError, not a silent fallback
                self._went_down(exc)
                raise TeamDown from None

    def _went_down(self, exc: BaseException) -> None:
        if self._conn is not None and not self._conn.closed:
            closing = asyncio.ensure_future(self._conn.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._conn = None
        self._down_until = asyncio.get_running_loop().time() + RETRY_DB
        log.warning(
            "%s: the team database does not answer (%s): budgeting in this process for now",
            self.name,
            type(exc).__name__,
        )

    def queue(self, job: Job) -> None:
        """Queue a write; it goes out soon, and before any later query."""
        self._jobs.append(job)
        self._wake.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._jobs:
            try:
                await self.run(_nothing)
            except Exception as exc:  # down, or never reached: the writes wait, nothing raises
                if not isinstance(exc, TeamDown):
                    log.warning("%s: queued writes wait: %s", self.name, type(exc).__name__)
                self._wake.clear()  # a new write tries again at once (the server may be back)
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_DB)

    async def aclose(self) -> None:
        """Send the queued writes and close the connection (it reopens if used again)."""
        if self._jobs:
            with suppress(TeamDown):
                await self.run(_nothing)
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()
        self._conn = None


async def _nothing(conn: Any) -> None:
    return None
