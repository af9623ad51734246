"""`/_sandbox/*` on every port: faults, stats, reset and limits, driven over HTTP.

A notebook or another process (a benchmark's client, a test) steers a running sandbox through
these; they need no auth (the sandbox binds loopback only) and are never limited or faulted.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._http import read_json
from ._state import State

__all__ = ["admin_routes"]


def admin_routes(state: State) -> list[BaseRoute]:
    """`/_sandbox/*`: drive the sandbox from a notebook or another process (no auth: loopback)."""
    return [*_fault_and_stats_routes(state), *_limit_routes(state)]


def _fault_and_stats_routes(state: State) -> list[BaseRoute]:
    """GET/POST `/_sandbox/faults`, GET `/_sandbox/stats`, POST `/_sandbox/reset`, and GET
    `/_sandbox/finished[?provider=fal]`: when each task's status turns terminal (`{provider:
    {task id: time.time()}}`), for benchmarks that measure how late a client learns of it."""

    async def get_faults(request: Request) -> Response:
        with state.lock:
            return JSONResponse(state.faults.as_dict())

    async def post_faults(request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object of fault fields"}, 400)
        try:
            faults = state.set_faults(**body)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(faults.as_dict())

    async def get_stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def get_finished(request: Request) -> Response:
        return JSONResponse(state.finish_times(request.query_params.get("provider")))

    async def post_reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset", "time": time.time()})

    return [
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", post_faults, methods=["POST"]),
        Route("/_sandbox/stats", get_stats, methods=["GET"]),
        Route("/_sandbox/finished", get_finished, methods=["GET"]),
        Route("/_sandbox/reset", post_reset, methods=["POST"]),
    ]


def _limit_routes(state: State) -> list[BaseRoute]:
    """GET/POST/DELETE `/_sandbox/limits`: the limits enforced per API key."""
    book = state.book

    def limits_body() -> dict[str, Any]:
        with state.lock:
            return {name: limits.as_dict() for name, limits in book.limits.items()}

    async def get_limits(request: Request) -> Response:
        return JSONResponse(limits_body())

    async def post_limits(request: Request) -> Response:
        """Merge `{provider: {requests_per_minute, max_in_flight} | [rpm, in_flight] | null}`.

        Only the named providers change (null clears one), like `POST /_sandbox/faults`; the
        whole body is validated before anything is applied.
        """
        body = await read_json(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object of provider limits"}, 400)
        with state.lock:
            merged: dict[str, Any] = {**book.limits, **body}
            try:
                book.replace(merged)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(limits_body())

    async def delete_limits(request: Request) -> Response:
        book.replace(None)
        return JSONResponse(limits_body())

    return [
        Route("/_sandbox/limits", get_limits, methods=["GET"]),
        Route("/_sandbox/limits", post_limits, methods=["POST"]),
        Route("/_sandbox/limits", delete_limits, methods=["DELETE"]),
    ]
