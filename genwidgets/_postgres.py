"""The team backend's connection to PostgreSQL: one URL, its password kept out of sight.

A team shares a journal, leases and budgets through one PostgreSQL database, named by a URL
(``postgresql://user@host:port/db``, also ``postgres://``). The password is libpq's business:
from the URL, else ``PGPASSWORD``, else ``~/.pgpass`` (``PGPASSFILE``); this module never reads
it. Every message, repr and log line names the database by `redacted(url)`, and psycopg's own
error text (which can quote connection details) is passed through `scrub` first.

`connect` turns an unreachable or refusing server into a `ConfigError` naming the redacted URL;
`ensure_schema` creates and versions each component's tables (table ``genwidgets_schema``:
component -> version) so a later release can migrate them, and refuses a database a newer
release has already migrated.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from ._exceptions import ConfigError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "SCHEMES",
    "DatabaseURL",
    "Link",
    "Unreachable",
    "connect",
    "ensure_schema",
    "is_postgres_url",
    "lost",
    "redacted",
    "schema_version",
    "scrub",
    "validate",
]

SCHEMES = ("postgresql", "postgres")
#: Seconds a connection attempt may take before the server counts as unreachable.
CONNECT_TIMEOUT = 10
#: Query parameters that carry a secret: dropped by `redacted` like the password.
_SECRET_PARAMS = ("password", "sslpassword")
#: Any ``password=...`` left in a driver's message (a conninfo string rather than a URL).
_PASSWORD_WORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
#: One step of a component's schema: SQL text, or a function given the open transaction.
Step = str | Callable[["psycopg.Connection[Any]"], None]
T = TypeVar("T")


class Unreachable(ConfigError):
    """The PostgreSQL server cannot be reached or refuses the connection (at start: fix the URL,
    the password or the server; mid-run: a retryable outage)."""


class DatabaseURL(str):
    """A database URL whose repr leaves the password out. It is still the whole URL as a `str`
    (the driver needs it), but an attribute or variable holding one shows safely in `vars()`,
    debuggers, variable inspectors and tracebacks that print locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redacted(str(self)))


def is_postgres_url(value: object) -> bool:
    """Whether `value` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    if not isinstance(value, str):
        return False
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def redacted(url: str) -> str:
    """`url` without its password (and without any ``password=`` query parameter): the only
    form of a database URL that goes into a message, a repr or a log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable database URL>"
    user, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}@{hosts}" if at else hosts
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
         if k.lower() not in _SECRET_PARAMS],
        safe=":/,",
    )  # fmt: skip
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secrets(url: str) -> list[str]:
    """The password in `url` in every spelling a message might quote it."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS]
        user, at, _ = parts.netloc.rpartition("@")
        if at and ":" in user:
            found.append(user.partition(":")[2])
    except ValueError:
        pass
    spellings = {s for p in found if p for s in (p, unquote(p), quote(unquote(p), safe=""))}
    return sorted(spellings, key=len, reverse=True)


def scrub(text: str, url: str | None = None) -> str:
    """`text` (a driver's error, say) with `url` shown redacted and its password, in any
    spelling, and any ``password=...`` replaced by ``***``."""
    if url:
        text = text.replace(url, redacted(url))
        for secret in _secrets(url):
            text = text.replace(secret, "***")
    return _PASSWORD_WORD.sub(r"\1***", text)


def validate(url: str) -> dict[str, Any]:
    """The connection parameters of a ``postgresql://`` URL, or a `ConfigError` saying what is
    wrong with it (naming it redacted)."""
    if not is_postgres_url(url):
        raise ConfigError(
            f"Not a PostgreSQL URL: {redacted(url)!r} (expected postgresql://user@host:port/db)"
        )
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: the message may quote the URL
        raise ConfigError(
            f"Invalid PostgreSQL URL {redacted(url)!r}: {scrub(str(exc), url)}"
        ) from None
    if not params.get("dbname"):
        raise ConfigError(f"The PostgreSQL URL {redacted(url)!r} names no database (…/dbname)")
    return params


def connect(url: str, *, autocommit: bool = True, **options: Any) -> psycopg.Connection[Any]:
    """A psycopg 3 connection to `url` (libpq finds the password: URL, ``PGPASSWORD`` or
    ``~/.pgpass``), or a `ConfigError` naming the redacted URL when the server is unreachable
    or refuses; the driver's text is scrubbed and its exception not chained (it holds the
    connection details)."""
    validate(url)
    import psycopg

    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        return psycopg.connect(url, autocommit=autocommit, **options)
    except psycopg.Error as exc:
        reason = " ".join(scrub(str(exc), url).split()) or type(exc).__name__
        raise Unreachable(f"Cannot connect to PostgreSQL at {redacted(url)}: {reason}") from None


def lost(error: BaseException) -> bool:
    """Whether `error` is the database going away (unreachable, connection cut, server shutting
    down, serialisation conflict): worth retrying once it is back."""
    import psycopg

    return isinstance(error, (Unreachable, psycopg.OperationalError, psycopg.InterfaceError))


class Link:
    """One connection to `url`, shared by threads one call at a time and reopened after it
    breaks (a restarted server): `link(work)` runs `work(connection)`; a connection found broken
    is replaced once, so the first call after an outage succeeds when the server is back."""

    def __init__(self, url: str, *, connect_timeout: int = CONNECT_TIMEOUT) -> None:
        self.url = DatabaseURL(url)
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Link {redacted(self.url)}>"

    def __call__(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.url, connect_timeout=self._timeout)
                try:
                    return work(self._conn)
                except Exception as exc:
                    broken = self._conn.broken or self._conn.closed
                    if broken:
                        self._conn.close()
                        self._conn = None
                    if not (broken and attempt == 1 and lost(exc)):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS genwidgets_schema (
    component text PRIMARY KEY,
    version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
#: Serialises first use of a fresh database (CREATE TABLE IF NOT EXISTS races between sessions).
_SCHEMA_LOCK = 0x67656E77  # "genw"


def schema_version(conn: psycopg.Connection[Any], component: str) -> int | None:
    """The version of `component`'s tables in this database (None: never created)."""
    found = conn.execute("SELECT to_regclass('genwidgets_schema')").fetchone()
    if found is None or found[0] is None:
        return None
    row = conn.execute(
        "SELECT version FROM genwidgets_schema WHERE component = %s", (component,)
    ).fetchone()
    return None if row is None else int(row[0])


def ensure_schema(conn: psycopg.Connection[Any], component: str, steps: Sequence[Step]) -> int:
    """Bring `component`'s tables to version ``len(steps)``, in one transaction: step ``i``
    takes them from version ``i`` to ``i + 1`` (so version 1 is ``steps[0]``, the creation, and a
    later release appends a migration). Concurrent first uses wait for each other; a database
    already at a newer version (a newer genwidgets migrated it) is refused, never downgraded."""
    target = len(steps)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(_SCHEMA_TABLE)
        found = schema_version(conn, component) or 0
        if found > target:
            raise ConfigError(
                f"The {component!r} tables in this PostgreSQL database are at schema version "
                f"{found}, newer than this genwidgets knows ({target}): upgrade genwidgets"
            )
        for step in steps[found:]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)  # type: ignore[arg-type]
        if found < target:
            conn.execute(
                "INSERT INTO genwidgets_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, "
                "updated_at = now()",
                (component, target),
            )
    return target
