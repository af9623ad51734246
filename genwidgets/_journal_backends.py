"""Which backend a journal setting names: a SQLite file, or a team's PostgreSQL database.

`GENWIDGETS_JOURNAL`, `configure(journal=...)` and `Journal(...)` take a file path or a
``postgresql://`` (``postgres://``) URL. Any other URL is refused with a `ConfigError` naming
its scheme only, never taken as a path (it would create a folder named after the URL, password
included, beside the notebook); a PostgreSQL URL is checked when the journal opens, and every
message names it without its password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import ConfigError
from ._postgres import DatabaseURL, is_postgres_url, redacted, validate

if TYPE_CHECKING:
    from .journal import JournalStore, SubmitNotes

__all__ = ["locate", "names_database", "open_backend"]


def locate(value: str | os.PathLike[str]) -> Path | str:
    """A journal file's path, or a PostgreSQL URL as given (validated, not yet connected)."""
    text = os.fspath(value)
    if is_postgres_url(text):
        validate(text)
        return DatabaseURL(text)  # its repr hides the password
    scheme, sep, _ = text.partition("://")
    if sep and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigError(
            f"The journal must be a file path or a postgresql:// URL; {scheme}:// journals "
            "are not supported"
        )
    return Path(value)


def names_database(setting: object) -> bool:
    """Whether a client's journal setting (given, or `GENWIDGETS_JOURNAL` when none is) is a
    PostgreSQL URL: then the client opens it at once, so an unreachable server is reported when
    the client is made (`configure(journal=...)`), not at its first task."""
    if setting is None or setting is True:
        setting = os.environ.get("GENWIDGETS_JOURNAL")
    return is_postgres_url(setting)


def open_backend(where: Path | str) -> tuple[JournalStore, SubmitNotes, str]:
    """The store and submit notes for a located journal, and a name for its writer thread: a
    SQLite file with notes files beside it, or PostgreSQL tables with leases (connecting now,
    so an unreachable server or a refused password is a `ConfigError` at once)."""
    if isinstance(where, Path):
        from ._journal_notes import FileNotes
        from ._journal_sqlite import SQLiteStore

        notes = FileNotes(where.with_name(where.name + "-submits"))
        return SQLiteStore(where), notes, f"journal {str(where)!r}"
    from ._journal_leases import PostgresNotes
    from ._journal_postgres import PostgresStore

    store = PostgresStore(where)
    return store, PostgresNotes(where), f"journal {redacted(where)}"
