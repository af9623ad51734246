"""The journal: every snapshot recorded, status history, fingerprints, provenance, two writers,
and a journal another process holds locked holding up nothing. Tests taking `journal_at` run on
both backends (a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import csv
import json
import multiprocessing
import re
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import Output, Status, Task
from genwidgets._journal_sqlite import SCHEMA_VERSION
from genwidgets.journal import Journal, export, fingerprint
from tests.client.test_replay import make_client
from tests.client.test_submit_notes import open_notes

At = Callable[[Path], Any]  # the journal_at fixture (tests/conftest.py): SQLite, PostgreSQL


def make_task(task_id: str = "t1", **changes: object) -> Task:
    base = Task(
        id=task_id,
        provider="segmind",
        model="seedream-4.5",
        status=Status.QUEUED,
        params={"prompt": "a rose", "seed": 3},
        created_at=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc),
        provider_data={"status_url": "https://api.segmind.com/v2/requests/t1/status"},
    )
    return base.evolve(**changes)


def test_fingerprint_is_canonical() -> None:
    a = fingerprint("p", "m", {"prompt": "x", "seed": 1})
    assert a == fingerprint("p", "m", {"seed": 1, "prompt": "x"})
    assert a != fingerprint("p", "m", {"prompt": "x", "seed": 2})
    assert a != fingerprint("q", "m", {"prompt": "x", "seed": 1})


def test_records_status_changes_and_outputs(tmp_path: Path, journal_at: At) -> None:
    journal = Journal(journal_at(tmp_path))
    task = make_task()
    journal.record(task)
    journal.record(task.evolve(status=Status.RUNNING, progress=0.5))
    journal.record(task.evolve(status=Status.RUNNING, progress=0.9))
    out = Output(
        kind="image", url="https://x/y.png", sha256="ab" * 32, path=tmp_path / "y.png", size=3
    )
    done = task.evolve(status=Status.SUCCEEDED, outputs=(out,), cost=0.04)
    journal.record(done)
    assert [s for s, _ in journal.status_changes("segmind", "t1")] == [
        "queued",
        "running",
        "succeeded",
    ]
    back = journal.get("segmind", "t1")
    assert back is not None
    assert back.status is Status.SUCCEEDED and back.cost == 0.04
    assert back.outputs[0].sha256 == "ab" * 32 and back.outputs[0].path == tmp_path / "y.png"
    assert back.params == task.params and back.provider_data == task.provider_data
    fp = fingerprint("segmind", "seedream-4.5", task.params)
    assert journal.latest(fp, Status.SUCCEEDED) is not None
    assert journal.unfinished() == []


def test_a_later_snapshot_keeps_what_it_does_not_know(tmp_path: Path, journal_at: At) -> None:
    journal = Journal(journal_at(tmp_path))
    started = datetime(2026, 11, 23, 10, 0, 5, tzinfo=timezone.utc)
    task = make_task(status=Status.RUNNING, started_at=started, cost=0.25, usage={"steps": 4})
    journal.record(task.evolve(outputs=(Output(kind="image", url="https://x/a.png", size=7),)))
    done = (Output(kind="image", sha256="ef" * 32, path=tmp_path / "a.png"),)
    journal.record(make_task(status=Status.SUCCEEDED, outputs=done))  # no cost, start or url
    stored = Output(kind="image", store_url="s3://team/blobs/" + "ef" * 32)
    journal.record(make_task(status=Status.SUCCEEDED, outputs=(stored,), progress=1.0))
    journal.flush()
    back = journal.get("segmind", "t1")
    assert back is not None and back.status is Status.SUCCEEDED
    assert back.started_at == started and back.cost == 0.25 and back.usage == {"steps": 4}
    (out,) = back.outputs
    assert (out.url, out.size, out.sha256) == ("https://x/a.png", 7, "ef" * 32)
    assert out.path == done[0].path and out.store_url == stored.store_url


def test_unfinished_includes_succeeded_but_not_downloaded(tmp_path: Path, journal_at: At) -> None:
    journal = Journal(journal_at(tmp_path))
    journal.record(make_task("running", status=Status.RUNNING))
    journal.record(make_task("failed", status=Status.FAILED, error="no"))
    journal.record(
        make_task(
            "undownloaded",
            status=Status.SUCCEEDED,
            outputs=(Output(kind="image", url="https://x/a.png"),),
        )
    )
    assert sorted(t.id for t in journal.unfinished()) == ["running", "undownloaded"]


def test_nul_characters_a_provider_sends_are_stored(tmp_path: Path, journal_at: At) -> None:
    """PostgreSQL text cannot hold NUL: a provider_status, error or output text with one is
    stored with U+FFFD in its place (on SQLite too, so both journals give the same task back)."""
    journal = Journal(journal_at(tmp_path))
    out = Output(kind="text", url="https://x/a\x00.txt", text="one\x00two", path=tmp_path / "a")
    task = make_task(
        status=Status.FAILED,
        provider_status="FAIL\x00ED",
        error="worker said \x00 and stopped",
        provider_data={"raw\x00key": "v\x00", "escaped": "\\u0000 stays as typed"},
        outputs=(out,),
    )
    journal.record(make_task(provider_status="IN\x00QUEUE"))
    journal.record(task)
    journal.flush()
    back = journal.get("segmind", "t1")
    assert back is not None and back.status is Status.FAILED
    assert back.provider_status == "FAIL\ufffdED"
    assert back.error == "worker said \ufffd and stopped"
    assert back.provider_data == {"raw\ufffdkey": "v\ufffd", "escaped": "\\u0000 stays as typed"}
    (stored,) = back.outputs
    assert (stored.url, stored.text) == ("https://x/a\ufffd.txt", "one\ufffdtwo")
    assert [s for s, _ in journal.status_changes("segmind", "t1")] == ["queued", "failed"]
    journal.close()


def test_replayed_snapshots_are_not_recorded_again(tmp_path: Path, journal_at: At) -> None:
    journal = Journal(journal_at(tmp_path))
    journal.record(make_task(replayed=True))
    assert journal.tasks() == []


def test_export_json_and_csv(tmp_path: Path, journal_at: At) -> None:
    journal = Journal(journal_at(tmp_path))
    out = Output(kind="image", url="https://x/y.png", sha256="cd" * 32, path=tmp_path / "y.png")
    journal.record(make_task(status=Status.SUCCEEDED, outputs=(out,)))
    rows = json.loads(journal.export(tmp_path / "prov.json").read_text())
    assert rows[0]["sha256"] == "cd" * 32 and rows[0]["seed"] == 3
    assert rows[0]["provider"] == "segmind" and rows[0]["model"] == "seedream-4.5"
    with (journal.export(tmp_path / "prov.csv")).open() as handle:
        assert next(csv.DictReader(handle))["sha256"] == "cd" * 32


def _writer(path: str, prefix: str, n: int) -> None:
    journal = Journal(path)
    for i in range(n):
        journal.record(make_task(f"{prefix}-{i}", status=Status.RUNNING))
        journal.record(make_task(f"{prefix}-{i}", status=Status.SUCCEEDED))
    journal.close()


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    Journal(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 150)) for p in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    tasks = Journal(path).tasks()
    assert len(tasks) == 300 and all(t.status is Status.SUCCEEDED for t in tasks)


HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")  # the write lock, as a long transaction in another kernel holds it
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""
HOLD_SECONDS = 6.0


def on_disk(path: Path) -> dict[str, str]:
    """Task id -> status as another process reading the file sees them (no unwritten records)."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT id, status FROM tasks").fetchall())
    finally:
        db.close()


async def test_a_journal_locked_by_another_process_holds_up_nothing(
    sb: Any, tmp_path: Path
) -> None:
    from genwidgets import StatusCard

    path = tmp_path / "journal.sqlite"
    async with make_client(sb, tmp_path) as client:
        first = await client.run("rixapi:flux-pro", prompt="before the lock")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(HOLD_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        tasks = [await client.submit("rixapi:flux-pro", prompt=f"held {i}") for i in range(3)]
        submitted = time.monotonic() - started
        card = StatusCard(tasks[2])
        card.track(client, tasks[2])  # a card follows one of them: polls, download, view
        done = [await client.download(await client.wait(t)) for t in tasks[:2]]
        done.append(await card.wait())
        elapsed = time.monotonic() - started
        again = await client.run("rixapi:flux-pro", prompt="held 0")  # lookups see unwritten ones
        assert holder.poll() is None, "the lock was released before the work ended"
        assert submitted < 1.0 and elapsed < HOLD_SECONDS / 2, (submitted, elapsed)
        assert [t.status for t in done] == [Status.SUCCEEDED] * 3 and card.settled
        assert again.replayed and again.id == tasks[0].id
        assert on_disk(path) == {first.id: "succeeded"}  # nothing else written yet
        held_notes = open_notes(path)
        card.close()
    assert len(held_notes) == 3  # a note ends only after its task is on disk
    holder.wait(30)
    journal = Journal(path)
    assert journal.flush(timeout=10), "the records did not land once the lock was released"
    assert on_disk(path) == {t.id: "succeeded" for t in [first, *done]}
    assert [s for s, _ in journal.status_changes("rixapi", done[0].id)][-1] == "succeeded"
    assert all(journal.get("rixapi", t.id).outputs[0].path for t in done)  # type: ignore[union-attr]
    assert open_notes(path) == []


def test_reading_a_committed_journal_leaves_it_byte_identical(tmp_path: Path) -> None:
    # A journal as notebooks/data/ holds it: written before schema versions, no submits table.
    committed = Path(__file__).parent.parent / "notebooks" / "data" / "journal.sqlite"
    path = tmp_path / "journal.sqlite"
    path.write_bytes(committed.read_bytes())
    before = path.read_bytes()
    journal = Journal(path)
    (task, *_) = journal.tasks()
    assert journal.latest(fingerprint(task.provider, task.model, task.params), Status.SUCCEEDED)
    assert journal.unfinished() == [] and journal.durations(task.provider, task.model)
    assert journal.orphaned_submits("0" * 64) == []
    journal.export(tmp_path / "provenance.json")
    journal.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite", "provenance.json"]


def test_the_first_write_versions_the_schema_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "new.sqlite")
    assert journal.tasks() == [] and not (tmp_path / "new.sqlite").exists()  # reads create nothing
    journal.record(make_task())
    journal.close()
    db = sqlite3.connect(tmp_path / "new.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(genwidgets.ConfigError, match="newer than this genwidgets"):
        Journal(tmp_path / "new.sqlite").tasks()


class MemoryStore:
    """A second backend in a few lines: what a PostgreSQL store (issue 13) implements."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, Task]] = {}
        self.writes = 0

    def write(self, snapshots: Any) -> None:
        self.writes += 1
        for fp, task in snapshots:
            self.rows[(task.provider, task.id)] = (fp, task)

    def get(self, provider: str, task_id: str) -> Task | None:
        return self.rows[(provider, task_id)][1] if (provider, task_id) in self.rows else None

    def tasks(self) -> list[Task]:
        return [task for _, task in self.rows.values()]

    def latest(self, fp: str, status: Status | None = None) -> Task | None:
        found = [t for f, t in self.rows.values() if f == fp and status in (None, t.status)]
        return found[-1] if found else None

    def unfinished(self) -> list[Task]:
        return [task for task in self.tasks() if not task.done]

    def retryable(self, error: Exception) -> bool:
        return False

    def durations(self, provider: str, model: str, limit: int) -> list[float]:
        return []

    def status_changes(self, provider: str, task_id: str) -> list[tuple[str, str]]:
        return []

    def close(self) -> None:
        pass


async def test_a_second_backend_plugs_in_behind_the_protocols(sb: Any, tmp_path: Path) -> None:
    from genwidgets._journal_notes import FileNotes

    store = MemoryStore()
    journal = Journal(store=store, notes=FileNotes(tmp_path / "notes"))
    async with make_client(sb, tmp_path, journal=journal) as client:
        first = await client.run("segmind:seedream-4.5", prompt="any backend", seed=1)
    assert store.writes and journal.get("segmind", first.id) == store.get("segmind", first.id)
    async with make_client(sb, tmp_path, journal=journal) as client:
        again = await client.run("segmind:seedream-4.5", prompt="any backend", seed=1)
    assert again.replayed and again.id == first.id
    assert sb.stats()["submits"] == {"segmind": 1}


def test_a_journal_it_cannot_use_is_refused_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before issue 13 every URL was refused; now a postgresql:// one is used, so the refusals
    # left are an unreachable database (naming its URL without the password) and other schemes.
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    cases = {
        f"postgresql://user:secret@127.0.0.1:{port}/team": (
            f"Cannot connect to PostgreSQL at postgresql://user@127.0.0.1:{port}/team"
        ),
        "mysql://user:secret@db.example:3306/team": "mysql:// journals are not supported",
    }
    for url, refusal in cases.items():
        attempts = (lambda u=url: Journal(u), Journal, lambda u=url: export("p.json", u))
        for attempt in attempts:
            monkeypatch.setenv("GENWIDGETS_JOURNAL", url)
            with pytest.raises(genwidgets.ConfigError, match=re.escape(refusal)) as info:
                attempt()
            shown = "".join(traceback.format_exception(info.value))
            assert "secret" not in shown and "secret" not in repr(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder named after the URL


EXITING = """
import sys, time
sys.path.insert(0, sys.argv[2])
from genwidgets import Status
from genwidgets.journal import Journal
from tests.test_journal import make_task

journal = Journal(sys.argv[1])
commit = journal._shared.writer._commit
journal._shared.writer._commit = lambda batch: (time.sleep(0.5), commit(batch))  # a slow disk
journal.record(make_task("left-open", status=Status.RUNNING))
"""  # ...and the interpreter exits with the record still queued, the journal never closed


def test_records_still_waiting_are_written_when_the_interpreter_exits(tmp_path: Path) -> None:
    root = str(Path(__file__).parent.parent)
    subprocess.run([sys.executable, "-c", EXITING, str(tmp_path / "j.sqlite"), root], check=True)
    assert on_disk(tmp_path / "j.sqlite") == {"left-open": "running"}


def test_records_that_can_never_be_written_are_dropped_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "j.sqlite").mkdir()  # not a database: no write can ever succeed (unlike a lock)
    journal = Journal(tmp_path / "j.sqlite")
    journal.record(make_task())
    assert journal.flush(timeout=5), "retried for ever"
    journal.close()
    assert "1 records cannot be written" in caplog.text
