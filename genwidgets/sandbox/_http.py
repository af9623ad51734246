"""What the five protocol apps share: auth, limits, fault injection and the result-file routes.

Each provider module subclasses `ProviderApp`, states its error shape, its auth header and its
routes as a table (`ROUTES`); `ProviderApp.route` wraps every handler in the same pipeline:

    count -> latency -> auth (401 in the provider's shape) -> limits (429 when the account is
    over its requests per minute or, on a submit, its tasks in flight) -> pre-faults (429/5xx on
    polls, 429 on submits) -> handler -> post-faults (5xx after a created submit; reset or
    truncated JSON on polls) -> count the status sent

so a fault looks the same on every provider except for the body and headers it carries. Limits
come after auth (a bad key is a 401, whatever the budget) and before the dice, so an injected
fault never hides, or is mistaken for, a limit. Result files and admin routes are never limited:
object-store downloads are not API calls, and the admin surface is the test's, not the client's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ._faults import decide_poll_fault
from ._limits import Refusal
from ._result_files import big_chunks
from ._state import State
from ._tasks import SimTask, account_of

__all__ = ["ErrorKind", "ProviderApp", "big_size", "fmt_datetime", "read_json", "seed_of"]

ErrorKind = Literal["auth", "bad_request", "not_found", "rate_limit", "server", "quota"]
EndpointKind = Literal["submit", "poll", "other"]
Handler = Callable[[Request], Awaitable[Response]]

BAD_KEY = "bad-key"  # refused with 401 by every provider
NO_QUOTA_KEY = "no-quota-key"  # an account with no credits (where the provider documents it)
MAX_BIG_BYTES = 64 * 2**30


class _DropConnection(Exception):
    """Raised after a response has started: uvicorn then closes the socket mid-body."""


class _QuietDrops(logging.Filter):
    """Keep uvicorn from logging a traceback for every connection the sandbox drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


_uvicorn_log = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietDrops) for f in _uvicorn_log.filters):
    _uvicorn_log.addFilter(_QuietDrops())


class ResetResponse(Response):
    """Headers and half the body, then the connection is dropped (a reset, to the client)."""

    def __init__(self, original: Response) -> None:
        self.status_code = original.status_code
        self.body = bytes(original.body)
        self.raw_headers = list(original.raw_headers)
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise _DropConnection("sandbox fault: connection reset mid-response")


def fmt_datetime(ts: float, *, fraction: bool = False) -> str:
    """'YYYY-MM-DD HH:MM:SS' in UTC (OneRouter adds '.ff' on submit, as in its docs)."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if fraction:
        text += f".{moment.microsecond // 10000:02d}"
    return text


async def read_json(request: Request) -> Any:
    """The JSON body, or None when it is missing or not JSON."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def header_key(request: Request, *, raw_ok: bool) -> str | None:
    """The key from `Authorization: Bearer <key>` (or a raw `Authorization: <key>` if allowed)."""
    value = request.headers.get("authorization", "").strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    if raw_ok and value and " " not in value:
        return value
    return None


def seed_of(value: Any) -> int:
    """A usable seed from whatever the client sent (the sandbox renders deterministically)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value % 2**32
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value) % 2**32
    return 0


def big_size(model: str, value: Any, default: int) -> int | None:
    """For a 'big-video' model: the size of its streamed result (`bytes` param), else None."""
    if "big-video" not in model.lower():
        return None
    try:
        size = int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        size = default
    return min(max(0, size), MAX_BIG_BYTES)


class ProviderApp:
    """One provider's HTTP surface. Subclasses fill in the class attributes and `routes()`."""

    name: ClassVar[str]
    raw_key_ok: ClassVar[bool] = False  # accepts `Authorization: <key>` without 'Bearer'
    #: Whether a limit 429 says when to come back. Only Segmind documents a reset header for its
    #: rate limits; OneRouter documents none, and the others say nothing, so clients must cope.
    announces_limit_reset: ClassVar[bool] = False
    #: The protocol as a table: (method, path, handler method). The handler's name is the
    #: endpoint counted in `stats()["requests"]`; "submit" gets the submit faults and limits.
    ROUTES: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    #: The handlers that read a task's status: they get the poll faults.
    POLLS: ClassVar[frozenset[str]] = frozenset({"poll"})
    #: The path parameter that names a task, and the provider's 404 message for an unknown one.
    TASK_PARAM: ClassVar[str] = "task_id"
    MISSING: ClassVar[str] = "Task {} not found"

    def __init__(self, state: State) -> None:
        self.state = state

    # ------------------------------------------------------------------- provider specifics
    def key_from(self, request: Request) -> str | None:
        return header_key(request, raw_ok=self.raw_key_ok)

    def error(self, status: int, kind: ErrorKind, message: str) -> Response:
        """An error in this provider's documented shape."""
        raise NotImplementedError

    def rate_limit_headers(self, retry_after: float | None) -> dict[str, str]:
        return {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}

    def routes(self) -> list[BaseRoute]:
        """The protocol's routes, from `ROUTES`, each inside the fault pipeline."""
        return [
            self.route(
                path,
                getattr(self, handler),
                methods=[method],
                endpoint=handler,
                kind=self._kind_of(handler),
            )
            for method, path, handler in self.ROUTES
        ]

    def _kind_of(self, handler: str) -> EndpointKind:
        if handler == "submit":
            return "submit"
        return "poll" if handler in self.POLLS else "other"

    def quota_error(self) -> Response | None:
        """What a submit with the no-credits key gets, where the provider documents one."""
        return None

    async def aclose(self) -> None:
        """Release what the app holds (background deliveries, clients); called at shutdown."""

    # ------------------------------------------------------------------- shared helpers
    def origin(self, request: Request) -> str:
        """scheme://host:port this request came to (result URLs point back at it)."""
        return str(request.base_url).rstrip("/")

    def rate_limited(self) -> Response:
        """An injected 429: the header (if any) is the fault config's `retry_after`."""
        return self._too_many("Too many requests, slow down", self.state.faults.retry_after)

    def limit_refused(self, refusal: Refusal) -> Response:
        """A 429 from an enforced limit: same shape as an injected one, honest reset hint."""
        reset = refusal.reset_in if self.announces_limit_reset else None
        return self._too_many(refusal.message, reset)

    def _too_many(self, message: str, retry_after: float | None) -> Response:
        response = self.error(429, "rate_limit", message)
        response.headers.update(self.rate_limit_headers(retry_after))
        return response

    def server_error(self) -> Response:
        with self.state.lock:
            code = self.state.dice.rng.choice((500, 502, 503))
        return self.error(code, "server", "Service temporarily unavailable (sandbox fault)")

    def not_found(self, message: str) -> Response:
        return self.error(404, "not_found", message)

    def find(self, request: Request) -> SimTask | Response:
        """The caller's task named in the path, or the provider's 404 (unknown, someone else's,
        expired or deleted: the real services do not tell these apart either)."""
        task_id = request.path_params[self.TASK_PARAM]
        task = self.state.find(self.name, task_id, request.state.account)
        return self.not_found(self.MISSING.format(task_id)) if task is None else task

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: list[str],
        endpoint: str,
        kind: EndpointKind = "other",
        auth: bool = True,
        limited: bool = True,
    ) -> Route:
        """A route whose handler runs inside the fault pipeline (see the module docstring).

        `limited=False` keeps the route out of the account's limits (result files); routes
        without auth have no account to charge and are never limited either.
        """
        state = self.state

        async def pipeline(request: Request) -> Response:
            state.count_request(self.name, endpoint)
            latency = state.faults.latency
            if latency > 0:
                await asyncio.sleep(latency)
            refused = self._gate(request, kind, limited=limited) if auth else None
            if refused is not None:
                return self._sent(refused)
            fault, injected = self._pre_fault(request, kind)
            if injected is not None:
                return self._sent(injected)
            response = await handler(request)
            return self._post_fault(response, kind, fault)

        return Route(path, pipeline, methods=methods, name=f"{self.name}.{endpoint}")

    def _gate(self, request: Request, kind: EndpointKind, *, limited: bool) -> Response | None:
        """Auth, then the account's limits: the refusal to send, or None to go on."""
        key = self.key_from(request)
        if not key or key == BAD_KEY:
            return self.error(401, "auth", "Invalid API key" if key else "Missing API key")
        request.state.account = account_of(key)
        request.state.no_quota = key == NO_QUOTA_KEY
        if limited:
            over = self.state.book.admit(self.name, request.state.account, submit=kind == "submit")
            if over is not None:
                return self.limit_refused(over)
        return None

    def _pre_fault(
        self, request: Request, kind: EndpointKind
    ) -> tuple[str | None, Response | None]:
        """Roll the dice before the handler: the poll fault to apply after it (reset, malformed),
        and a response that replaces the handler's (429, 5xx, no credits), if any."""
        state = self.state
        if kind == "poll":
            with state.lock:
                fault = decide_poll_fault(state.faults, state.dice)
            if fault in ("burst_429", "429"):
                return fault, self.rate_limited()
            if fault == "5xx":
                return fault, self.server_error()
            return fault, None
        if kind == "submit":
            with state.lock:
                injected = state.dice.hit(state.faults.submit_rate_limit_rate)
            if injected:
                return None, self.rate_limited()
            if getattr(request.state, "no_quota", False):
                return None, self.quota_error()
        return None, None

    def _post_fault(self, response: Response, kind: EndpointKind, fault: str | None) -> Response:
        """Faults after the handler ran: a 5xx for a created submit, a reset or truncated poll."""
        state = self.state
        if kind == "submit" and 200 <= response.status_code < 300:
            with state.lock:
                ambiguous = state.dice.hit(state.faults.submit_error_rate)
            if ambiguous:  # the task exists now; the client cannot know it
                return self._sent(self.server_error())
        if fault == "reset":
            state.count("resets")
            return ResetResponse(response)
        body = getattr(response, "body", None)
        if fault == "malformed" and isinstance(body, (bytes, bytearray)):
            state.count("malformed")
            body = bytes(body)
            return self._sent(
                Response(body[: max(1, len(body) // 2)], 200, media_type="application/json")
            )
        return self._sent(response)

    def _sent(self, response: Response) -> Response:
        self.state.count_status(self.name, response.status_code)
        return response

    # ------------------------------------------------------------------- the app
    def build(self, extra_routes: list[BaseRoute] | None = None) -> Starlette:
        """The Starlette app for one port: `extra_routes` (the protocol's and the sandbox's admin
        endpoints, from the server) and the result files."""

        async def http_error(request: Request, exc: Exception) -> Response:
            code = exc.status_code if isinstance(exc, HTTPException) else 500
            kind: ErrorKind = "not_found" if code == 404 else "bad_request"
            message = "Not found" if code == 404 else f"Method {request.method} not allowed"
            response = self.error(code, kind, message)
            return self._sent(response)

        routes = [*(extra_routes or []), *self.file_routes()]
        return Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})

    def file_routes(self) -> list[BaseRoute]:
        state = self.state

        async def big(request: Request) -> Response:
            try:
                size = int(request.query_params.get("bytes", str(state.options.big_bytes)))
            except ValueError:
                size = -1
            if not 0 <= size <= MAX_BIG_BYTES:
                return Response("bytes must be an integer in 0..64 GiB", 400)
            return _stream_big(size)

        async def file(request: Request) -> Response:
            name = request.path_params["name"]
            token = name.rsplit(".", 1)[0]
            entry = state.file(token)
            if entry is None or name != f"{token}.{entry.ext}":
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            if request.method == "GET":
                with state.lock:
                    refused = state.faults.one_shot_urls and entry.downloads >= 1
                    entry.downloads += 1
                if refused:
                    return _s3_error(403, "AccessDenied", "Request has expired")
                state.count("downloads")
            if entry.big:
                return _stream_big(entry.size or 0)
            data = await state.renderer.get(entry.kind, entry.prompt, entry.seed, entry.seconds)
            entry.size = len(data)
            return Response(data, 200, media_type=entry.content_type)

        return [
            self.route(
                "/files/big", big, methods=["GET"], endpoint="files", auth=False, limited=False
            ),
            self.route(
                "/files/{name}", file, methods=["GET"], endpoint="files", auth=False, limited=False
            ),
        ]


def _stream_big(size: int) -> Response:
    return StreamingResponse(
        big_chunks(size),
        media_type="video/mp4",
        headers={"Content-Length": str(size), "Cache-Control": "no-store"},
    )


def _s3_error(status: int, code: str, message: str) -> Response:
    """What an object store answers for a gone or expired presigned URL."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")
