"""How a `GenError` looks when it reaches a notebook cell: the message, the fix and the line of
your code that raised it, instead of screens of asyncio and nest_asyncio frames.

IPython calls an exception's `_render_traceback_()` to draw it (`GenError` delegates here). It
calls it again for `%tb`, so the first rendering of an exception is the short form and any later
one (`%tb`) is IPython's full traceback. `%xmode` and `%debug` are unaffected.
"""

from __future__ import annotations

import linecache
import textwrap
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _exceptions as errors

__all__ = ["fix_for", "render_traceback", "short_traceback"]

_PACKAGE = str(Path(__file__).resolve().parent)
_RED, _GREEN, _DIM, _RESET = "\x1b[1;31m", "\x1b[32m", "\x1b[2m", "\x1b[0m"
#: Lab wraps error text anywhere, mid-word: wrap at words first
_WIDTH = 88


def _key_fix(exc: errors.GenError) -> str | None:
    env = None
    if exc.provider:
        try:
            from .providers import get_provider_class

            env = get_provider_class(exc.provider).env_var
        except Exception:  # an unknown provider name: no variable to name
            env = None
    where = f" in {env}" if env else ""
    return f"check the API key{where} (a new or rotated key, the right account)."


def _rate_fix(exc: errors.GenError) -> str:
    after = getattr(exc, "retry_after", None)
    when = f"in {after:g} s" if after else "in a moment"
    return (
        f"try again {when}. Polls are retried for you; a submit is never retried blindly "
        "(it could bill twice)."
    )


#: The fix for each kind of error, most specific first (looked up along the class's MRO).
#: None: the message already says what to do (MissingKey names its variable, UnknownModel has
#: "did you mean", SubmitUncertain and WaitTimeout say how to go on).
FIXES: dict[type[errors.GenError], str | Callable[[errors.GenError], str | None] | None] = {
    errors.MissingKey: None,
    errors.UnknownProvider: None,
    errors.UnknownModel: None,
    errors.ReplayMissing: None,
    errors.ConfigError: "fix the set-up named above; nothing was sent.",
    errors.InvalidParams: "correct the parameters and run the cell again; nothing was sent.",
    errors.SpendCapExceeded: None,
    errors.ConfirmationRequired: None,
    errors.NotSupported: "this provider has no such operation; see the README's provider table.",
    errors.AuthError: _key_fix,
    errors.QuotaError: "top up the account, or raise its spend limit, at the provider.",
    errors.RateLimited: _rate_fix,
    errors.ServerError: "the provider failed; try again later (polls were already retried).",
    errors.MalformedResponse: "the provider answered outside its protocol; try again, and "
    "report it if it persists.",
    errors.SubmitUncertain: None,
    errors.TransportError: "check the network, or the provider's URL "
    "(GENWIDGETS_<PROVIDER>_URL); polls were already retried.",
    errors.DownloadError: "the result could not be fetched (result URLs expire): fetch it again "
    "soon with client.download(task), or submit again.",
    errors.TaskFailed: "the provider's reason is above: change the prompt or the parameters "
    "and submit again.",
    errors.TaskCancelled: None,
    errors.TaskExpired: "the provider no longer keeps this task: submit it again.",
    errors.WaitTimeout: None,
    errors.DeadlineExceeded: "give it more time: run(..., timeout=SECONDS), "
    "submit(..., deadline=SECONDS), or configure(default_deadline=SECONDS) for every task.",
}


def fix_for(exc: errors.GenError) -> str | None:
    """The one-line fix for `exc`, or None when its message already says what to do."""
    for cls in type(exc).__mro__:
        if cls in FIXES:
            fix = FIXES[cls]  # type: ignore[index]
            return fix(exc) if callable(fix) else fix
    return None


def _frames(tb: TracebackType | None) -> list[tuple[str, int]]:
    return [(frame.f_code.co_filename, lineno) for frame, lineno in traceback.walk_tb(tb)]


def _where(exc: BaseException) -> str | None:
    """The line of the user's code that called into genwidgets (the last frame before it)."""
    frames = _frames(exc.__traceback__)
    caller = None
    for filename, lineno in frames:
        if filename.startswith(_PACKAGE):
            break
        caller = (filename, lineno)
    if caller is None:
        return None
    filename, lineno = caller
    line = linecache.getline(filename, lineno).strip()
    if not line:
        return None
    return f"{_cell_name(filename)}, line {lineno}: {line}"


def _cell_name(filename: str) -> str:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        number = shell.compile._filename_map.get(filename) if shell is not None else None
    except Exception:  # private IPython detail: fall back to the file name
        number = None
    return f"Cell In[{number}]" if number is not None else filename


def short_traceback(exc: errors.GenError) -> list[str]:
    """The error as IPython should print it: name and message, the fix, where, and `%tb`."""
    name = type(exc).__name__
    lines = _wrapped(f"{name}: {exc}", len(name) + 1, f"{_RED}{name}{_RESET}:")
    fix = fix_for(exc)
    if fix:
        lines += _wrapped(f"To fix: {fix}", len("To fix:"), f"{_GREEN}To fix:{_RESET}")
    where = _where(exc)
    if where:
        lines.append(f"{_DIM}In {where}{_RESET}")
    lines.append(f"{_DIM}(genwidgets error; the full traceback: %tb){_RESET}")
    return lines


def _wrapped(text: str, head: int, coloured: str) -> list[str]:
    """`text` wrapped at words, its first `head` characters replaced by `coloured`."""
    lines = textwrap.wrap(
        text, _WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    ) or [text]
    lines[0] = coloured + lines[0][head:]
    return lines


def _full_traceback(exc: BaseException) -> list[str]:
    try:
        from IPython import get_ipython

        shell: Any = get_ipython()
        if shell is not None:
            # tb_offset=1 skips IPython's own run_code frame, as for any cell error
            stb: list[str] = shell.InteractiveTB.structured_traceback(
                type(exc), exc, exc.__traceback__, tb_offset=1
            )
            return stb
    except Exception:  # any trouble formatting: the standard library's form below
        pass
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()


def render_traceback(exc: errors.GenError) -> list[str]:
    """`GenError._render_traceback_`: short the first time an exception is shown, full after."""
    if getattr(exc, "_shown_short", False):
        return _full_traceback(exc)
    exc._shown_short = True  # type: ignore[attr-defined]
    return short_traceback(exc)
