"""A process killed while a submit is in the air: the request is not sent again blindly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from genwidgets import AsyncClient, Status, SubmitUncertain
from genwidgets._journal_notes import _read
from genwidgets.journal import Journal, fingerprint
from tests.conftest import KEYS

MODEL, PROMPT = "rixapi:kling-v3/text-to-video", "sent, then the sender died"

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from genwidgets import AsyncClient

    urls, keys, cache, journal, model, prompt = json.loads(sys.argv[1])

    async def main():
        async with AsyncClient(api_keys=keys, base_urls=urls, cache_dir=cache,
                               journal=journal) as client:
            await client.submit(model, prompt=prompt)

    asyncio.run(main())
    """
)


def open_notes(journal_path: Path | str) -> list[dict[str, Any]]:
    """Every note still open in the notes folder beside a journal (or in its PostgreSQL
    database), whoever wrote it."""
    if isinstance(journal_path, str):
        with psycopg.connect(journal_path) as conn:
            cursor = conn.execute("SELECT * FROM journal_submits")
            names = [c.name for c in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    folder = journal_path.with_name(journal_path.name + "-submits")
    return [note for path in folder.glob("*.jsonl") for note in _read(path)[1].values()]


def test_notes_of_dead_processes_are_orphans_and_ours_are_not(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    mine = journal.begin_submit("rixapi", "m", {"prompt": "x"})
    fp = fingerprint("rixapi", "m", {"prompt": "x"})
    assert journal.orphaned_submits(fp) == []  # this process may still be waiting for it
    assert [n["token"] for n in open_notes(tmp_path / "j.sqlite")] == [mine]  # on disk already
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    note = {"token": "t2", "fingerprint": fp, "provider": "rixapi", "model": "m",
            "host": socket.gethostname(), "pid": int(dead.stdout), "process": "other",
            "started_at": "2026-01-01"}  # fmt: skip
    # A note written by a process that has since exited.
    (tmp_path / "j.sqlite-submits" / f"{dead.stdout.strip()}-other.jsonl").write_text(
        json.dumps(note) + "\n"
    )
    (orphan,) = journal.orphaned_submits(fp)
    assert orphan["pid"] == int(dead.stdout)
    assert journal.orphaned_submits(fingerprint("rixapi", "m", {"prompt": "y"})) == []
    journal.end_submit(mine)
    journal.forget_submits(fp)
    assert journal.orphaned_submits(fp) == []
    journal.close()
    assert open_notes(tmp_path / "j.sqlite") == []
    assert list((tmp_path / "j.sqlite-submits").iterdir()) == []  # nothing left behind


async def test_a_submit_killed_in_the_air_is_not_resent_without_fresh(
    sb: Any, tmp_path: Path, journal_at: Any
) -> None:
    journal_path = journal_at(tmp_path)  # a file, or a PostgreSQL database (leases)
    sb.set_faults(latency=5.0)  # the answer to the submit takes 5 s: kill the sender meanwhile
    args = json.dumps([sb.urls, KEYS, str(tmp_path / "c1"), str(journal_path), MODEL, PROMPT])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, args], env=env)
    deadline = time.monotonic() + 30
    while not sb.stats()["requests"].get("rixapi", {}).get("submit"):
        assert time.monotonic() < deadline, "the worker never sent its submit"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    sb.set_faults(latency=0.0)

    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "c2",
        journal=journal_path,
        poll_interval=(0.05, 0.3),
    ) as client:
        with pytest.raises(SubmitUncertain, match="may have been accepted and billed"):
            await client.submit(MODEL, prompt=PROMPT)
        assert sb.stats()["requests"]["rixapi"]["submit"] == 1  # refused before sending
        with pytest.raises(SubmitUncertain):  # and again: the note stays until told otherwise
            await client.submit(MODEL, prompt=PROMPT)
        task = await client.submit(MODEL, prompt=PROMPT, fresh=True)
        assert (await client.wait(task)).status is Status.SUCCEEDED
        other = await client.run(MODEL, prompt="an unrelated request is not held back")
        assert other.status is Status.SUCCEEDED
    assert sb.stats()["requests"]["rixapi"]["submit"] == 3
    Journal(journal_path).close()
    assert open_notes(journal_path) == []


def test_the_orphan_check_reads_one_line_of_a_live_process_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    fp = fingerprint("rixapi", "m", {"prompt": "x"})
    live = {"host": socket.gethostname(), "pid": os.getppid(), "process": "busy-batch"}
    lines = [{"token": f"t{i}", "fingerprint": fp, **live} for i in range(25_000)]
    lines += [{"end": f"t{i}"} for i in range(25_000)]  # a long-running batch's notes
    folder = tmp_path / "j.sqlite-submits"
    folder.mkdir()
    (folder / f"{os.getppid()}-busy-batch.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    started = time.monotonic()
    for _ in range(100):  # one check per submit
        assert journal.orphaned_submits(fp) == []
    assert time.monotonic() - started < 1.0  # reading the whole file each time took 20 s


ANSWERED_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from genwidgets import AsyncClient

    urls, keys, cache, journal, model, prompts = json.loads(sys.argv[1])

    async def main():
        client = AsyncClient(api_keys=keys, base_urls=urls, cache_dir=cache, journal=journal)
        tasks = [await client.submit(model, prompt=prompt) for prompt in prompts]
        print(json.dumps([task.id for task in tasks]), flush=True)
        time.sleep(60)  # killed here: the answers are in, their records still queued

    asyncio.run(main())
    """
)
LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")  # another kernel's long transaction: no record can land
print("held", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def records_held_back(journal: Path | str) -> Iterator[None]:
    """Another kernel's long transaction: no record can land in the journal meanwhile (on
    PostgreSQL, a lock on the tasks table; submit notes, in their own table, still can)."""
    if isinstance(journal, str):
        Journal(journal).close()  # the tables exist
        with psycopg.connect(journal) as conn:
            conn.execute("LOCK TABLE journal_tasks IN EXCLUSIVE MODE")
            yield
        return
    journal.write_bytes(b"")  # an empty journal, locked by another process
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(journal)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_a_task_answered_just_before_a_hard_kill_is_followed_not_lost(
    sb: Any, tmp_path: Path, journal_at: Any
) -> None:
    journal_path = journal_at(tmp_path)
    prompts = ["answered, then killed", "answered too, then killed"]
    args = json.dumps([sb.urls, KEYS, str(tmp_path / "c1"), str(journal_path), MODEL, prompts])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    with records_held_back(journal_path):
        worker = subprocess.Popen(
            [sys.executable, "-c", ANSWERED_WORKER, args],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            ids = json.loads(worker.stdout.readline())  # both submits answered...
            worker.send_signal(signal.SIGKILL)  # ...and killed before any record landed
            worker.wait(10)
        finally:
            worker.kill()
            worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()
    assert sb.stats()["submits"] == {"rixapi": 2}

    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "c2",
        journal=journal_path,
        poll_interval=(0.05, 0.3),
    ) as client:
        again = await client.run(MODEL, prompt=prompts[0])  # re-run: follows, does not resend
        assert again.id == ids[0] and again.status is Status.SUCCEEDED
        (resumed,) = client.resume()  # the other one is found too
        assert resumed.id == ids[1]
        done = await client.download(await client.wait(resumed))
        assert done.status is Status.SUCCEEDED and done.outputs[0].path is not None
    assert sb.stats()["submits"] == {"rixapi": 2}  # one submit each at the server, no resend
    journal = Journal(journal_path)
    assert {t.id: t.status for t in journal.tasks()} == dict.fromkeys(ids, Status.SUCCEEDED)
    journal.close()
    assert open_notes(journal_path) == []  # the notes end once their tasks are on disk


def test_notes_in_an_older_journal_table_still_count(tmp_path: Path) -> None:
    # A process of the version that kept notes in the journal's `submits` table died sending.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          text=True, capture_output=True, check=True)  # fmt: skip
    fp = fingerprint("rixapi", "m", {"prompt": "x"})
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE submits (token TEXT PRIMARY KEY, fingerprint TEXT, provider TEXT, "
               "model TEXT, host TEXT, pid INTEGER, process TEXT, started_at TEXT)")  # fmt: skip
    row = ("t", fp, "rixapi", "m", socket.gethostname(), int(dead.stdout), "old", "2026-11-30")
    db.execute("INSERT INTO submits VALUES (?,?,?,?,?,?,?,?)", row)
    db.commit()
    db.close()
    journal = Journal(tmp_path / "old.sqlite")
    (orphan,) = journal.orphaned_submits(fp)
    assert orphan["pid"] == int(dead.stdout)
    journal.forget_submits(fp)  # fresh=True
    assert journal.orphaned_submits(fp) == []
    journal.close()


def test_notes_begun_together_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit: notes written while an fsync runs are covered by the next one, so a
    batch's burst of submits costs a few disk flushes, not one each; each is durable on return."""
    from genwidgets import _journal_notes

    flushed: list[int] = []
    real_fsync = _journal_notes._fsync_file
    notes = _journal_notes.FileNotes(tmp_path / "notes")

    def counting(path: Path) -> None:
        flushed.append(notes._written)  # how many lines were written when it flushed
        real_fsync(path)

    monkeypatch.setattr(_journal_notes, "_fsync_file", counting)
    notes.begin("fp0", "rixapi", "m")
    assert flushed == [1]
    tokens: list[str] = []
    with notes._syncing:  # an fsync in progress: five more notes are written meanwhile
        threads = [
            threading.Thread(target=lambda i=i: tokens.append(notes.begin(f"fp{i}", "p", "m")))
            for i in range(1, 6)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while notes._written < 6:
            assert time.monotonic() < deadline, "the notes were not written"
            time.sleep(0.01)
        assert tokens == []  # none returns before its line is on disk
    for thread in threads:
        thread.join(10)
    assert flushed == [1, 6]  # one fsync for all five
    assert len(tokens) == 5
    (path,) = (tmp_path / "notes").glob("*.jsonl")
    assert len(_read(path)[1]) == 6


async def test_a_slow_note_does_not_stall_the_event_loop(
    sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note is written off the event loop: on a slow disk (here 0.5 s a note), other tasks
    go on meanwhile, and the submit still waits for its note before sending."""
    real_begin = Journal.begin_submit
    began: list[float] = []

    def slow_begin(self: Journal, *args: Any) -> str:
        time.sleep(0.5)
        began.append(time.monotonic())
        return real_begin(self, *args)

    monkeypatch.setattr(Journal, "begin_submit", slow_begin)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async with AsyncClient(
        api_keys=KEYS, base_urls=sb.urls, cache_dir=tmp_path / "c", journal=tmp_path / "j.sqlite"
    ) as client:
        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        task = await client.submit(MODEL, prompt="a slow disk")
        ticking.cancel()
    assert task.id
    assert began and began[0] >= started + 0.5
    during = [t for t in ticks if started < t < began[0]]
    assert len(during) >= 10, f"the loop stalled while the note was written: {len(during)} ticks"
    assert sb.stats()["requests"]["rixapi"]["submit"] >= 1


async def test_a_submit_cancelled_while_its_note_is_written_leaves_no_note(
    sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled before sending (the note still being written): nothing was sent, so the note
    is ended as soon as it lands, not left as an orphan that would make a re-run ask."""
    real_begin = Journal.begin_submit
    landed = threading.Event()

    def slow_begin(self: Journal, *args: Any) -> str:
        time.sleep(0.3)
        try:
            return real_begin(self, *args)
        finally:
            landed.set()

    monkeypatch.setattr(Journal, "begin_submit", slow_begin)
    journal_path = tmp_path / "j.sqlite"
    before = sb.stats()["requests"].get("rixapi", {}).get("submit", 0)
    async with AsyncClient(
        api_keys=KEYS, base_urls=sb.urls, cache_dir=tmp_path / "c", journal=journal_path
    ) as client:
        submitting = asyncio.ensure_future(client.submit(MODEL, prompt="cancelled early"))
        await asyncio.sleep(0.1)
        submitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await submitting
        assert await asyncio.to_thread(landed.wait, 10)
        await asyncio.sleep(0.05)  # the loop runs the callback that ends it
        assert open_notes(journal_path) == []
    assert sb.stats()["requests"].get("rixapi", {}).get("submit", 0) == before
