"""What a card shows for each downloaded output, prepared once, off the event loop.

A finished card is HTML (`_render.card_html`): the same markup is the live view and what a saved
notebook shows with no kernel (JupyterLab, Notebook 7, nbviewer, `nbconvert --to html`), so its
media are embedded as data URIs. Embedding is bounded: an image up to `MAX_IMAGE_EMBED` is
embedded as it is (a reduced copy beyond that), a video up to `MAX_VIDEO_EMBED` plays in a
`<video>` element (its first frame beyond that), audio up to `MAX_AUDIO_EMBED`; all outputs of a
card share `MAX_CARD_EMBED`. What is left out is named with its path and size.
"""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._models import Output, OutputKind

__all__ = [
    "MAX_AUDIO_EMBED",
    "MAX_CARD_EMBED",
    "MAX_IMAGE_EMBED",
    "MAX_VIDEO_EMBED",
    "SHOWN_WIDTH",
    "MediaPreview",
    "prepare_preview",
    "prepare_previews",
    "reduced_copy",
]

#: Media are shown at their natural size up to this width (CSS px); wider ones get a toggle.
SHOWN_WIDTH = 512
MAX_IMAGE_EMBED = 3 * 1024 * 1024
MAX_VIDEO_EMBED = 10 * 1024 * 1024
MAX_AUDIO_EMBED = 5 * 1024 * 1024
#: All embedded bytes of one card together (the notebook file grows by about 4/3 of this).
MAX_CARD_EMBED = 16 * 1024 * 1024
#: Text outputs are clipped to this many characters in the card.
MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class MediaPreview:
    """One output as the card shows it.

    `data` (of type `mime`) is the file itself when it fits the embedding budget, else None;
    `preview` (of type `preview_mime`) is the picture shown at most `SHOWN_WIDTH` wide: a reduced
    copy of a wide or oversized image, or a video's first frame (its poster). `width`/`height`
    are the natural size in pixels.
    """

    kind: OutputKind
    path: Path | None = None
    size: int | None = None
    mime: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    data: bytes | None = None
    preview: bytes | None = None
    preview_mime: str | None = None
    text: str | None = None
    note: str | None = None

    @property
    def embedded(self) -> int:
        return len(self.data or b"") + len(self.preview or b"")


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


def _encode(image: object, max_size: int) -> tuple[bytes, str]:
    """A JPEG of at most `max_size` px wide (PNG when the image has transparency)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    if image.width > max_size:
        image = image.resize((max_size, max(1, round(image.height * max_size / image.width))))
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image.convert("RGBA").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), "image/png"
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), "image/jpeg"


def reduced_copy(source: bytes | Path, max_size: int) -> tuple[bytes, str, int, int] | None:
    """(bytes, mime, natural width, natural height) of a copy at most `max_size` wide, or None if
    the image cannot be decoded."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            image.draft("RGB", (max_size, max_size))  # JPEG: decode at reduced size
            data, mime = _encode(image, max_size)
        return data, mime, width, height
    except Exception:  # any decoder error: no picture, the path is still shown
        return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def _first_frame(path: Path) -> tuple[bytes, str, int, int] | None:
    """The first frame of a video as a picture at most `SHOWN_WIDTH` wide, and its size."""
    try:
        import av

        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            image = frame.to_image()
        width, height = image.size
        data, mime = _encode(image, SHOWN_WIDTH)
        return data, mime, width, height
    except Exception:  # an undecodable or unusual video: no poster frame
        return None


def _left_out(kind: str, size: int, what: str) -> str:
    from ._render import format_bytes

    return f"This {kind} is {format_bytes(size)}, too large to embed in the notebook: {what}."


def prepare_preview(output: Output, budget: int) -> MediaPreview:
    """Read one downloaded output and build what the card shows (`budget`: bytes it may embed).

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
        return MediaPreview(kind=output.kind, path=path, note="the file is missing")
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
    if kind == "image":
        return _image_preview(base, path, size, budget)
    if kind == "video":
        frame = _first_frame(path)
        poster = {}
        if frame is not None:
            poster = {"preview": frame[0], "preview_mime": frame[1]}
            poster.update(width=frame[2], height=frame[3])
        if size <= min(MAX_VIDEO_EMBED, budget):
            return MediaPreview(**base, **poster, data=path.read_bytes())
        shown = "its first frame is shown" if frame else "open the file to play it"
        return MediaPreview(**base, **poster, note=_left_out("video", size, shown))
    if size <= min(MAX_AUDIO_EMBED, budget):
        return MediaPreview(**base, data=path.read_bytes())
    return MediaPreview(**base, note=_left_out("audio", size, "open the file to play it"))


def _image_preview(base: dict[str, object], path: Path, size: int, budget: int) -> MediaPreview:
    if size <= min(MAX_IMAGE_EMBED, budget):
        data = path.read_bytes()
        natural = _image_size(data)
        if natural is None:
            return MediaPreview(**base, note="the image could not be decoded")  # type: ignore[arg-type]
        width, height = natural
        reduced = reduced_copy(data, SHOWN_WIDTH) if width > SHOWN_WIDTH else None
        extra = {"preview": reduced[0], "preview_mime": reduced[1]} if reduced else {}
        return MediaPreview(**base, data=data, width=width, height=height, **extra)  # type: ignore[arg-type]
    reduced = reduced_copy(path, SHOWN_WIDTH * 2)
    if reduced is None:
        return MediaPreview(**base, note="the image could not be decoded")  # type: ignore[arg-type]
    return MediaPreview(
        **base,  # type: ignore[arg-type]
        width=reduced[2],
        height=reduced[3],
        preview=reduced[0],
        preview_mime=reduced[1],
        note=_left_out("image", size, "a reduced copy is shown"),
    )


def prepare_previews(
    outputs: Iterable[Output], limit: int = MAX_CARD_EMBED
) -> tuple[MediaPreview, ...]:
    """Previews of all outputs; together they embed at most about `limit` bytes."""
    previews = []
    remaining = limit
    for output in outputs:
        preview = prepare_preview(output, max(0, remaining))
        remaining -= preview.embedded
        previews.append(preview)
    return tuple(previews)
