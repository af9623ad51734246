"""The markup of one output (image, video, audio, text), shared by the live card and its saved
form. Media are embedded as data URIs (`_preview` decides what fits), shown at their natural size
up to `SHOWN_WIDTH` CSS px and never stretched; video and audio never autoplay or loop."""

from __future__ import annotations

import base64
from collections.abc import Iterable

from ._preview import SHOWN_WIDTH, MediaPreview
from ._render import _SMALL, esc

__all__ = ["join_media", "media_html"]


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _shown_width(preview: MediaPreview) -> int | None:
    return min(preview.width, SHOWN_WIDTH) if preview.width else None


def media_html(preview: MediaPreview) -> str:
    """One output: at its natural size up to `SHOWN_WIDTH` px wide, never stretched; a wider
    image opens at full size under a toggle; a video plays in a `<video>` element."""
    fit = "max-width:100%;height:auto;display:block"
    width = _shown_width(preview)
    size = f' width="{width}"' if width else ""
    kind, parts = preview.kind, []
    if kind == "image" and (preview.data or preview.preview):
        shown = preview.preview or preview.data
        mime = preview.preview_mime if preview.preview else preview.mime
        parts.append(
            f'<img class="genwidgets-image" src="{_uri(shown, mime or "image/png")}"{size} '  # type: ignore[arg-type]
            f'alt="generated image" style="{fit}">'
        )
        if preview.preview and preview.data:
            parts.append(
                f'<details style="{_SMALL}"><summary>full size ({preview.width} × '
                f'{preview.height})</summary><div style="overflow:auto">'
                f'<img src="{_uri(preview.data, preview.mime or "image/png")}" '
                f'width="{preview.width}" alt="generated image, full size" '
                'style="max-width:none"></div></details>'
            )
    elif kind == "video" and preview.data:
        poster = (
            f' poster="{_uri(preview.preview, preview.preview_mime or "image/jpeg")}"'
            if preview.preview
            else ""
        )
        parts.append(
            f'<video class="genwidgets-video" controls preload="metadata"{size}{poster} '
            f'src="{_uri(preview.data, preview.mime or "video/mp4")}" style="{fit}"></video>'
        )
    elif kind == "video" and preview.preview:
        poster_uri = _uri(preview.preview, preview.preview_mime or "image/jpeg")
        parts.append(
            f'<img class="genwidgets-poster" src="{poster_uri}"{size} '
            f'alt="first frame of the video" style="{fit}">'
        )
    elif kind == "audio" and preview.data:
        parts.append(
            '<audio class="genwidgets-audio" controls preload="metadata" '
            f'src="{_uri(preview.data, preview.mime or "audio/wav")}" '
            f'style="max-width:100%;width:{SHOWN_WIDTH}px"></audio>'
        )
    if preview.text is not None:
        parts.append(
            '<pre class="genwidgets-text" style="white-space:pre-wrap;max-height:20em;'
            f'overflow:auto">{esc(preview.text)}</pre>'
        )
    if preview.note:
        parts.append(f'<div style="{_SMALL}">{esc(preview.note)}</div>')
    return f'<div style="margin:4px 0">{"".join(parts)}</div>'


def join_media(previews: Iterable[MediaPreview]) -> str:
    """All outputs of a card (built once, off the event loop: base64 of megabytes)."""
    return "".join(media_html(p) for p in previews)
