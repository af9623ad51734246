"""Sends an adapter's requests over one pooled httpx client, under the budget, with retries.

Idempotent requests (polls, results, cancels, lists) are retried with backoff (stamina, on
`_policy.retry_decision`). A submit POST is sent again only when `_policy.submit_retry` says the
provider certainly did not accept it. Every answer becomes a `Response` in one place
(`to_response`), and a request and its auth header never reach a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar

import httpcore
import httpx
import stamina

try:  # httpcore's own readability check (private, there since 0.x): the same test it makes
    from httpcore._utils import is_socket_readable
except ImportError:  # pragma: no cover - a future httpcore: keep its own slower path
    is_socket_readable = None  # type: ignore[assignment]

from ._budget import Budget
from ._events import MAX_TASK_STREAMS
from ._exceptions import DeadlineExceeded, SubmitUncertain, TransportError
from ._policy import retry_decision, submit_retry
from .providers import Provider, Request, Response
from .providers._errors import error_context

__all__ = ["USER_AGENT", "Kind", "Transport", "new_http_client", "to_response"]

T = TypeVar("T")
#: What a request is for; a provider's budget charges the kinds it counts (see `_budget`).
Kind = Literal["submit", "poll", "result", "cancel", "list", "delete"]
WaitNotice = Callable[[str], None]

USER_AGENT = "genwidgets/0.1 (+https://github.com/genwidgets/genwidgets)"
#: Connections in the pool for requests, and kept alive between requests (every provider
#: together). The pool holds `MAX_TASK_STREAMS` more, for tasks' open event streams.
MAX_CONNECTIONS, MAX_KEEPALIVE = 200, 50
#: Seconds to wait for a connection at most: an unreachable host fails fast.
CONNECT_TIMEOUT = 10.0
#: Failures that prove a request never left: no connection was made, or none was free.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Backoff of retried idempotent requests: first wait and cap, in seconds.
RETRY_WAIT_INITIAL, RETRY_WAIT_MAX = 0.2, 10.0


class Note(Protocol):
    """The journal's submit note (`_replay.SubmitNote`): written before, cleared if not sent."""

    async def sending(self) -> None: ...

    def clear(self) -> None: ...


def new_http_client(timeout: float) -> httpx.AsyncClient:
    """The pooled client every provider shares; redirects are not followed (a result URL on
    another host must never see an auth header). Open task streams are `MAX_TASK_STREAMS` at
    most (`_events`) and never pass the per-provider gate, so requests keep `MAX_CONNECTIONS`
    of their own however many streams are open."""
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS + MAX_TASK_STREAMS,
        max_keepalive_connections=MAX_KEEPALIVE,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        limits=limits,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=with_cheap_idle_checks(httpx.AsyncHTTPTransport(limits=limits)),
    )


def with_cheap_idle_checks(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """`transport`, its connections answering "is this idle socket readable?" from a socket
    looked up once per connection.

    httpcore asks that of every idle connection in the pool at every request's start and end
    (a server that closed a kept-alive connection leaves it readable). Through anyio each
    question also rebuilds the socket's attribute table, a `getpeername` system call included:
    in a 1,000-task batch, 140,000 of them, a third of the event loop's busy time with the
    journal's threads in the process (each system call may hand the GIL to one of them). The
    readability poll itself stays, so a closed connection is still never reused.

    The pool's backend is httpcore's documented `network_backend`, which httpx's transport does
    not expose: it is swapped on the pool httpx built. A transport of another shape (a future
    httpx) is returned as it is: slower, never wrong; tests/client/test_transport_pool.py fails
    loudly then."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    wrapped = isinstance(backend, _KnownSocketBackend)
    known_shape = isinstance(pool, httpcore.AsyncConnectionPool) and backend is not None
    if known_shape and not wrapped and is_socket_readable is not None:
        pool._network_backend = _KnownSocketBackend(backend)
    return transport


class _KnownSocketBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, its streams wrapped in `_KnownSocketStream`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _KnownSocketStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _KnownSocketStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _KnownSocketStream(httpcore.AsyncNetworkStream):
    """A network stream that looks its socket up once (see `with_cheap_idle_checks`)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _KnownSocketStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)


def to_response(raw: httpx.Response) -> Response:
    """The adapter's view of an answer: status, lower-case headers, bytes, URL."""
    return Response(
        status_code=raw.status_code,
        headers={k.lower(): v for k, v in raw.headers.items()},
        content=raw.content,
        url=str(raw.url),
    )


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: what an error may name (never the path or query)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def retry_after(adapter: Provider, response: Response) -> float | None:
    """Seconds a 429 asks us to wait (Retry-After, or Segmind's reset time), if it says."""
    return getattr(adapter.error_for(response), "retry_after", None)


#: Who gets a free place in a provider's gate first (lower first; first come first served within
#: one). A cancel stops billing; a submit turns a free task slot into work at the provider. A
#: batch's wave releases hundreds of polls at once, and in first-come order every submit of a
#: slot freed by one of them waited behind all the rest: 0.5-0.8 s of each task slot idle.
URGENCY: dict[str, int] = {"cancel": 0, "submit": 1}
LATER = 2


class Gate:
    """At most `size` requests at once; a freed place goes to the most urgent waiter."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def place(self, urgency: int) -> AsyncIterator[None]:
        await self._take(urgency)
        try:
            yield
        finally:
            self._give_back()

    async def _take(self, urgency: int) -> None:
        if self._free > 0:  # a free place means nobody waits (`_give_back` hands places over)
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (urgency, next(self._arrivals), handed))
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():  # handed over, then cancelled: pass on
                self._give_back()
            raise  # else its cancelled future stays in the heap and is skipped

    def _give_back(self) -> None:
        while self._waiting:
            _, _, handed = heapq.heappop(self._waiting)
            if not handed.done():
                handed.set_result(None)
                return
        self._free += 1


class Transport:
    """One connection pool, a connection cap per provider, and each provider account's budget."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget_of: Callable[[str], Budget | None],
        *,
        attempts: int,
        retry_timeout: float,
        max_per_provider: int,
    ) -> None:
        self.http = http
        self._budget_of = budget_of
        self.attempts = attempts
        self.retry_timeout = retry_timeout
        self._max_per_provider = max_per_provider
        self._gates: dict[str, Gate] = {}

    def _gate(self, provider: str) -> Gate:
        gate = self._gates.get(provider)
        if gate is None:
            gate = self._gates[provider] = Gate(self._max_per_provider)
        return gate

    async def _exchange(
        self,
        request: Request,
        provider: str,
        *,
        kind: Kind = "poll",
        timeout: httpx.Timeout | None = None,
        note: Note | None = None,
    ) -> Response:
        async with self._gate(provider).place(URGENCY.get(kind, LATER)):
            if note is not None:
                await note.sending()  # right before the bytes go: the window a crash leaves unknown
            raw = await self.http.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                json=request.json,
                params=dict(request.params) if request.params else None,
                timeout=timeout or self.http.timeout,
            )
        return to_response(raw)

    async def send(self, adapter: Provider, request: Request, kind: Kind = "poll") -> Response:
        """One HTTP exchange; network failures become `TransportError`; a 429 teaches the
        budget. Cancels (they stop billing and free a slot) do not queue behind polls."""
        budget = self._budget_of(adapter.name)
        if budget is not None and kind != "cancel":
            await budget.spend(kind)
        try:
            answer = await self._exchange(request, adapter.name, kind=kind)
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{type(exc).__name__} talking to {adapter.name} ({origin(request.url)})",
                provider=adapter.name,
            ) from None  # the request (and its auth header) stays out of the traceback
        if budget is not None and answer.status_code == 429:
            budget.penalize(retry_after(adapter, answer), kind=kind)
        return answer

    async def call(
        self,
        adapter: Provider,
        request: Request,
        parse: Callable[[Response], T],
        kind: Kind = "poll",
    ) -> T:
        """Send an idempotent request and parse it, retrying transient failures with backoff."""
        async for attempt in stamina.retry_context(
            on=retry_decision,
            attempts=self.attempts,
            timeout=self.retry_timeout,
            wait_initial=RETRY_WAIT_INITIAL,
            wait_max=RETRY_WAIT_MAX,
        ):
            with attempt:
                return parse(await self.send(adapter, request, kind))
        raise AssertionError("unreachable")  # pragma: no cover

    async def submit(
        self,
        adapter: Provider,
        request: Request,
        model: str,
        *,
        note: Note,
        on_wait: WaitNotice | None = None,
        ends: float | None = None,
    ) -> Response:
        """Send a submit; again only while `_policy.submit_retry` says it certainly did not
        arrive (refused connection, 429), and never past `ends` (a `time.monotonic()` deadline).
        A refused or rate-limited attempt clears the journal's note: nothing was accepted."""
        budget, context = self._budget_of(adapter.name), error_context(adapter.name, model=model)
        for attempt in itertools.count():
            if budget is not None:
                await bounded(budget.spend("submit", on_wait), ends, adapter.name)
            try:
                response = await self._exchange(
                    request,
                    adapter.name,
                    kind="submit",
                    timeout=self._connect_within(ends),
                    note=note,
                )
            except NOT_SENT:
                note.clear()  # the request never left: nothing to be uncertain about
                delay = submit_retry(attempt, self.attempts, refused=True, time_left=left(ends))
                if delay is None:
                    spent = attempt + 1 >= self.attempts
                    raise _not_connected(adapter, request, model, deadline=not spent) from None
                await asyncio.sleep(delay)
                continue
            except httpx.HTTPError as exc:
                raise SubmitUncertain(
                    f"{type(exc).__name__} after the submit was sent to {adapter.name}: it may "
                    "or may not have been accepted, so it is not retried (that could bill twice)",
                    **context,
                ) from None
            if response.status_code == 429:
                note.clear()  # refused before any work
                wait = retry_after(adapter, response)
                if budget is not None:
                    budget.penalize(wait, on_submit=True, kind="submit")
                delay = submit_retry(
                    attempt, self.attempts, status_code=429, retry_after=wait, time_left=left(ends)
                )
                if delay is not None:
                    # The budget's pause covers Retry-After; back off on top when there is none.
                    await asyncio.sleep(delay)
                    if budget is not None:  # wait for a slot under the cap the 429 shrank
                        await bounded(budget.requeue(on_wait), ends, adapter.name)
                    continue
            if response.status_code >= 500:
                error = adapter.error_for(response, model=model)
                raise SubmitUncertain(
                    f"{error.message} in answer to a submit: the task may have been created, so it "
                    "is not retried (that could bill twice)",
                    status_code=response.status_code,
                    **context,
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect_within(self, ends: float | None) -> httpx.Timeout | None:
        """The pool's timeouts, with connecting bounded by the deadline (an answer is not: a
        request in the air is waited for, or it becomes `SubmitUncertain`)."""
        rest = left(ends)
        if rest is None:
            return None
        base = self.http.timeout
        connect = max(0.01, min(base.connect or rest, rest))
        return httpx.Timeout(base.read, connect=connect, write=base.write, pool=base.pool)


def left(ends: float | None) -> float | None:
    """Seconds until `ends` (a `time.monotonic()` time), or None for no deadline."""
    return None if ends is None else ends - time.monotonic()


async def bounded(waiting: Awaitable[None], ends: float | None, provider: str) -> None:
    """Await a local wait (a budget slot, the rate bucket), at most until the deadline."""
    rest = left(ends)
    try:
        await asyncio.wait_for(waiting, None if rest is None else max(0.0, rest))
    except asyncio.TimeoutError:
        raise DeadlineExceeded(
            f"The deadline passed while the submit waited for {provider}'s budget; "
            "nothing was sent",
            provider=provider,
        ) from None


def _not_connected(
    adapter: Provider, request: Request, model: str, *, deadline: bool
) -> TransportError | DeadlineExceeded:
    where = f"{adapter.name} ({origin(request.url)})"
    if deadline:
        return DeadlineExceeded(
            f"The deadline passed while trying to connect to {where}; nothing was sent",
            provider=adapter.name,
            model=model,
        )
    return TransportError(f"Could not connect to {where}", provider=adapter.name, model=model)
