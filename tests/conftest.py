"""Shared fixtures: one loopback sandbox for the session, and clients pointed at it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

os.environ.setdefault("GENWIDGETS_LOCAL_DURATION", "0.2")
# Tests that want a journal pass their own; none writes into the checkout.
os.environ["GENWIDGETS_JOURNAL"] = "off"
# The sandbox enforces no limits unless a test asks it to; tests of the budgets pass their own.
os.environ["GENWIDGETS_BUDGETS"] = "off"

KEYS = {p: f"test-key-{p}" for p in ("onerouter", "rixapi", "segmind", "netmind", "oxen")}


def _server_missing(what: str, why: str) -> None:
    """Skip a test whose real server is missing here, but fail under scripts/test.sh (CI), which
    installs every server: a team test is never silently skipped there."""
    if os.environ.get("GENWIDGETS_REQUIRE_SERVERS"):
        pytest.fail(f"{what} is required by scripts/test.sh but missing: {why}")
    pytest.skip(f"{what} missing: {why}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server on loopback for the session (`LocalPostgres`: `.url`, `.stop()`,
    `.start()`). Tests sharing it use their own schema or tables, or clean up."""
    from genwidgets.sandbox.postgres import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres()
    except PostgresUnavailable as e:
        _server_missing("PostgreSQL", str(e))
    with server as pg:
        yield pg


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    from genwidgets.sandbox import Sandbox

    with Sandbox(task_seconds=0.3, queue_seconds=0.1) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Any) -> Iterator[Any]:
    """The session sandbox, with faults, limits and counters cleared before each test."""
    sandbox.reset()
    sandbox.set_limits()  # reset() keeps limits; a test that sets some must not leak them
    yield sandbox
    sandbox.reset()
    sandbox.set_limits()


@pytest.fixture
async def client(sb: Any, tmp_path: Any) -> AsyncIterator[Any]:
    from genwidgets import AsyncClient

    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.05, 0.3),
        retry_timeout=20.0,
    ) as c:
        yield c
