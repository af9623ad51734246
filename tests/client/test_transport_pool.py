"""The shared connection pool: idle connections are checked from a socket looked up once, and a
connection the server closed is still never reused.

Real HTTP on loopback: a small asyncio server that answers with keep-alive and closes each
connection shortly after its answer, as a server's keep-alive timeout does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpcore
import pytest

from genwidgets._transport import _KnownSocketBackend, new_http_client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


@contextlib.asynccontextmanager
async def origin(close_after: float) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback origin that closes a connection once it has been idle `close_after` s (a
    keep-alive timeout); also the list of connections it accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
            while True:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), close_after)
                writer.write(ANSWER)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/", accepted


def test_the_pool_checks_idle_connections_through_the_known_socket_backend() -> None:
    """If an httpx upgrade changes the transport's shape, this goes red (the client would still
    work, only slower: see `with_cheap_idle_checks`)."""
    http = new_http_client(10.0)
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, _KnownSocketBackend)


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async with origin(close_after=0.05) as (url, accepted), new_http_client(10.0) as http:
        first = await http.get(url)
        await asyncio.sleep(0.3)  # the server closed the idle connection meanwhile
        second = await http.get(url)  # a reused dead connection would fail here
    assert first.text == second.text == "ok"
    assert len(accepted) == 2


async def test_an_open_idle_connection_is_reused_and_its_socket_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    async with origin(close_after=60.0) as (url, accepted), new_http_client(10.0) as http:
        await http.get(url)
        pool = http._transport._pool  # type: ignore[attr-defined]
        (connection,) = pool.connections
        stream = connection._connection._network_stream
        real = stream._inner.get_extra_info

        def counting(info: str) -> object:
            lookups.append(info)
            return real(info)

        monkeypatch.setattr(stream._inner, "get_extra_info", counting)
        for _ in range(20):
            assert stream.get_extra_info("is_readable") is False  # open, nothing to read
        sock = stream.get_extra_info("socket")
        assert sock.fileno() == stream._socket.fileno() >= 0
        assert (await http.get(url)).text == "ok"  # the same connection again
    assert lookups == ["socket"]  # 20 readability checks, no lookup; the socket passed through
    assert len(accepted) == 1
