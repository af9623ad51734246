"""Downloads: stream each output into the cache, bounded, asking anew when its URL expired.

Result URLs are presigned and die (minutes to days), so outputs are fetched as soon as a task
succeeds. No auth header goes with them, except where the adapter says its own origin serves
outputs only with the key (`Provider.authenticated_downloads`: Veo's files, OpenRouter's
``/content``; `Operations.download_headers`).
Redirects are followed here, one hop at a time, each hop with only the headers the adapter allows
for its own URL: a redirect to a storage host never carries the key. A URL that answers
403/404/410 raises `ExpiredURL`; the client then asks the provider for the task again, which may
carry a fresh URL.

With a team object store (`_store`), an output the journal already knows by sha256 comes from the
store instead (no provider call), and every downloaded file is uploaded right after it landed in
the cache, streamed from the cache file in bounded parts, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import stamina

from ._cache import Cache
from ._exceptions import DownloadError, StoreError
from ._models import Output, Task
from ._transport import Transport
from .providers._errors import error_context

__all__ = ["Downloads", "ExpiredURL"]

#: Answers that mean the presigned URL died (S3 says 403 when a signature expires).
EXPIRED_STATUSES = (403, 404, 410)
#: Backoff of an interrupted download: first wait and cap, in seconds.
RETRY_WAIT_INITIAL, RETRY_WAIT_MAX = 0.2, 5.0
#: Bytes read from the network at a time.
CHUNK = 1 << 16
#: Redirects a download follows at most, and the answers that are redirects.
MAX_REDIRECTS, REDIRECTS = 5, (301, 302, 303, 307, 308)
#: Bytes of a redirect's body read to keep its connection (see `_drain`).
REDIRECT_BODY = 1 << 16

#: Asks the provider for task output `index` again: a fresh URL, or None.
Refresh = Callable[[Task, int], Awaitable[Output | None]]
#: The headers a download of a URL for a task may carry (the adapter's say; usually none).
Headers = Callable[[Task, str], Mapping[str, str]]


class ExpiredURL(DownloadError):
    """The output URL answered 403/404/410: expired, most likely; the provider may know another."""


class _Interrupted(DownloadError):
    """A 5xx, a 429 or a broken connection: worth trying the same URL again."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Download interrupted ({what})")


class Downloads:
    """Fetches outputs into `cache` over the transport's pool (with its retry settings)."""

    def __init__(
        self, transport: Transport, cache: Cache, refresh: Refresh, headers: Headers | None = None
    ) -> None:
        self._transport = transport
        self.cache = cache
        self._refresh = refresh
        self._headers = headers or (lambda task, url: {})

    async def task(self, task: Task, max_bytes: int, record: Callable[[Task], Task]) -> Task:
        """`task` with every output in the cache, then in the store (when there is one), each
        step passed to `record` (the client's observers: the journal keeps paths and store URLs).

        The local copies are recorded before anything is uploaded, so a store that cannot be
        reached loses nothing: its `StoreError` comes after, and the next call uploads what is
        missing without downloading again."""
        outputs = []
        for index, output in enumerate(task.outputs):
            if output.path is None or not Path(output.path).exists():
                output = await self.output(task, index, output, max_bytes)
            outputs.append(output)
        task = record(task.evolve(outputs=tuple(outputs)))
        if self.cache.store is None or all(o.store_url for o in task.outputs):
            return task
        stored = [await self._upload(task, output) for output in task.outputs]
        return record(task.evolve(outputs=tuple(stored)))

    async def _upload(self, task: Task, output: Output) -> Output:
        store = self.cache.store
        if store is None or output.store_url or output.path is None or output.sha256 is None:
            return output
        try:
            url = await asyncio.to_thread(store.put, Path(output.path), output.sha256)
        except StoreError as exc:
            raise StoreError(
                f"{exc.message}. The output is kept in the local cache ({output.path}); "
                "downloading the task again uploads it",
                **error_context(task.provider, task),
            ) from None
        return output.model_copy(update={"store_url": url})

    async def output(self, task: Task, index: int, output: Output, max_bytes: int) -> Output:
        """Output `index` of `task` with `.path` and `.sha256` in the cache, at most `max_bytes`:
        from the cache or the store when its sha256 is known, else from the provider."""
        if output.sha256 is not None:
            cache = self.cache
            found = (
                cache.find(output.sha256)
                if cache.store is None
                else await asyncio.to_thread(cache.fetch, output)
            )
            if found is not None:
                return output.model_copy(update={"path": found})
        if output.kind == "text" and output.text is not None and not output.url:
            path, digest, _ = self.cache.put(output.text.encode(), "text/plain")
            return output.model_copy(
                update={"path": path, "sha256": digest, "size": path.stat().st_size}
            )
        if not output.url or not output.url.lower().startswith(("http://", "https://")):
            raise DownloadError(
                f"Refusing to download output {index}: not an http(s) URL "
                f"({(output.url or '')[:40]!r})",
                **error_context(task.provider, task),
            )
        try:
            return await self.fetch(task, output, max_bytes)
        except ExpiredURL:
            if task.provider == "local":
                raise
            fresh = await self._refresh(task, index)
            if fresh is None or fresh.url == output.url:
                raise
            return await self.fetch(task, fresh, max_bytes)

    async def fetch(self, task: Task, output: Output, max_bytes: int) -> Output:
        """Stream one URL into the cache, retrying interruptions (not refusals)."""
        async for attempt in stamina.retry_context(
            on=lambda exc: isinstance(exc, _Interrupted),
            attempts=self._transport.attempts,
            timeout=self._transport.retry_timeout,
            wait_initial=RETRY_WAIT_INITIAL,
            wait_max=RETRY_WAIT_MAX,
        ):
            with attempt:
                try:
                    return await self._fetch_once(task, output, max_bytes)
                except httpx.HTTPError as exc:
                    raise _Interrupted(type(exc).__name__) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, task: Task, output: Output, max_bytes: int) -> Output:
        assert output.url is not None
        context = error_context(task.provider, task)
        async with self._opened(task, output.url) as response:
            status = response.status_code
            if status in EXPIRED_STATUSES:
                raise ExpiredURL(f"Output URL answered HTTP {status} (expired?)", **context)
            if status >= 500 or status == 429:
                raise _Interrupted(f"HTTP {status}")
            if status != 200:
                raise DownloadError(f"Output URL answered HTTP {status}", **context)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(
                    f"Output is {int(declared):,} bytes, over the download bound of "
                    f"{max_bytes:,}; raise max_download_bytes",
                    **context,
                )
            writer = self.cache.writer(
                response.headers.get("content-type", output.content_type), max_bytes
            )
            try:
                async for chunk in response.aiter_bytes(CHUNK):
                    writer.write(chunk)
            except BaseException:
                writer.abort()
                raise
            path, digest, sniffed = writer.commit()
        return output.model_copy(
            update={
                "path": path,
                "sha256": digest,
                "size": writer.size,
                "content_type": sniffed or output.content_type,
            }
        )

    @contextlib.asynccontextmanager
    async def _opened(self, task: Task, url: str) -> AsyncIterator[httpx.Response]:
        """The answer to ``GET url`` after its redirects, each hop asked with the headers the
        adapter allows for that hop's URL (httpx would forward them all to the next host)."""
        where = error_context(task.provider, task)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(self._headers(task, url))
            opened = self._transport.http.stream(
                "GET", url, headers=headers, follow_redirects=False
            )
            async with opened as response:
                location = response.headers.get("location")
                if response.status_code not in REDIRECTS or not location:
                    yield response
                    return
                url = str(response.url.join(location))
                await _drain(response)
            if not url.lower().startswith(("http://", "https://")):
                raise DownloadError("Output URL redirected to a non-http(s) URL", **where)
        raise DownloadError(f"Output URL redirected over {MAX_REDIRECTS} times", **where)


async def _drain(response: httpx.Response) -> None:
    """Read a redirect's (small) body so its connection goes back to the pool: one left unread
    is closed, and every download through a redirect would open a new connection. A body
    larger than `REDIRECT_BODY` is not worth it: that connection is closed."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read > REDIRECT_BODY:
            return


def copy_outputs(task: Task, dest: str | Path) -> Task:
    """The task with its cached outputs copied into `dest`, named after the task, never after a
    name the server chose."""
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for index, output in enumerate(task.outputs):
        assert output.path is not None
        target = folder / f"{_safe_name(task.id)}-{index}{Path(output.path).suffix}"
        if not (target.exists() and target.samefile(output.path)):
            shutil.copyfile(output.path, target)
        copies.append(output.model_copy(update={"path": target}))
    return task.evolve(outputs=tuple(copies))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "task"
