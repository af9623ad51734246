"""Pure formatting for the widgets: escaped HTML fragments, text summaries, media previews and
the static fallback bundle a saved notebook shows without a kernel.

Kept apart from the widget classes (as tqdm keeps its notebook bar's text formatting apart from
the widget) so every string that reaches the browser is built, escaped and tested here, with no
ipywidgets import. Everything from a server or a user (prompt, error text, logs, parameter
values, paths) goes through `esc` before it is put in HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .._models import Output, OutputKind, Task

__all__ = [
    "MAX_AUDIO_DATA_URI",
    "MAX_INLINE_BYTES",
    "STATE_COLORS",
    "THUMB_SIZE",
    "MediaPreview",
    "badge_html",
    "details_html",
    "error_html",
    "esc",
    "fallback_bundle",
    "fallback_html",
    "format_bytes",
    "format_seconds",
    "headline_html",
    "logs_html",
    "prepare_previews",
    "progress_text",
    "prompt_html",
    "summary_text",
    "thumbnail",
    "title_html",
]

#: Media larger than this (per card, all outputs together) is not pushed through the comm: a
#: multi-hundred-MB video would freeze the browser tab. The card shows a poster frame or thumbnail
#: and the saved path instead.
MAX_INLINE_BYTES = 50 * 1024 * 1024
#: Longest side of the thumbnails embedded in the static fallback (base64 in the .ipynb).
THUMB_SIZE = 320
#: Audio is embedded in the static fallback as a data URI only up to this size.
MAX_AUDIO_DATA_URI = 256 * 1024
#: Only the tail of a task's logs is shown.
MAX_LOG_LINES = 200
#: Text outputs are clipped to this many characters in the card.
MAX_TEXT_CHARS = 20_000

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

#: Card states: the task statuses, plus "submitting" (no task yet) and "error" (the client
#: raised: the submit was refused or tracking was lost; the error text says which).
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
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "expired", "error"})


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
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - loop always returns


def _span(seconds: float | None) -> str:
    return format_seconds(seconds) if seconds is not None else "?"


def _delta(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


# ---------------------------------------------------------------------------------- fragments
def badge_html(state: str) -> str:
    colour = STATE_COLORS.get(state, "#6c757d")
    return (
        f'<span class="genwidgets-badge" data-state="{esc(state)}" '
        f'style="background:{colour};color:#fff;border-radius:9px;padding:1px 8px;'
        f'font-size:0.85em;font-weight:600">{esc(state)}</span>'
    )


def title_html(name: str | None, task_id: str | None = None) -> str:
    tip = f' title="task {esc(task_id)}"' if task_id else ""
    return f'<code class="genwidgets-model"{tip}>{esc(name or "?")}</code>'


def headline_html(state: str, name: str | None, task_id: str | None = None) -> str:
    """The badge and `provider:model`: one widget, changed only when the state changes."""
    return f"{badge_html(state)} {title_html(name, task_id)}"


def prompt_html(prompt: str | None) -> str:
    if not prompt:
        return ""
    return f'<div style="white-space:pre-wrap;overflow-wrap:anywhere">{esc(prompt)}</div>'


def progress_text(task: Task | None) -> str:
    """'queue position 3', '42 %' or '' when the provider reports neither."""
    if task is None or task.done:
        return ""
    parts = []
    if task.queue_position is not None:
        parts.append(f"queue position {task.queue_position}")
    if task.progress is not None:
        parts.append(f"{round(task.progress * 100)} %")
    return " · ".join(parts)


def error_html(*texts: str | None) -> str:
    shown = [t for t in texts if t]
    if not shown:
        return ""
    body = "<br>".join(esc(t) for t in shown)
    return f'<div style="color:#b02a37;white-space:pre-wrap;overflow-wrap:anywhere">{body}</div>'


def logs_html(logs: Sequence[str]) -> str:
    tail = list(logs)[-MAX_LOG_LINES:]
    skipped = len(logs) - len(tail)
    head = f"… {skipped} earlier lines\n" if skipped else ""
    return (
        '<pre style="max-height:16em;overflow:auto;font-size:0.85em;margin:0">'
        f"{esc(head + chr(10).join(tail))}</pre>"
    )


def _param_value(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def timings(task: Task) -> list[tuple[str, str]]:
    """(label, value) pairs: queued, running, total, and when it finished."""
    rows: list[tuple[str, str]] = []
    queued = _delta(task.created_at, task.started_at)
    running = _delta(task.started_at, task.finished_at)
    if queued is not None:
        rows.append(("queued", format_seconds(queued)))
    if running is not None:
        rows.append(("ran", format_seconds(running)))
    if task.elapsed is not None:
        rows.append(("total", format_seconds(task.elapsed)))
    if task.finished_at is not None:
        rows.append(("finished", task.finished_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()))
    return rows


def details_html(task: Task, previews: Sequence[MediaPreview] = ()) -> str:
    """The saved path(s), the parameters and the timings of a finished task."""
    rows: list[str] = []
    for preview in previews:
        if preview.path is not None:
            digest = f" · sha256 {esc(preview.sha256[:12])}…" if preview.sha256 else ""
            rows.append(
                f"<div>saved: <code>{esc(preview.path)}</code> "
                f"({esc(preview.kind)}, {esc(format_bytes(preview.size))}{digest})</div>"
            )
    params = {k: v for k, v in task.params.items() if k != "prompt"}
    if params:
        items = ", ".join(
            f"<code>{esc(k)}={esc(_param_value(v))}</code>" for k, v in sorted(params.items())
        )
        rows.append(f"<div>parameters: {items}</div>")
    times = timings(task)
    if times:
        rows.append("<div>" + " · ".join(f"{esc(k)} {esc(v)}" for k, v in times) + "</div>")
    extra = [f"task <code>{esc(task.id)}</code>"]
    if task.cost is not None:
        extra.append(f"cost {esc(task.cost)}")
    if task.replayed:
        extra.append("replayed from the journal (no provider call)")
    rows.append("<div>" + " · ".join(extra) + "</div>")
    return f'<div style="font-size:0.85em;color:#555">{"".join(rows)}</div>'


# ---------------------------------------------------------------------------------- media
@dataclass(frozen=True)
class MediaPreview:
    """What the card can show for one output, prepared off the event loop.

    `data` is the file's bytes when it fits the inline budget (sent to the browser once), else
    None; `poster` (of type `poster_mime`) is a video's first frame, or an oversized image's
    reduced copy, shown in its place; `thumb` is the small image embedded in the static fallback.
    """

    kind: OutputKind
    path: Path | None = None
    size: int | None = None
    mime: str | None = None
    sha256: str | None = None
    data: bytes | None = None
    poster: bytes | None = None
    poster_mime: str | None = "image/png"
    thumb: bytes | None = None
    thumb_mime: str | None = None
    audio_uri: str | None = None
    text: str | None = None
    note: str | None = None

    @property
    def format(self) -> str:
        """The ipywidgets `format` (MIME subtype) for `data`."""
        if self.mime and "/" in self.mime:
            return self.mime.split("/", 1)[1]
        return {"image": "png", "video": "mp4", "audio": "wav"}.get(self.kind, "octet-stream")


_MIME_FIXES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/x-flac": "audio/flac",
    "audio/x-m4a": "audio/mp4",
}


def _sniff_mime(path: Path, declared: str | None) -> str | None:
    """The file's type from its magic bytes, else the declared type, else its suffix."""
    mime: str | None = None
    try:
        import filetype

        with path.open("rb") as handle:
            kind = filetype.guess(handle.read(262))
        mime = kind.mime if kind is not None else None
    except (ImportError, OSError):
        mime = None
    if mime is None and declared:
        mime = declared.split(";", 1)[0].strip().lower() or None
    if mime is None:
        mime = mimetypes.guess_type(path.name)[0]
    return _MIME_FIXES.get(mime, mime) if mime else None


def thumbnail(source: bytes | Path, max_size: int = THUMB_SIZE) -> tuple[bytes, str] | None:
    """A small JPEG (PNG when the image has transparency), or None if it cannot be decoded."""
    try:
        from PIL import Image

        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened as image:
            image.draft("RGB", (max_size, max_size))  # JPEG: decode at reduced size
            image.thumbnail((max_size, max_size))
            buffer = io.BytesIO()
            has_alpha = image.mode in ("RGBA", "LA") or (
                image.mode == "P" and "transparency" in image.info
            )
            if has_alpha:
                image.convert("RGBA").save(buffer, format="PNG", optimize=True)
                return buffer.getvalue(), "image/png"
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
            return buffer.getvalue(), "image/jpeg"
    except Exception:  # any decoder error: the fallback just has no picture
        return None


def _poster(data: bytes) -> bytes | None:
    try:
        from .._media import video_poster

        return video_poster(data)
    except Exception:  # an undecodable or unusual video: no poster frame
        return None


def _too_large_note(kind: str, size: int, limit: int, path: Path, shown: str) -> str:
    return (
        f"This {kind} is {format_bytes(size)}, over the {format_bytes(limit)} that a card sends to "
        f"the browser, so {shown}. Saved at {path}"
    )


def prepare_preview(output: Output, budget: int, limit: int) -> MediaPreview:
    """Read one downloaded output and build what the card and the static fallback show.

    Does file IO and decoding, so callers run it off the event loop (`asyncio.to_thread`).
    """
    if output.path is None:
        if output.text is not None:
            return MediaPreview(kind=output.kind, text=output.text[:MAX_TEXT_CHARS])
        return MediaPreview(kind=output.kind, note="no local file for this output")
    path = Path(output.path)
    try:
        size = path.stat().st_size
    except OSError:
        return MediaPreview(kind=output.kind, path=path, note=f"file missing: {path}")
    mime = _sniff_mime(path, output.content_type)
    kind: OutputKind = output.kind
    major = mime.split("/", 1)[0] if mime else None
    if major in ("image", "video", "audio") and major != kind:
        kind = major  # type: ignore[assignment]  # trust the bytes over the label
    base = {"kind": kind, "path": path, "size": size, "mime": mime, "sha256": output.sha256}
    if kind == "text":
        with path.open("rb") as handle:
            text = handle.read(MAX_TEXT_CHARS * 4).decode("utf-8", "replace")[:MAX_TEXT_CHARS]
        return MediaPreview(**base, text=text)
    inline = size <= budget
    data = path.read_bytes() if inline else None
    if kind == "image":
        thumb = thumbnail(data if data is not None else path)
        reduced = None
        note = None
        if data is None:
            reduced = thumbnail(path, 1024)
            shown = "a reduced copy is shown" if reduced else "it is not shown"
            note = _too_large_note("image", size, limit, path, shown)
        return MediaPreview(
            **base,
            data=data,
            poster=reduced[0] if reduced else None,
            poster_mime=reduced[1] if reduced else None,
            thumb=thumb[0] if thumb else None,
            thumb_mime=thumb[1] if thumb else None,
            note=note,
        )
    if kind == "video":
        poster = _poster(data if data is not None else path.read_bytes())
        thumb = thumbnail(poster) if poster else None
        note = None
        if data is None:
            shown = "its first frame is shown" if poster else "it is not shown"
            note = _too_large_note("video", size, limit, path, shown)
        return MediaPreview(
            **base,
            data=data,
            poster=poster,
            thumb=thumb[0] if thumb else None,
            thumb_mime=thumb[1] if thumb else None,
            note=note,
        )
    # audio
    audio_uri = None
    if size <= MAX_AUDIO_DATA_URI:
        raw = data if data is not None else path.read_bytes()
        audio_uri = f"data:{mime or 'audio/wav'};base64,{base64.b64encode(raw).decode('ascii')}"
    note = None if data is not None else _too_large_note("audio", size, limit, path, "not shown")
    return MediaPreview(**base, data=data, audio_uri=audio_uri, note=note)


def prepare_previews(
    outputs: Iterable[Output], limit: int = MAX_INLINE_BYTES
) -> list[MediaPreview]:
    """Previews of all outputs; together they push at most `limit` bytes to the browser."""
    previews = []
    remaining = limit
    for output in outputs:
        preview = prepare_preview(output, remaining, limit)
        remaining -= len(preview.data or b"")
        previews.append(preview)
    return previews


# ---------------------------------------------------------------------------------- summaries
def summary_text(
    name: str | None,
    state: str,
    *,
    elapsed: str = "",
    prompt: str | None = None,
    error: str | None = None,
    previews: Sequence[MediaPreview] = (),
) -> str:
    """The text/plain form: one line, then the error and the saved paths."""
    head = f"[{state}] {name or '?'}"
    if elapsed:
        head += f" ({elapsed})"
    if prompt:
        clipped = prompt if len(prompt) <= 80 else prompt[:79] + "…"
        head += f": {clipped!r}"
    lines = [head]
    if error:
        lines.append(f"error: {error}")
    lines += [f"saved: {p.path}" for p in previews if p.path is not None]
    return "\n".join(lines)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _static_media(preview: MediaPreview) -> str:
    parts = []
    if preview.thumb is not None:
        alt = "first frame of the video" if preview.kind == "video" else "generated image"
        parts.append(
            f'<img src="{_data_uri(preview.thumb, preview.thumb_mime or "image/jpeg")}" '
            f'alt="{alt}" style="max-width:100%;height:auto;display:block">'
        )
    if preview.kind == "audio" and preview.audio_uri is not None:
        parts.append(f'<audio controls preload="none" src="{esc(preview.audio_uri)}"></audio>')
    if preview.text is not None:
        parts.append(
            '<pre style="white-space:pre-wrap;max-height:12em;overflow:auto">'
            f"{esc(preview.text[:2000])}</pre>"
        )
    if preview.path is not None:
        label = "video (first frame shown)" if preview.kind == "video" else preview.kind
        parts.append(
            f'<div style="font-size:0.85em;color:#555">{esc(label)}, '
            f"{esc(format_bytes(preview.size))}: <code>{esc(preview.path)}</code></div>"
        )
    elif preview.note:
        parts.append(f'<div style="font-size:0.85em;color:#555">{esc(preview.note)}</div>')
    return "".join(parts)


def fallback_html(
    *,
    name: str | None,
    state: str,
    elapsed: str = "",
    prompt: str | None = None,
    error: str | None = None,
    task: Task | None = None,
    previews: Sequence[MediaPreview] = (),
) -> str:
    """The static card: what GitHub, nbviewer and `nbconvert --to html` show with no kernel.

    No script, no external resource; images are small base64 thumbnails, audio a data URI only
    when small; every text is escaped.
    """
    timing = f' <span style="color:#666">{esc(elapsed)}</span>' if elapsed else ""
    parts = [
        f"<div>{badge_html(state)} {title_html(name)}{timing}</div>",
        prompt_html(prompt),
        error_html(error, task.error if task is not None else None),
        *(_static_media(p) for p in previews),
    ]
    if task is not None and task.done:
        parts.append(details_html(task, ()))
    if state in TERMINAL_STATES:
        foot = "static snapshot of a genwidgets card"
    else:
        foot = "genwidgets card: live updates need a running kernel"
    parts.append(f'<div style="font-size:0.75em;color:#999">{foot}</div>')
    body = "".join(p for p in parts if p)
    return (
        '<div class="genwidgets-static" style="font-family:sans-serif;border:1px solid #ddd;'
        'border-radius:6px;padding:8px;margin:2px 0;max-width:560px">'
        f"{body}</div>"
    )


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
    """The display bundle: the live widget view (when the widget is open), plus the static HTML
    and text that renderers without widget state fall back to."""
    bundle: dict[str, Any] = {"text/plain": plain, "text/html": html_text}
    if model_id is not None:
        bundle[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": model_id}
    return bundle
