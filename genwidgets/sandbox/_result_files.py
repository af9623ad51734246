"""The bytes behind result-file URLs: real media from `genwidgets._media`, memoized.

A video model's result is an H.264 MP4 (PyAV), an audio model's a WAV, an image model's a PNG,
each as long as the task asked (`duration` or `seconds`, capped at `MAX_MEDIA_SECONDS` so a typo
cannot pin the sandbox's CPU) or `MediaSizes`' default. Rendering happens off the event loop (a
small thread pool) and at small sizes; the same (kind, prompt, seed, seconds) is rendered once
while it stays in a bounded LRU, and concurrent requests for the same file share one render. Big
files for download benchmarks are never rendered: they are streamed from one repeated block
(`big_chunks`) without holding the whole body in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_MEDIA_SECONDS", "MediaSizes", "Renderer", "big_chunks", "requested_seconds"]

#: The longest video or audio the sandbox renders, whatever the request says (the catalogues'
#: video models offer 5 or 10 s); longer requests get this length.
MAX_MEDIA_SECONDS = 30.0
#: The request fields that set a clip's length (`duration` at the providers, `seconds` locally).
_LENGTH_FIELDS = ("duration", "seconds")
#: What a rendered file is memoized by: (kind, prompt, seed, clip seconds or None).
_Key = tuple[str, str, int, float | None]


def requested_seconds(params: Any) -> float | None:
    """The clip length a submit asked for, in seconds (None: not asked, or not a usable number).

    Providers spell it as a number or, like RixAPI's Kling, as text ("5"); it is clamped to
    `MAX_MEDIA_SECONDS`.
    """
    if not isinstance(params, dict):
        return None
    for name in _LENGTH_FIELDS:
        value = params.get(name)
        if isinstance(value, bool) or value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds > 0 and seconds == seconds:  # not NaN
            return min(seconds, MAX_MEDIA_SECONDS)
    return None


@dataclass(frozen=True)
class MediaSizes:
    """How big the rendered media are: small on purpose, so benchmarks measure the client."""

    image: int = 256
    video: int = 128
    video_seconds: float = 1.0
    video_fps: int = 8
    audio_seconds: float = 1.0


class Renderer:
    """Bounded LRU of rendered media, keyed by (kind, prompt, seed, seconds)."""

    def __init__(
        self,
        sizes: MediaSizes | None = None,
        *,
        max_items: int = 256,
        max_bytes: int = 64 * 2**20,
        workers: int = 2,
    ) -> None:
        self.sizes = sizes or MediaSizes()
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._cache: OrderedDict[_Key, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[_Key, asyncio.Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self.renders = 0  # how many times something was actually rendered

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def get(self, kind: str, prompt: str, seed: int, seconds: float | None = None) -> bytes:
        """The file's bytes; `seconds` is the clip length asked for (None: the default)."""
        key: _Key = (kind, prompt, seed, seconds)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        pending = self._inflight.get(key)  # only touched on the loop thread
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="sandbox-render")
        future: asyncio.Future[bytes] = loop.run_in_executor(self._pool, self.render, *key)
        self._inflight[key] = future
        try:
            data = await asyncio.shield(future)
        finally:
            self._inflight.pop(key, None)
        self._remember(key, data)
        return data

    def _remember(self, key: _Key, data: bytes) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = data
            self._bytes += len(data)
            while self._cache and (
                len(self._cache) > self.max_items or self._bytes > self.max_bytes
            ):
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old)

    def render(self, kind: str, prompt: str, seed: int, seconds: float | None = None) -> bytes:
        """Bytes of one file (blocking; runs in the pool)."""
        from .. import _media  # imported late so the sandbox imports fast

        with self._lock:
            self.renders += 1
        s = self.sizes
        if kind == "image":
            return _as_bytes(_media.render_image(prompt, seed, s.image, s.image))
        if kind == "audio":  # a length asked for is honoured exactly: a melody, not speech
            length = seconds or s.audio_seconds
            return _as_bytes(_media.render_audio(prompt, seed, length, speech=seconds is None))
        if kind == "video":
            length = seconds or s.video_seconds
            return _as_bytes(
                _media.render_video(prompt, seed, length, s.video_fps, s.video, s.video)
            )
        return f"Sandbox reply (seed {seed}) to: {prompt}\n".encode()


def _as_bytes(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"genwidgets._media returned {type(value).__name__}, expected bytes")


_BLOCK = 1 << 20


def _block() -> bytes:
    """1 MiB of deterministic, incompressible-looking bytes (the same for every big file)."""
    seed = b"genwidgets sandbox big file"
    out = bytearray()
    counter = 0
    while len(out) < _BLOCK:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:_BLOCK])


_BIG_BLOCK: bytes | None = None


async def big_chunks(size: int, chunk: int = _BLOCK) -> AsyncIterator[bytes]:
    """`size` bytes in chunks of at most 1 MiB, from one shared block: O(1) memory per stream."""
    global _BIG_BLOCK
    if _BIG_BLOCK is None:
        _BIG_BLOCK = _block()
    block = _BIG_BLOCK
    remaining = size
    chunk = max(1, min(chunk, _BLOCK))
    while remaining > 0:
        n = min(chunk, remaining)
        yield block if n == len(block) else block[:n]
        remaining -= n
