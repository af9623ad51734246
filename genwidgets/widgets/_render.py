"""Pure formatting for the widgets: the card's HTML (live body and saved form), its text summary
and the display bundle. No ipywidgets import.

The card is rendered here and only here: `card_prompt_html`, `card_status_html` and
`card_body_html` are the live card's parts and, under `card_head_html`, the saved card a notebook
keeps (`card_html`), so a finished card looks the same with and without a kernel. Everything
from a server or a user (prompt, error text, logs, parameter values, paths) goes through `esc`.
The markup keeps to what JupyterLab's sanitizer lets through for an untrusted notebook (inline
styles, `<details>`, `<img>`/`<video>`/`<audio>` with data URIs, `overflow-wrap:break-word`
rather than `anywhere`), so a notebook opened by someone else shows the same card.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .._models import Task
from ._preview import SHOWN_WIDTH
from ._state import TERMINAL_STATES, CardState

__all__ = [
    "STATE_COLORS",
    "TERMINAL_STATES",
    "WIDGET_VIEW_MIME",
    "badge_html",
    "card_body_html",
    "card_head_html",
    "card_html",
    "card_prompt_html",
    "card_status_html",
    "details_html",
    "display_path",
    "esc",
    "fallback_bundle",
    "format_bytes",
    "format_seconds",
    "grid_html",
    "headline_html",
    "progress_text",
    "summary_text",
]

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: Only the tail of a task's logs is shown.
MAX_LOG_LINES = 200

STATE_COLORS: Mapping[str, str] = {
    "submitting": "#868e96",
    "waiting": "#adb5bd",
    "queued": "#6c757d",
    "running": "#0d6efd",
    "succeeded": "#198754",
    "failed": "#dc3545",
    "cancelled": "#fd7e14",
    "expired": "#6f42c1",
    "error": "#b02a37",
}
_SMALL = "font-size:0.85em;color:#555"
RESUME_HINT = "after a kernel restart, genwidgets.resume() follows it again"


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too: values may land in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------------------------- numbers
def format_seconds(seconds: float | None) -> str:
    """A short elapsed-time string: '0.4 s', '12 s', '3:05', '1:02:03'."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def display_path(path: Path | str, cache_root: Path | None = None, base: Path | None = None) -> str:
    """A path as a saved notebook may show it: relative to the notebook's folder (the kernel's
    working directory) when inside it, else relative to the genwidgets cache; never absolute,
    never the home directory. `task.outputs[i].path` keeps the real path."""
    target = Path(path)
    for root, label in ((base or Path.cwd(), ""), (cache_root, "[genwidgets cache]/")):
        if root is None:
            continue
        try:
            return label + target.resolve().relative_to(Path(root).resolve()).as_posix()
        except (ValueError, OSError):
            continue
    return f"…/{target.name}"


def _short(where: str) -> str:
    """A cache file's 64-hex name shortened for reading (the full one is the tooltip)."""
    folder, _, name = where.rpartition("/")
    stem, dot, ext = name.partition(".")
    if len(stem) <= 24:
        return where
    return f"{folder}/{stem[:12]}…{stem[-8:]}{dot}{ext}"


# ---------------------------------------------------------------------------------- fragments
def badge_html(state: str) -> str:
    colour = STATE_COLORS.get(state, "#6c757d")
    return (
        f'<span class="genwidgets-badge" data-state="{esc(state)}" '
        f'style="background:{colour};color:#fff;border-radius:9px;padding:1px 8px;'
        f'font-size:0.85em;font-weight:600">{esc(state)}</span>'
    )


def headline_html(state: str, name: str | None) -> str:
    """The badge and `provider:model` (the live card's header; changes with the state only)."""
    return f'{badge_html(state)} <code class="genwidgets-model">{esc(name or "?")}</code>'


def progress_text(state: CardState, now: float | None = None) -> str:
    """The status line of a live card: what it waits for, queue position, progress."""
    task = state.task
    if state.phase == "submitting":
        return "cancelling as soon as it is submitted…" if state.cancel_requested else "submitting…"
    if state.phase == "waiting" and state.wait is not None:
        text = state.wait.message
        if state.wait.at is not None:  # a clock time: the line need not change every second
            text += f" · expected to go on at ~{state.wait.at.astimezone():%H:%M:%S}"
        return text
    if task is None or task.done:
        return ""
    parts = ["cancelling…"] if state.cancel_requested else []
    if task.queue_position is not None:
        parts.append(f"queue position {task.queue_position}")
    if task.progress is not None:
        parts.append(f"{round(task.progress * 100)} %")
    if not parts:
        parts.append("queued at the provider" if state.phase == "queued" else "running")
    return " · ".join(parts)


def _progress_bar(fraction: float | None) -> str:
    width = f"{round(fraction * 100)}%" if fraction is not None else "0%"
    return (
        '<div class="genwidgets-progress" style="height:4px;background:#e9ecef;'
        f'border-radius:2px;margin:4px 0;max-width:{SHOWN_WIDTH}px">'
        f'<div style="height:4px;width:{width};background:#0d6efd;border-radius:2px"></div></div>'
    )


def card_prompt_html(prompt: str | None) -> str:
    if not prompt:
        return ""
    return (
        '<div class="genwidgets-prompt-text" style="white-space:pre-wrap;overflow-wrap:break-word;'
        f'max-height:4.5em;overflow:auto;margin:2px 0">{esc(prompt)}</div>'
    )


def _error_html(*texts: str | None) -> str:
    shown = list(dict.fromkeys(t for t in texts if t))
    if not shown:
        return ""
    body = "<br>".join(esc(t) for t in shown)
    return (
        '<div class="genwidgets-error" style="color:#b02a37;white-space:pre-wrap;'
        f'overflow-wrap:break-word">{body}</div>'
    )


def _logs_html(logs: Sequence[str]) -> str:
    tail = list(logs)[-MAX_LOG_LINES:]
    skipped = len(logs) - len(tail)
    head = f"… {skipped} earlier lines\n" if skipped else ""
    return (
        f'<details class="genwidgets-logs" style="{_SMALL}"><summary>Logs ({len(logs)})</summary>'
        '<pre style="max-height:16em;overflow:auto;margin:0;white-space:pre-wrap">'
        f"{esc(head + chr(10).join(tail))}</pre></details>"
    )


def _param_value(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def timings(task: Task) -> list[tuple[str, str]]:
    """(label, value) pairs from the provider's timestamps: queued, ran, total, finished."""
    def delta(start: datetime | None, end: datetime | None) -> float | None:
        return None if start is None or end is None else max(0.0, (end - start).total_seconds())

    rows: list[tuple[str, str]] = []
    for label, seconds in (
        ("queued", delta(task.created_at, task.started_at)),
        ("ran", delta(task.started_at, task.finished_at)),
        ("total", task.elapsed if task.done else None),
    ):
        if seconds is not None:
            rows.append((label, format_seconds(seconds)))
    if task.finished_at is not None:
        rows.append(("finished", task.finished_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()))
    return rows


def details_html(state: CardState, cache_root: Path | None = None, open_: bool = False) -> str:
    """Saved paths, parameters, timings and the task id, folded in a `<details>`."""
    task = state.task
    rows: list[str] = []
    for preview in state.previews:
        if preview.path is not None:
            size = f" · {preview.width} × {preview.height}" if preview.width else ""
            where = display_path(preview.path, cache_root)
            rows.append(
                f"<div>{esc(preview.kind)}{esc(size)} · {esc(format_bytes(preview.size))}: "
                f'<code title="{esc(where)}" style="overflow-wrap:break-word">'
                f"{esc(_short(where))}</code></div>"
            )
    asked = task.params if task is not None else dict(state.request)
    params = {k: v for k, v in asked.items() if k != "prompt"}
    if params:
        items = ", ".join(
            f"<code>{esc(k)}={esc(_param_value(v))}</code>" for k, v in sorted(params.items())
        )
        rows.append(f'<div style="overflow-wrap:break-word">parameters: {items}</div>')
    if task is None and state.live:
        rows.append("<div>no task id yet: the request has not been accepted</div>")
    if task is not None:
        times = timings(task)
        if times:
            rows.append("<div>" + " · ".join(f"{esc(k)} {esc(v)}" for k, v in times) + "</div>")
        extra = [f'task <code style="white-space:nowrap">{esc(task.id)}</code>']
        if task.cost is not None:
            extra.append(f"cost {esc(task.cost)}")
        if task.replayed:
            extra.append("replayed from the journal (no provider call)")
        if not task.done:
            extra.append(esc(RESUME_HINT))
        rows.append("<div>" + " · ".join(extra) + "</div>")
    if not rows:
        return ""
    opened = " open" if open_ else ""
    return (
        f'<details class="genwidgets-details"{opened} style="{_SMALL};margin-top:4px">'
        f"<summary>Details</summary>{''.join(rows)}</details>"
    )


# ---------------------------------------------------------------------------------- the card
def card_status_html(state: CardState, now: float | None = None) -> str:
    """The part that changes while the task runs: one status line and a progress bar, both
    always there while live so the card keeps its height; 'downloading…' and notes after."""
    task = state.task
    if state.live:
        progress = task.progress if task is not None else None
        line = esc(progress_text(state, now)) or "&nbsp;"
        return (
            f'<div class="genwidgets-queue" style="{_SMALL};white-space:nowrap;overflow:hidden;'
            f'text-overflow:ellipsis">{line}</div>{_progress_bar(progress)}'
        )
    lines = ["downloading…"] if state.downloading else []
    if state.note:
        lines.append(state.note)
    return "".join(
        f'<div class="genwidgets-queue" style="{_SMALL}">{esc(line)}</div>' for line in lines
    )


def card_body_html(
    state: CardState,
    now: float | None = None,
    *,
    media: str = "",
    cache_root: Path | None = None,
) -> str:
    """What is under the status line: the error, the media (`media`, from `media_html`, built
    once by the caller), the logs and the folded details."""
    task = state.task
    parts = [_error_html(task.error if task is not None else None, state.error), media]
    empty = task is not None and task.done and not state.downloading and not state.previews
    if empty and task.status.value == "succeeded" and not state.error:  # type: ignore[union-attr]
        parts.append(f'<div style="{_SMALL}">The task succeeded but returned no output.</div>')
    if task is not None and task.logs:
        parts.append(_logs_html(task.logs))
    parts.append(details_html(state, cache_root))
    return "".join(p for p in parts if p)


def card_head_html(state: CardState, elapsed: str) -> str:
    timing = f' <span style="color:#666;font-size:0.9em">{esc(elapsed)}</span>' if elapsed else ""
    return f"<div>{headline_html(state.phase, state.name)}{timing}</div>"


def card_html(
    state: CardState,
    now: float,
    *,
    media: str = "",
    cache_root: Path | None = None,
) -> str:
    """The saved card: what a notebook shows with no kernel (and a finished card shows live)."""
    if state.phase in ("failed", "cancelled", "expired", "error"):
        foot = (
            '<div style="font-size:0.8em;color:#888">To submit the same again: run the cell '
            "again, or call <code>.retry()</code> on the card.</div>"
        )
    elif state.terminal:
        foot = ""
    else:
        foot = (
            f'<div style="font-size:0.8em;color:#888">Saved while {esc(state.phase)}: live '
            f"updates need a running kernel; {esc(RESUME_HINT)}.</div>"
        )
    body = (
        card_prompt_html(state.prompt)
        + card_status_html(state, now)
        + card_body_html(state, now, media=media, cache_root=cache_root)
    )
    return (
        f'<div class="genwidgets-static" data-state="{esc(state.phase)}" '
        'style="font-family:var(--jp-ui-font-family, sans-serif);border:1px solid #ddd;'
        f'border-radius:6px;padding:6px 8px;margin:2px 0;max-width:{SHOWN_WIDTH + 20}px">'
        f"{card_head_html(state, format_seconds(state.elapsed(now)))}{body}{foot}</div>"
    )


def summary_text(state: CardState, now: float, cache_root: Path | None = None) -> str:
    """The text/plain form: one line, then the error, the saved paths and the task id."""
    head = f"[{state.phase}] {state.name or '?'} ({format_seconds(state.elapsed(now))})"
    if state.prompt:
        clipped = state.prompt if len(state.prompt) <= 80 else state.prompt[:79] + "…"
        head += f": {clipped!r}"
    lines = [head]
    error = state.error or (state.task.error if state.task is not None else None)
    if error:
        lines.append(f"error: {error}")
    lines += [
        f"saved: {display_path(p.path, cache_root)}" for p in state.previews if p.path is not None
    ]
    if state.task is not None and not state.terminal:
        lines.append(f"task {state.task.id}; {RESUME_HINT}")
    return "\n".join(lines)


def grid_html(cells: Sequence[str], columns: int, header: str = "") -> str:
    """Several static cards in a table (tables survive the sanitizers that drop CSS grid)."""
    columns = max(1, columns)
    rows = []
    for start in range(0, len(cells), columns):
        row = "".join(
            f'<td style="vertical-align:top;padding:4px">{cell}</td>'
            for cell in cells[start : start + columns]
        )
        rows.append(f"<tr>{row}</tr>")
    head = f"<div>{header}</div>" if header else ""
    return f'<div class="genwidgets-static">{head}<table>{"".join(rows)}</table></div>'


def fallback_bundle(html_text: str, plain: str, model_id: str | None) -> dict[str, Any]:
    """The display bundle: the live widget view (while the widget is open), plus the static HTML
    and text that renderers without the widget fall back to."""
    bundle: dict[str, Any] = {"text/plain": plain, "text/html": html_text}
    if model_id is not None:
        bundle[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": model_id}
    return bundle
