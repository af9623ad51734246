"""The journal on PostgreSQL: leases with a heartbeat, schema versions, an unreachable server at
start, and the server going away mid-run with nothing lost. (Replay, re-attach, resume, export
and the kill tests run on both backends in tests/test_journal.py and tests/client/.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import genwidgets
from genwidgets import Status
from genwidgets._journal_leases import PostgresNotes
from genwidgets._postgres import schema_version
from genwidgets.journal import Journal, fingerprint
from tests.client.test_replay import make_client
from tests.client.test_submit_notes import open_notes
from tests.conftest import pg_schema
from tests.test_journal import make_task

FP = fingerprint("rixapi", "m", {"prompt": "x"})


@pytest.fixture
def url(postgres: Any) -> Iterator[str]:
    with pg_schema(postgres) as found:
        yield found


def other_process(url: str, name: str, lease: float = 30.0) -> PostgresNotes:
    """Notes as another process on another machine holds them (no pid to check: leases only)."""
    notes = PostgresNotes(url, lease_seconds=lease)
    notes.process, notes.machine = f"process-{name}", f"machine-{name}"
    return notes


def test_the_schema_is_created_on_open_and_versioned(url: str) -> None:
    Journal(url).close()
    with psycopg.connect(url) as conn:
        assert schema_version(conn, "journal") == 1
        conn.execute("UPDATE genwidgets_schema SET version = 2 WHERE component = 'journal'")
    with pytest.raises(genwidgets.ConfigError, match="schema version 2, newer than"):
        Journal(url)


def test_a_heartbeat_keeps_a_lease_and_its_end_lets_it_expire(url: str) -> None:
    Journal(url).close()
    sender, other = other_process(url, "a", lease=0.6), other_process(url, "b")
    token = sender.begin(FP, "rixapi", "m")
    time.sleep(1.5)  # over twice the lease: only the heartbeat keeps it
    assert other.orphans(FP) == []
    sender.close()  # the sender stops (its heartbeat with it) with the submit unanswered
    deadline = time.monotonic() + 5
    while not other.orphans(FP):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)
    (orphan,) = other.orphans(FP)
    assert orphan["token"] == token and orphan["process"] == "process-a"
    assert other.orphans(fingerprint("rixapi", "m", {"prompt": "y"})) == []
    assert other.adoptable() == []  # unanswered: never adopted, only refused
    other.forget(FP)  # fresh=True
    assert other.orphans(FP) == [] and open_notes(url) == []
    other.close()


def test_an_answered_expired_lease_is_adopted_once_across_processes(url: str) -> None:
    Journal(url).close()
    sender = other_process(url, "a", lease=0.3)
    token = sender.begin(FP, "rixapi", "m")
    sender.answered(token, make_task("answered", provider="rixapi", model="m"))
    sender.close()
    time.sleep(0.5)
    first, second = other_process(url, "b"), other_process(url, "c")
    (adopted,) = first.adoptable()
    assert adopted[0] == token and adopted[1].id == "answered"
    assert second.adoptable() == [] and second.orphans(FP) == []  # b holds the lease now
    fresh = other_process(url, "d")
    fresh.forget(FP)  # fresh=True never drops an answered (billed) task
    fresh.close()
    assert [n["token"] for n in open_notes(url)] == [token]
    first.end(token)
    assert open_notes(url) == []
    first.close()
    second.close()


def test_an_unreachable_database_at_start_names_the_url_without_password(
    postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    wrong = postgres.url.replace(postgres.password, "not-" + postgres.password)
    monkeypatch.setenv("GENWIDGETS_JOURNAL", wrong)
    with pytest.raises(genwidgets.ConfigError, match="password authentication failed") as info:
        Journal()
    assert postgres.url_without_password in str(info.value)
    assert postgres.password not in str(info.value) and list(tmp_path.iterdir()) == []


async def test_the_database_stopping_mid_run_loses_nothing(
    sb: Any, tmp_path: Path, postgres: Any, url: str
) -> None:
    model = "segmind:seedream-4.5"
    async with make_client(sb, tmp_path, journal=url) as client:
        tasks = [await client.submit(model, prompt=f"outage {i} [slow]") for i in range(3)]
        postgres.stop()
        try:
            # Tasks keep running and are followed to the end while the database is away...
            done = [await client.download(await client.wait(t, timeout=60)) for t in tasks]
            assert {t.status for t in done} == {Status.SUCCEEDED}
            # ...but a new submit cannot be noted: refused before anything is sent.
            with pytest.raises(genwidgets.ConfigError, match="Cannot connect to PostgreSQL") as e:
                await client.submit(model, prompt="during the outage")
            assert postgres.password not in str(e.value)
            assert postgres.url_without_password in str(e.value)
            assert sb.stats()["submits"]["segmind"] == 3
            await asyncio.sleep(1.5)  # the writer retries meanwhile
        finally:
            postgres.start()
    # Closing the client waited for the records: all of them, every status change, no note left.
    journal = Journal(url)
    recorded = {t.id: t for t in journal.tasks()}
    assert set(recorded) == {t.id for t in tasks}
    assert all(t.status is Status.SUCCEEDED and t.outputs[0].path for t in recorded.values())
    for task in tasks:
        statuses = [s for s, _ in journal.status_changes("segmind", task.id)]
        assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert journal.unfinished() == []
    journal.close()
    assert open_notes(url) == []
    async with make_client(sb, tmp_path, journal=url) as client:  # and it replays from there
        again = await client.run(model, prompt="outage 0 [slow]")
    assert again.replayed and sb.stats()["submits"]["segmind"] == 3


async def test_a_client_given_a_database_journal_connects_when_made(
    postgres: Any, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with genwidgets.AsyncClient(cache_dir=tmp_path, journal=url) as client:
        assert client.journal is not None and "PostgresStore" in repr(client.journal)
    wrong = url.replace(postgres.password, "wrong-password")
    monkeypatch.setenv("GENWIDGETS_JOURNAL", wrong)
    for setting in (wrong, None):  # configure(journal=...), or the environment
        with pytest.raises(genwidgets.ConfigError, match="password authentication") as info:
            genwidgets.AsyncClient(cache_dir=tmp_path, journal=setting)  # no task needed
        assert postgres.password not in str(info.value)


async def test_a_submit_answered_while_the_database_is_away_is_kept(
    sb: Any, tmp_path: Path, postgres: Any, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = "segmind:seedream-4.5"
    async with make_client(sb, tmp_path, journal=url) as client:
        sb.set_faults(latency=2.0)  # the answer takes 2 s: the database goes away meanwhile
        sending = asyncio.create_task(client.submit(model, prompt="answered during the outage"))
        deadline = time.monotonic() + 30
        while not sb.stats()["requests"].get("segmind", {}).get("submit"):
            assert time.monotonic() < deadline, "the submit was never sent"
            await asyncio.sleep(0.02)
        postgres.stop()
        try:
            task = await sending  # the provider took it: no error, though it cannot be noted
            sb.set_faults(latency=0.0)
            done = await client.download(await client.wait(task, timeout=60))
            assert done.status is Status.SUCCEEDED
        finally:
            postgres.start()
    assert "the answer to a submit could not be noted" in caplog.text
    assert postgres.password not in caplog.text
    journal = Journal(url)
    recorded = journal.get("segmind", task.id)
    assert recorded is not None and recorded.status is Status.SUCCEEDED
    journal.close()
    assert open_notes(url) == [] and sb.stats()["submits"]["segmind"] == 1
