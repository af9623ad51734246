"""`GenError._render_traceback_`: the short form with the fix first, the full traceback after."""

from __future__ import annotations

import pytest

from genwidgets import (
    AuthError,
    DeadlineExceeded,
    GenError,
    InvalidParams,
    MissingKey,
    RateLimited,
    UnknownModel,
)
from genwidgets._ipython_errors import fix_for


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (InvalidParams("bad"), "nothing was sent"),
        (DeadlineExceeded("late"), "timeout=SECONDS"),
        (RateLimited("slow down", retry_after=7), "in 7 s"),
        (AuthError("refused", provider="segmind"), "SEGMIND_API_KEY"),
        (MissingKey("segmind", "SEGMIND_API_KEY"), None),  # the message names the variable
        (UnknownModel("local", "imag", ["image"], "image"), None),  # it says "did you mean"
    ],
)
def test_each_error_gets_its_fix(error: GenError, fix: str | None) -> None:
    found = fix_for(error)
    assert found == fix if fix is None else fix in (found or "")


def test_first_rendering_is_short_then_full() -> None:
    try:
        raise DeadlineExceeded("Task cancelled: deadline of 1 s passed", provider="local")
    except DeadlineExceeded as exc:
        error = exc
    short = error._render_traceback_()
    assert len(short) <= 6 and "DeadlineExceeded" in short[0] and "%tb" in short[-1]
    full = "\n".join(error._render_traceback_())  # what %tb shows
    assert "Traceback" in full and "test_first_rendering_is_short_then_full" in full
