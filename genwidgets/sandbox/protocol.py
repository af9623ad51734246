"""What a sandbox protocol module builds on, built-in or plugin (see docs/adapters.md).

A protocol module subclasses `ProviderApp` (its error shape, auth header and `ROUTES` table; the
shared pipeline adds auth, per-key limits, fault injection and statistics), creates tasks with
``self.state.create_task(...)``, and declares ``APPS`` (port name -> app), optionally ``PORTS``
and ``LIMITS`` (a `ServerLimits`).
"""

from __future__ import annotations

from ._http import ErrorKind, ProviderApp, fmt_datetime, read_json, seed_of
from ._limits import ServerLimits
from ._tasks import FileEntry, SimTask

__all__ = [
    "ErrorKind",
    "FileEntry",
    "ProviderApp",
    "ServerLimits",
    "SimTask",
    "fmt_datetime",
    "read_json",
    "seed_of",
]
