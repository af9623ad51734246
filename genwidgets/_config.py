"""The one place the client reads its environment: keys, base URLs, replay, budgets, cache.

Every `GENWIDGETS_*` variable the client honours is read here, when it is needed (not at import,
so a notebook can set one before its first task), and a bad value is a `ConfigError` naming the
variable. Readers owned elsewhere: `journal.default_journal_path` (`GENWIDGETS_JOURNAL`, a path or
a PostgreSQL URL), `_cost` (`GENWIDGETS_PRICES`, `GENWIDGETS_MAX_PAID_TASKS`,
`GENWIDGETS_MAX_SPEND`, `GENWIDGETS_CONFIRM_ABOVE`), `_local` (`GENWIDGETS_LOCAL_DURATION`),
`_team` (the team backend of budgets and caps: `GENWIDGETS_BUDGETS_BACKEND`,
`GENWIDGETS_BUDGETS_LEASE`) and `_team_cost` (`GENWIDGETS_COST_SCOPE`).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ._exceptions import ConfigError

__all__ = [
    "OFF_WORDS",
    "api_key",
    "base_url",
    "budgets_off",
    "cache_dir",
    "journal_off",
    "limit_override",
    "replay_mode",
    "store_url",
]

REPLAY_MODES = ("auto", "off", "require")
#: Values that turn a limit off (`GENWIDGETS_SEGMIND_RPM=off`).
OFF_WORDS = ("off", "none", "unlimited")
#: Values of `GENWIDGETS_BUDGETS` that turn every budget off.
BUDGETS_OFF = ("off", "0", "false")


def api_key(env_var: str | None) -> str | None:
    """The key in `env_var` (the provider's own variable, e.g. `SEGMIND_API_KEY`), if set."""
    return (os.environ.get(env_var) or None) if env_var else None


def base_url(provider: str, default: str) -> str:
    """`GENWIDGETS_<PROVIDER>_URL` when set (a loopback sandbox, say), else the given origin."""
    return os.environ.get(f"GENWIDGETS_{provider.upper()}_URL") or default


def replay_mode(setting: str | None = None) -> str:
    """`setting`, else `GENWIDGETS_REPLAY`, else auto; one of `REPLAY_MODES`."""
    mode = (setting or os.environ.get("GENWIDGETS_REPLAY") or "auto").lower()
    if mode not in REPLAY_MODES:
        raise ConfigError(f"GENWIDGETS_REPLAY must be auto, off or require; got {mode!r}")
    return mode


def journal_off() -> bool:
    """`GENWIDGETS_JOURNAL=off`: no journal unless a client is given one."""
    return os.environ.get("GENWIDGETS_JOURNAL", "").lower() == "off"


def budgets_off() -> bool:
    """`GENWIDGETS_BUDGETS=off`: no rate or concurrency budget for any provider."""
    return os.environ.get("GENWIDGETS_BUDGETS", "").strip().lower() in BUDGETS_OFF


def limit_override(provider: str, what: str, *, integer: bool = False) -> float | None:
    """`GENWIDGETS_<PROVIDER>_<what>` (RPM, MAX_IN_FLIGHT): None when unset, `inf` for off."""
    name = f"GENWIDGETS_{provider.upper()}_{what}"
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if raw.lower() in OFF_WORDS:
        return float("inf")
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number or 'off'; got {raw!r}") from None


def cache_dir() -> Path:
    """`GENWIDGETS_CACHE_DIR`, else the platform's user cache directory."""
    env = os.environ.get("GENWIDGETS_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("genwidgets")) / "blobs"


def store_url() -> str | None:
    """`GENWIDGETS_STORE` (the team's object store for outputs, see `_store`); None when unset
    or off."""
    value = os.environ.get("GENWIDGETS_STORE", "").strip()
    return None if value.lower() in ("", *OFF_WORDS) else value
