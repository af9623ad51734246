"""`Sandbox`: every protocol's apps on loopback ports, served from one background event loop.

The protocols are found by `_protocols` (the built-ins' ``_<provider>.py`` modules and plugins'
``genwidgets.sandbox`` entry points), each app on a port of its own.

Sockets are bound in the calling thread (so port 0 resolves to a real port before anything else
runs, and a busy port fails loudly at `start()`), then one uvicorn `Server` per port runs on a
private event loop in a daemon thread. `start()` returns once every server accepts connections;
`stop()` ends open SSE streams, shuts the servers down and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

import uvicorn

from ._admin import admin_routes
from ._faults import FaultConfig
from ._http import ProviderApp
from ._limits import LIMIT_WINDOW, ServerLimits, coerce_limits
from ._protocols import default_ports, protocol_apps, protocol_names
from ._result_files import MediaSizes, Renderer
from ._state import Options, State

__all__ = ["Sandbox"]  # and DEFAULT_PORTS, PROVIDERS (see __getattr__)

HOST = "127.0.0.1"


def __getattr__(name: str) -> Any:
    """`DEFAULT_PORTS` (port name -> the CLI's default port; `onerouter_poll` is the separate
    host OneRouter's `data.urls.get` points at) and `PROVIDERS` (the protocols served), read off
    the protocols found, when first asked for."""
    if name == "DEFAULT_PORTS":
        return default_ports()
    if name == "PROVIDERS":
        return protocol_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Sandbox:
    """A loopback server speaking every provider's async protocol, with fault injection.

    >>> with Sandbox(task_seconds=0.3) as sb:          # doctest: +SKIP
    ...     os.environ.update(sb.env)                  # point genwidgets at it
    ...     sb.set_faults(error_rate=0.2, seed=1)      # 5xx on a fifth of the polls

    `ports` maps port names (the providers' and extra hosts such as `onerouter_poll`) to ports;
    missing ones and 0 are ephemeral. Tasks are queued for `queue_seconds`, run for
    `task_seconds` (10x with "[slow]" in the prompt), then succeed, or fail ("[fail]",
    `fail_rate`). `task_jitter=j` scales each run time by a seeded uniform(1 - j, 1 + j), so
    benchmarks see realistic spread (0: exact).

    `limits` maps provider names to `ServerLimits` or `(requests_per_minute, max_in_flight)`,
    enforced per API key like the real services (`DOCUMENTED_LIMITS` holds the published ones):
    over them, a request gets the provider's own 429 (`stats()["limited"]` counts these apart
    from injected 429s). `_limit_window` shortens the one-minute window, for tests only.
    """

    def __init__(
        self,
        ports: Mapping[str, int] | None = None,
        faults: FaultConfig | None = None,
        task_seconds: float = 0.5,
        queue_seconds: float = 0.1,
        *,
        sse_keepalive: float = 15.0,
        segmind_retention: float | None = 3600.0,
        netmind_models: Collection[str] | None = None,
        big_bytes: int = 2**30,
        callbacks: bool = True,
        media: MediaSizes | None = None,
        limits: Mapping[str, ServerLimits | tuple[int | None, int | None]] | None = None,
        task_jitter: float = 0.0,
        _limit_window: float = LIMIT_WINDOW,
    ) -> None:
        self._app_classes = protocol_apps()
        self._providers = protocol_names()
        unknown = set(ports or {}) - set(self._app_classes)
        if unknown:
            known = list(self._app_classes)
            raise ValueError(f"unknown sandbox port names {sorted(unknown)}; known: {known}")
        if not 0.0 <= task_jitter <= 1.0:  # above 1 a run time could go negative
            raise ValueError(f"task_jitter must be between 0 and 1, not {task_jitter!r}")
        if not _limit_window > 0:
            raise ValueError(f"_limit_window must be positive, not {_limit_window!r}")
        self._requested_ports = {
            name: int((ports or {}).get(name, 0)) for name in self._app_classes
        }
        options = Options(
            task_seconds=task_seconds,
            queue_seconds=queue_seconds,
            sse_keepalive=sse_keepalive,
            segmind_retention=segmind_retention,
            netmind_models=netmind_models,
            big_bytes=big_bytes,
            callbacks=callbacks,
            task_jitter=float(task_jitter),
            limit_window=float(_limit_window),
        )
        self._state = State(faults or FaultConfig(), options, Renderer(media))
        self._state.book.replace(limits)
        self.ports: dict[str, int] = {}
        self._servers: list[uvicorn.Server] = []
        self._apps: list[ProviderApp] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Sandbox {state} {self.urls if self.ports else ''}>"

    # ------------------------------------------------------------------------ addresses
    @property
    def urls(self) -> dict[str, str]:
        """provider -> base URL origin, for every protocol served (OneRouter: its submit host)."""
        return {
            name: f"http://{HOST}:{self.ports[name]}"
            for name in self._providers
            if name in self.ports
        }

    @property
    def onerouter_poll_url(self) -> str:
        """The separate host OneRouter's `data.urls.get` points at."""
        return f"http://{HOST}:{self.ports['onerouter_poll']}"

    @property
    def env(self) -> dict[str, str]:
        """GENWIDGETS_<PROVIDER>_URL -> origin, ready for `os.environ.update` or monkeypatch."""
        return {f"GENWIDGETS_{name.upper()}_URL": url for name, url in self.urls.items()}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    # ------------------------------------------------------------------------ control
    @property
    def faults(self) -> FaultConfig:
        """The live fault config: mutate its fields, or assign a new `FaultConfig`."""
        return self._state.faults

    @faults.setter
    def faults(self, value: FaultConfig) -> None:
        self._state.replace_faults(value)

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Change some faults (e.g. `error_rate=0.2, seed=3`); returns a copy of the result."""
        return self._state.set_faults(**changes)

    def reset(self) -> None:
        """Forget every task, file and counter; faults return to those given at construction.

        Limits stay as they are (they are configuration, not state); their request windows and
        in-flight counts start from zero again, like every other counter.
        """
        self._state.reset()

    @property
    def limits(self) -> dict[str, ServerLimits]:
        """A copy of the limits in force, provider -> `ServerLimits` (unlimited ones absent)."""
        with self._state.lock:
            return dict(self._state.book.limits)

    def set_limits(
        self,
        provider: str | None = None,
        requests_per_minute: int | None = None,
        max_in_flight: int | None = None,
    ) -> dict[str, ServerLimits]:
        """Limit one provider per API key; without numbers, lift its limits; without a provider,
        lift them all. Returns the limits now in force.

        `sb.set_limits("onerouter", 600, 30)` is OneRouter's published budget; OneRouter's poll
        host shares it. An unknown provider raises `ValueError`.
        """
        book = self._state.book
        if provider is None:
            if requests_per_minute is not None or max_in_flight is not None:
                raise ValueError("name the provider these limits are for")
            return book.replace(None)
        return book.set(provider, coerce_limits((requests_per_minute, max_in_flight)))

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset (a plain dict; see `State.stats`)."""
        return self._state.stats()

    def finished_at(self, provider: str, task_id: str) -> float | None:
        """When the task finishes (or finished) on the server, as `time.time()`; None if unknown.

        Benchmarks measure how late a client learns of it."""
        with self._state.lock:
            task = self._state.tasks.get(task_id)
            return task.finished if task is not None and task.provider == provider else None

    # ------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("this Sandbox is already started")
        sockets = self._bind()
        state = self._state
        state.origins = {name: f"http://{HOST}:{port}" for name, port in self.ports.items()}
        self._apps = [self._app_classes[name](state) for name in sockets]
        for app, name in zip(self._apps, sockets, strict=True):
            config = uvicorn.Config(
                app.build([*app.routes(), *admin_routes(state)]),
                host=HOST,
                port=self.ports[name],
                http="h11",
                ws="none",
                lifespan="off",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=2,
                backlog=4096,
            )
            server = uvicorn.Server(config)
            self._servers.append(server)
        self._thread = threading.Thread(
            target=self._run, args=(list(sockets.values()),), name="genwidgets-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.02):
            if (
                self._error is not None
                or not self._thread.is_alive()
                or time.monotonic() > deadline
            ):
                self.stop()
                raise RuntimeError("the sandbox did not start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may be closing already
                loop.call_soon_threadsafe(self._begin_shutdown)
        thread.join(timeout)
        if thread.is_alive():  # stuck connections: stop waiting for them
            for server in self._servers:
                server.force_exit = True
            thread.join(timeout)
        self._state.renderer.close()
        self._thread = None
        self._loop = None
        self._servers = []
        self._ready.clear()

    # ------------------------------------------------------------------------ internals
    def _bind(self) -> dict[str, socket.socket]:
        sockets: dict[str, socket.socket] = {}
        try:
            for name, port in self._requested_ports.items():
                # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose
                # proto says TCP; with proto 0, Nagle + delayed ACK add 40 ms to every response.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((HOST, port))
                sock.listen(4096)
                sock.setblocking(False)
                sockets[name] = sock
                self.ports[name] = sock.getsockname()[1]
        except OSError:
            for sock in sockets.values():
                sock.close()
            self.ports = {}
            raise
        return sockets

    def _begin_shutdown(self) -> None:
        if self._state.closing is not None:
            self._state.closing.set()  # ends SSE streams, so connections can close
        for server in self._servers:
            server.should_exit = True

    def _run(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(sockets))
        except BaseException as exc:  # surfaced by start(); never silently lost
            self._error = exc
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            for sock in sockets:
                sock.close()

    async def _main(self, sockets: list[socket.socket]) -> None:
        state = self._state
        state.loop = asyncio.get_running_loop()
        state.closing = asyncio.Event()
        serving = [
            asyncio.ensure_future(server.serve(sockets=[sock]))
            for server, sock in zip(self._servers, sockets, strict=True)
        ]
        while not all(server.started for server in self._servers):
            done = [task for task in serving if task.done()]
            if done:  # a server died while starting
                done[0].result()
                raise RuntimeError("a sandbox server stopped while starting")
            await asyncio.sleep(0.01)
        self._ready.set()
        try:
            await asyncio.gather(*serving)
        finally:
            for app in self._apps:
                with contextlib.suppress(Exception):
                    await app.aclose()
