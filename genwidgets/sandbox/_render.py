"""Real media bytes for result files, from `genwidgets._media`, memoized so serving is cheap.

Rendering happens off the event loop (a small thread pool) and at small sizes; the same
(kind, prompt, seed) is rendered once while it stays in a bounded LRU, and concurrent requests
for the same file share one render. Big files for download benchmarks are never rendered: they are
streamed from one repeated block (`big_chunks`) without holding the whole body in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["MediaSizes", "Renderer", "big_chunks"]


@dataclass(frozen=True)
class MediaSizes:
    """How big the rendered media are: small on purpose, so benchmarks measure the client."""

    image: int = 256
    video: int = 128
    video_seconds: float = 1.0
    video_fps: int = 8
    audio_seconds: float = 1.0


class Renderer:
    """Bounded LRU of rendered media, keyed by (kind, prompt, seed)."""

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
        self._cache: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str, int], asyncio.Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self.renders = 0  # how many times something was actually rendered

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def get(self, kind: str, prompt: str, seed: int) -> bytes:
        key = (kind, prompt, seed)
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

    def _remember(self, key: tuple[str, str, int], data: bytes) -> None:
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

    def render(self, kind: str, prompt: str, seed: int) -> bytes:
        """Bytes of one file (blocking; runs in the pool)."""
        from .. import _media  # written alongside; imported late so the sandbox imports fast

        with self._lock:
            self.renders += 1
        s = self.sizes
        if kind == "image":
            return _as_bytes(_media.render_image(prompt, seed, s.image, s.image))
        if kind == "audio":
            return _as_bytes(_media.render_audio(prompt, seed, s.audio_seconds))
        if kind == "video":
            return _as_bytes(
                _media.render_video(prompt, seed, s.video_seconds, s.video_fps, s.video, s.video)
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
