"""The one place the client reads its environment: keys, base URLs, replay, budgets, cache.

Every `GENWIDGETS_*` variable the client honours is read here, when it is needed (not at import,
so a notebook can set one before its first task), and a bad value is a `ConfigError` naming the
variable. Readers owned elsewhere: `journal.default_journal_path` (`GENWIDGETS_JOURNAL`) and
`_cost` (`GENWIDGETS_PRICES`, `GENWIDGETS_MAX_PAID_TASKS`, `GENWIDGETS_MAX_SPEND`).
"""

from __future__ import annotations

import os

from ._exceptions import ConfigError

__all__ = ["journal_off", "replay_mode"]

REPLAY_MODES = ("auto", "off", "require")


def replay_mode(setting: str | None = None) -> str:
    """`setting`, else `GENWIDGETS_REPLAY`, else auto; one of `REPLAY_MODES`."""
    mode = (setting or os.environ.get("GENWIDGETS_REPLAY") or "auto").lower()
    if mode not in REPLAY_MODES:
        raise ConfigError(f"GENWIDGETS_REPLAY must be auto, off or require; got {mode!r}")
    return mode


def journal_off() -> bool:
    """`GENWIDGETS_JOURNAL=off`: no journal unless a client is given one."""
    return os.environ.get("GENWIDGETS_JOURNAL", "").lower() == "off"
