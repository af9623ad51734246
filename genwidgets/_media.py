"""Procedural media for the `local` provider and the sandbox: real files, no neural network.

These are demos, labelled as such: images, speech and video drawn from the prompt and the seed,
deterministically, so the whole product can be tried (and tested) with no key and no network.
Pure functions: bytes out, no asyncio, no globals.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["render_audio", "render_image", "render_video", "video_poster"]

DEMO_MARK = "procedural demo"


def _rng(prompt: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _palette(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    base = rng.random()
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((base + i / n * 0.6) % 1.0, 0.55 + 0.4 * rng.random(), 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _field(prompt: str, seed: int, width: int, height: int, t: float = 0.0) -> np.ndarray:
    """An RGB uint8 array: layered sine waves whose frequencies and colours come from the prompt."""
    rng = _rng(prompt, seed)
    colours = np.array(_palette(rng, 3), dtype=np.float32) / 255.0
    waves = rng.uniform(1.0, 6.0, size=(3, 2))
    phases = rng.uniform(0, 2 * math.pi, size=3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= max(width, 1)
    y /= max(height, 1)
    image = np.zeros((height, width, 3), dtype=np.float32)
    for i in range(3):
        layer = 0.5 + 0.5 * np.sin(
            2 * math.pi * (waves[i, 0] * x + waves[i, 1] * y) + phases[i] + t * (i + 1)
        )
        image += layer[..., None] * colours[i]
    image /= max(float(image.max()), 1e-6)
    return (image * 255).astype(np.uint8)


def render_image(prompt: str, seed: int = 0, width: int = 512, height: int = 512) -> bytes:
    """A PNG drawn from prompt and seed: same inputs, same bytes."""
    array = _field(prompt, seed, width, height)
    image = Image.fromarray(array, "RGB")
    draw = ImageDraw.Draw(image)
    rng = _rng(prompt, seed + 1)
    for colour in _palette(rng, int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        r = rng.uniform(0.05, 0.2) * min(width, height)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(255, 255, 255))
    _caption(draw, prompt, seed, width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


#: caption lines at most (then "…"), and the height of one line of the default font
CAPTION_LINES = 2
_LINE = 12


def caption_lines(
    text: str, fits: Callable[[str], bool], max_lines: int = CAPTION_LINES
) -> list[str]:
    """`text` on at most `max_lines` lines that each `fits`: whitespace (newlines too) folded
    into single spaces, words wrapped, a word too long for a line cut, the last line ended with
    "…" when text is left over. Pure, so it is tested without drawing."""
    words = text.split()
    lines: list[str] = []
    while words and len(lines) < max_lines:
        line = words.pop(0)
        cut = len(line)
        while cut > 1 and not fits(line[:cut]):  # one word wider than the image: cut it
            cut -= 1
        if cut < len(line):
            words.insert(0, line[cut:])
            line = line[:cut]
        while words and fits(f"{line} {words[0]}"):
            line = f"{line} {words.pop(0)}"
        lines.append(line)
    if words and lines:
        last = lines[-1]
        while last and not fits(last + "…"):  # drop whole words first, then characters
            last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
        lines[-1] = last + "…"
    return lines


def _caption(draw: ImageDraw.ImageDraw, prompt: str, seed: int, width: int, height: int) -> None:
    """The prompt (wrapped, at most two lines) and the demo mark in a black bar at the bottom.

    The bar grows with the lines, so a multi-line `%%gen` prompt never overprints the mark."""
    font = ImageFont.load_default()
    room = max(1, width - 12)

    def fits(line: str) -> bool:
        return draw.textlength(line, font=font) <= room

    lines = caption_lines(prompt, fits)
    top = height - 16 - _LINE * len(lines)
    draw.rectangle((0, top, width, height), fill=(0, 0, 0))
    for number, line in enumerate(lines):
        draw.text((6, top + 2 + _LINE * number), line, fill=(255, 255, 255), font=font)
    mark = caption_lines(f"{DEMO_MARK} · seed {seed}", fits, 1)
    draw.text((6, height - 14), "".join(mark), fill=(200, 200, 200), font=font)


def render_audio(prompt: str, seed: int = 0, seconds: float = 2.0, speech: bool = True) -> bytes:
    """A WAV: the prompt spoken by espeak-ng when installed, else a melody from prompt and seed."""
    espeak = shutil.which("espeak-ng") if speech else None
    if espeak and prompt.strip():
        try:
            done = subprocess.run(  # an argument list, never a shell: the prompt is untrusted
                [espeak, "--stdout", "-s", "150", "--", prompt[:500]],
                capture_output=True,
                timeout=20,
                check=True,
            )
            if done.stdout[:4] == b"RIFF":
                return _fix_wav_sizes(done.stdout)
        except (OSError, subprocess.SubprocessError):
            pass  # fall back to the synthesized melody
    return _melody(prompt, seed, seconds)


def _fix_wav_sizes(data: bytes) -> bytes:
    """espeak-ng writes to a pipe, so its RIFF header lacks the sizes: rewrite it cleanly."""
    if data[:4] != b"RIFF" or len(data) < 44:
        return data
    channels = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    width = int.from_bytes(data[34:36], "little") // 8
    frames = data[44:]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels or 1)
        out.setsampwidth(width or 2)
        out.setframerate(rate or 22050)
        out.writeframes(
            frames[: len(frames) - len(frames) % max(1, (width or 2) * (channels or 1))]
        )
    return buffer.getvalue()


def _melody(prompt: str, seed: int, seconds: float) -> bytes:
    rate = 22050
    rng = _rng(prompt, seed)
    seconds = max(0.1, float(seconds))
    notes = int(max(2, min(32, seconds * 4)))
    scale = np.array([0, 2, 4, 7, 9, 12, 14])
    pitches = 220.0 * 2 ** (rng.choice(scale, size=notes) / 12.0)
    per = int(rate * seconds / notes)
    t = np.arange(per) / rate
    envelope = np.minimum(1.0, t * 40) * np.exp(-3.0 * t / (per / rate))
    samples = np.concatenate([np.sin(2 * math.pi * f * t) * envelope for f in pitches])
    pcm = (samples * 0.6 * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def render_video(
    prompt: str,
    seed: int = 0,
    seconds: float = 2.0,
    fps: int = 12,
    width: int = 256,
    height: int = 256,
    progress: Callable[[float], None] | None = None,
) -> bytes:
    """An H.264 MP4 (yuv420p, faststart) that browsers play; `progress(fraction)` per frame may
    raise to stop early (that is how the local engine cancels)."""

    width, height = max(2, width - width % 2), max(2, height - height % 2)
    frames = max(1, round(seconds * fps))
    # faststart (moov atom first, so playback starts before the end arrives) needs a real file:
    # the muxer rewrites it in a second pass.
    with tempfile.TemporaryDirectory(prefix="genwidgets-") as folder:
        path = os.path.join(folder, "video.mp4")
        _encode(path, prompt, seed, frames, fps, width, height, progress)
        with open(path, "rb") as handle:
            return handle.read()


def _encode(
    path: str,
    prompt: str,
    seed: int,
    frames: int,
    fps: int,
    width: int,
    height: int,
    progress: Callable[[float], None] | None,
) -> None:
    import av

    with av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28", "threads": "1"}
        for index in range(frames):
            array = _field(prompt, seed, width, height, t=index / fps * 2.0)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            if progress is not None:
                progress((index + 1) / frames)
        for packet in stream.encode():
            container.mux(packet)


def video_poster(mp4: bytes, max_size: int = 512) -> bytes:
    """A PNG of the first frame, for thumbnails and static notebook fallbacks."""
    import av

    with av.open(io.BytesIO(mp4)) as container:
        frame = next(container.decode(video=0))
        image = frame.to_image()
    image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
