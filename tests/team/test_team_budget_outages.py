"""The team budget when its PostgreSQL is not there: at the first submit, and mid-run."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from genwidgets import AsyncClient, ConfigError, CostGuard, Status
from genwidgets._team import RETRY_DB


def _client(sb: Any, tmp_path: Path, key: str, cap: int) -> AsyncClient:
    return AsyncClient(
        api_keys={"onerouter": key},
        base_urls=sb.urls,
        journal=False,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.05, 0.3),
        budgets={"onerouter": (600, cap)},
        cost_guard=CostGuard(),  # this file is about the budget; the guard has its own tests
    )


@pytest.fixture
def team(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(url: str) -> None:
        monkeypatch.setenv("GENWIDGETS_BUDGETS_BACKEND", url)
        monkeypatch.delenv("GENWIDGETS_BUDGETS", raising=False)

    return use


async def test_an_unreachable_team_database_refuses_the_first_submit_clearly(
    postgres: Any, sb: Any, tmp_path: Path, team: Any
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there
    url = postgres.url.replace(f":{postgres.port}/", f":{port}/")
    team(url)
    async with _client(sb, tmp_path, f"down-{uuid.uuid4().hex[:8]}", 2) as client:
        with pytest.raises(ConfigError, match="Cannot connect to PostgreSQL") as info:
            await client.submit("onerouter:flux-schnell", prompt="never sent")
    assert f"127.0.0.1:{port}/" in str(info.value)
    assert postgres.password not in str(info.value)
    assert not sb.stats()["submits"]  # refused before anything was sent


async def test_tasks_keep_running_while_the_team_database_is_away(
    postgres: Any, sb: Any, tmp_path: Path, team: Any, caplog: pytest.LogCaptureFixture
) -> None:
    team(postgres.url)
    key = f"away-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.WARNING, logger="genwidgets")
    async with _client(sb, tmp_path, key, 2) as client:
        first = await client.submit("onerouter:flux-schnell", prompt="before")
        assert (await client.wait(first)).status is Status.SUCCEEDED
        await asyncio.to_thread(postgres.stop)
        try:
            tasks = [
                await asyncio.wait_for(client.submit("onerouter:flux-schnell", prompt=f"p{i}"), 20)
                for i in range(3)  # over the cap of 2: the in-process budget holds the third
            ]
            finals = [await client.wait(t) for t in tasks]
        finally:
            await asyncio.to_thread(postgres.start)
        assert all(t.status is Status.SUCCEEDED for t in finals)
        assert "does not answer" in caplog.text
        await asyncio.sleep(RETRY_DB + 0.5)  # then the budget asks the database again
        held = await client.submit("onerouter:flux-schnell", prompt="after [slow]")
        rows: list[Any] = []
        for _ in range(30):  # its slot row names it once the queued write is sent
            with psycopg.connect(postgres.url) as conn:
                rows = conn.execute(
                    "SELECT task_id FROM genwidgets_budget_slots WHERE task_id = %s", (held.id,)
                ).fetchall()
            if rows:
                break
            await asyncio.sleep(0.1)
        assert rows == [(held.id,)]
        assert postgres.password not in caplog.text


async def test_a_second_bucket_is_shared_apart_from_the_first(postgres: Any) -> None:
    """Replicate's creates spend from 60/min here and its polls from 600/min: polls do not wait
    behind the creates' bucket, and each moves its own clock in the account's row."""
    from genwidgets import Limits
    from genwidgets._team_budget import SharedBudget

    account = f"two-{uuid.uuid4().hex[:8]}"
    limits = Limits(60, None, other_requests_per_minute=600)
    budget = SharedBudget(
        "replicate", limits, url=postgres.url, account=account, counts=frozenset({"submit"})
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(15):  # 10 at once, then ~10/s
        await budget.spend("poll")
    polls = loop.time() - started
    started = loop.time()
    for _ in range(3):  # one at once, then one a second
        await budget.spend("submit")
    submits = loop.time() - started
    await budget.aclose()
    assert polls < 1.5 and 1.8 < submits < 4.0, (polls, submits)
    assert budget.rate_of("poll") == pytest.approx(10.0)
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute(
            "SELECT rpm, other_rpm, other_tat > tat FROM genwidgets_budgets WHERE account = %s",
            (f"replicate:{account}",),
        ).fetchone()
    assert row == (60.0, 600.0, False)  # the creates' clock is the one pushed furthest ahead


def test_budget_tables_of_version_1_are_migrated(postgres: Any) -> None:
    from genwidgets import _team
    from genwidgets._postgres import connect, ensure_schema, schema_version
    from tests.conftest import pg_schema

    with pg_schema(postgres) as url:
        with connect(url) as conn:
            ensure_schema(conn, "budgets", _team.SCHEMA[:1])  # as the first release left them
        _team.ensure_tables(url)
        with connect(url) as conn:
            assert schema_version(conn, "budgets") == len(_team.SCHEMA) == 2
            conn.execute("SELECT other_rpm, other_tat FROM genwidgets_budgets").fetchall()
