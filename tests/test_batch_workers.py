"""Batches shared by several worker processes: claims, take-over after a kill, one manifest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from genwidgets import ConfigError
from genwidgets import _claims as claims_module
from genwidgets._claims import SQLiteClaims, batch_identity, open_claims
from tests.conftest import KEYS, pg_schema

#: fal answers in one short poll cycle (0.5 s): 300 lines stay quick.
MODEL = "fal:fal-ai/flux/schnell"


@pytest.fixture
def pg_url(postgres: Any) -> Iterator[str]:
    """A clean PostgreSQL database (a schema of its own) for one test."""
    with pg_schema(postgres) as url:
        yield url


def write_jobs(path: Path, n: int, marker: str = "") -> Path:
    """`n` lines; a new batch each call (the claims database is shared by the session)."""
    run = uuid.uuid4().hex[:8]
    rows = [{"model": MODEL, "prompt": f"otter {i} {run} {marker}".strip()} for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def cli_env(sb: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    env.update({f"GENWIDGETS_{p.upper()}_URL": u for p, u in sb.urls.items()})
    env.update({f"{p.upper()}_API_KEY": k for p, k in KEYS.items()})
    env.update(
        FAL_KEY="test-key-fal",
        GENWIDGETS_JOURNAL=str(tmp_path / "j.sqlite"),
        GENWIDGETS_CACHE_DIR=str(tmp_path / "cache"),
        GENWIDGETS_BUDGETS="off",
    )
    env.update(extra)
    return env


def batch_command(jobs: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "genwidgets", "batch", str(jobs), "--out", str(out), "--yes",
            *options]  # fmt: skip


def read_manifest(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def remote_submits(sb: Any) -> int:
    return sum(endpoints.get("submit", 0) for endpoints in sb.stats()["requests"].values())


def notes_of(notes: Path, pid: int) -> tuple[set[str], set[str]]:
    """(open unanswered tokens, answered task ids) in a worker process's submit-notes file."""
    begun, answered, ended, ids = set(), set(), set(), set()
    for path in notes.glob(f"{pid}-*.jsonl"):
        for line in path.read_text().splitlines():
            note = json.loads(line) if line.endswith("}") else {}
            if "answered" in note:
                answered.add(note["answered"])
                ids.add(note["task"]["id"])
            elif "end" in note:
                ended.add(note["end"])
            elif "token" in note:
                begun.add(note["token"])
    return begun - answered - ended, ids


# ------------------------------------------------------------------ the claims themselves
def claim_everything(make: Callable[[], Any], lines: int, workers: int) -> list[list[int]]:
    """`workers` threads, each with its own connection, claiming 3 lines at a time until none
    is left; the lines each one got."""
    got: list[list[int]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def worker(index: int) -> None:
        claims = make()
        try:
            start.wait()
            while batch := claims.claim(3, 30.0):
                got[index] += batch
                time.sleep(0.001)  # the work: lets the others in
                for line in batch:
                    claims.finish(line, {"line": line, "status": "succeeded"})
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            claims.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return got


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
def test_each_line_is_claimed_by_exactly_one_worker(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    batch = uuid.uuid4().hex
    where = request.getfixturevalue("pg_url") if store == "postgresql" else str(tmp_path / "c")
    first = open_claims(where, batch)
    first.register([(n, f"fp{n}") for n in range(1, 401)], reopen_failed=True)
    got = claim_everything(lambda: open_claims(where, batch), 400, 8)
    every = [line for lines in got for line in lines]
    assert Counter(every).most_common(1)[0][1] == 1, "a line was claimed twice"
    assert sorted(every) == list(range(1, 401))
    assert sum(1 for lines in got if lines) > 1  # they really shared the work
    assert first.counts() == {"succeeded": 400}
    assert [e["line"] for e in first.entries()] == list(range(1, 401))
    first.close()


def test_an_expired_lease_is_taken_over_and_its_old_owner_knows(tmp_path: Path) -> None:
    path = tmp_path / "claims.sqlite"
    a, b = SQLiteClaims(path, "b1"), SQLiteClaims(path, "b1")
    a.register([(1, "x"), (2, "y")], reopen_failed=True)
    assert a.claim(5, 0.3) == [1, 2]
    assert b.claim(5, 0.3) == []  # leased
    assert a.heartbeat(0.3) == {1, 2}
    time.sleep(0.4)
    assert b.claim(5, 30.0) == [1, 2]  # expired: taken over
    assert a.heartbeat(0.3) == set()
    assert not a.finish(1, {"status": "succeeded"})  # no longer a's to finish
    assert b.finish(1, {"line": 1, "status": "succeeded"})
    assert b.finish(2, {"line": 2, "status": "failed"})
    a.register([(1, "x"), (2, "y")], reopen_failed=True)  # a new command on the batch
    assert a.counts() == {"succeeded": 1, "open": 1}  # the failed line is tried again
    a.close()
    b.close()


def test_a_live_workers_expired_lease_is_not_taken_on_its_own_machine(tmp_path: Path) -> None:
    """A stalled worker is not a dead one: on one machine the process is asked, not the clock."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        claims = SQLiteClaims(tmp_path / "claims.sqlite", "b1")
        claims.register([(1, "x")], reopen_failed=True)
        claims.claim(1, 0.01)
        claims._db.execute("UPDATE batch_claims SET pid = ?", (sleeper.pid,))
        time.sleep(0.05)
        assert claims.claim(1, 30.0) == []
        sleeper.kill()
        sleeper.wait()
        assert claims.claim(1, 30.0) == [1]
        claims.close()
    finally:
        sleeper.kill()


def test_the_batch_identity_is_its_lines() -> None:
    lines = [(1, "a"), (2, "b")]
    assert batch_identity(lines) == batch_identity(list(reversed(lines)))
    assert batch_identity(lines) != batch_identity([(1, "a"), (2, "c")])


def test_a_claims_url_with_a_password_is_never_shown(postgres: Any) -> None:
    bad = postgres.url.replace(f":{postgres.password}@", ":wrong-secret-pw@")
    with pytest.raises(ConfigError) as caught:
        open_claims(bad, "b1")
    assert "wrong-secret-pw" not in str(caught.value)
    claims = open_claims(postgres.url, "b1")
    assert postgres.password not in repr(claims)
    claims.close()


def test_the_cli_shows_warnings_without_passwords_or_keys(
    postgres: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the CLI prints of a library warning: the claims URL redacted, its password and any
    key's value (here a driver's text quoting them) as ***, and only while a command runs."""
    import logging

    from genwidgets.__main__ import _build_parser, _warnings_shown

    monkeypatch.setenv("SEGMIND_API_KEY", "sk-segmind-secret-1")
    args = _build_parser().parse_args(["batch", "jobs.jsonl", "--claims", postgres.url])
    log = logging.getLogger("genwidgets.batch")
    with _warnings_shown(args):
        log.warning("batch: the claims store is unavailable (%s, password=%s, key %s)",
                    postgres.url, postgres.password, "sk-segmind-secret-1")  # fmt: skip
        log.info("batch: not shown")
    log.warning("batch: after the command: not shown")
    err = capsys.readouterr().err
    assert err.startswith("warning: batch: the claims store is unavailable"), err
    assert postgres.url_without_password in err and "***" in err
    assert postgres.password not in err and "sk-segmind-secret-1" not in err
    assert "not shown" not in err


def test_a_live_workers_heartbeat_keeps_its_lines_from_other_machines(
    sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 3, marker="[slow]")  # 3 s each, 1 s leases
    path = tmp_path / "claims.sqlite"
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=str(path))
    command = batch_command(jobs, tmp_path / "out", "--lease", "1")
    worker = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    monkeypatch.setattr(claims_module, "_HOST", "another-machine")  # this test, as a worker there
    batch = batch_identity([])  # read from the file once the worker registered its lines
    there = SQLiteClaims(path, batch)
    query = "SELECT batch FROM batch_claims LIMIT 1"
    wait_until(lambda: bool(there._db.execute(query).fetchall()), "the worker's lines")
    there.batch = there._db.execute(query).fetchone()[0]
    wait_until(lambda: there.counts().get("claimed") == 3, "the worker claimed every line")
    for _ in range(12):  # 2.4 s: leases of 1 s would have expired twice without the heartbeat
        assert there.claim(3, 30.0) == []
        time.sleep(0.2)
    there.close()
    assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""


# ------------------------------------------------------------------ whole batches
def test_workers_share_a_batch_into_one_manifest_and_skip_done_lines(
    sb: Any, tmp_path: Path
) -> None:
    """Three workers, SQLite claims beside the journal (one machine, no database server)."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 45)
    command = batch_command(jobs, tmp_path / "out", "--workers", "3", "--max-in-flight", "4")
    done = subprocess.run(command, env=cli_env(sb, tmp_path), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "45 succeeded" in done.stdout
    manifest = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [e["line"] for e in manifest] == list(range(1, 46))  # one line per job, in order
    assert all(e["status"] == "succeeded" and Path(e["outputs"][0]).is_file() for e in manifest)
    assert len({e["worker"] for e in manifest}) >= 2  # shared (one may start late, under load)
    assert (tmp_path / "j.sqlite-claims").is_file()
    fingerprints = sb.stats()["submit_fingerprints"]
    assert len(fingerprints) == 45 and set(fingerprints.values()) == {1}

    requests = json.dumps(sb.stats()["requests"], sort_keys=True)
    again = subprocess.run(command, env=cli_env(sb, tmp_path), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.dumps(sb.stats()["requests"], sort_keys=True) == requests  # not one request
    assert read_manifest(tmp_path / "out" / "manifest.jsonl") == manifest


def test_a_rerun_counts_only_the_lines_left_to_run(sb: Any, tmp_path: Path) -> None:
    """Lines that succeeded are not paid again, so they are not asked about either: a rerun on a
    machine without their files (the cache emptied here) needs no --yes."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 6)
    env = cli_env(sb, tmp_path, GENWIDGETS_CONFIRM_ABOVE="2")
    command = [*batch_command(jobs, tmp_path / "out", "--workers", "2")]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    for blob in (tmp_path / "cache").rglob("*.*"):
        blob.unlink()
    command.remove("--yes")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 succeeded" in again.stdout
    assert remote_submits(sb) == 6


def test_more_than_one_worker_needs_the_journal(sb: Any, tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 3)
    env = cli_env(sb, tmp_path, GENWIDGETS_JOURNAL="off")
    done = subprocess.run(batch_command(jobs, tmp_path / "out", "--workers", "2"), env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "--workers needs the journal" in done.stderr
    assert remote_submits(sb) == 0


def test_a_killed_workers_running_tasks_are_reattached(sb: Any, tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 8, marker="[slow]")  # 3 s each
    claims = str(tmp_path / "claims.sqlite")
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=claims)
    first = subprocess.Popen(
        batch_command(jobs, tmp_path / "out1", "--max-in-flight", "4", "--lease", "1"), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    notes = tmp_path / "j.sqlite-submits"
    wait_until(lambda: len(notes_of(notes, first.pid)[1]) == 4, "four tasks answered")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    in_the_air, started = notes_of(notes, first.pid)
    assert not in_the_air
    done = subprocess.run(batch_command(jobs, tmp_path / "out2", "--lease", "1"), env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = read_manifest(tmp_path / "out2" / "manifest.jsonl")
    assert all(e["status"] == "succeeded" for e in manifest) and len(manifest) == 8
    assert started <= {e["task_id"] for e in manifest}  # the killed worker's tasks, followed
    assert set(sb.stats()["submit_fingerprints"].values()) == {1}


def test_the_cli_shows_a_take_over_on_stderr(sb: Any, pg_url: str, tmp_path: Path) -> None:
    """A worker SIGKILLed with lines claimed: the command that takes them over (its spawned
    workers, through --workers 2) says so on stderr, naming the dead worker, with no password
    or key in what it prints."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 8, marker="[slow]")  # 3 s each
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=pg_url)
    first = subprocess.Popen(
        batch_command(jobs, tmp_path / "out1", "--max-in-flight", "4", "--lease", "1"), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    notes = tmp_path / "j.sqlite-submits"
    wait_until(lambda: len(notes_of(notes, first.pid)[1]) == 4, "four tasks answered")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    done = subprocess.run(batch_command(jobs, tmp_path / "out2", "--workers", "2", "--lease", "1"),
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [line.partition("warning: ")[2] for line in done.stderr.splitlines()
             if "taken over from worker" in line]  # (after the progress bar's last state)
    assert shown and all(line.startswith("batch: line") for line in shown), done.stderr
    assert sum(f"/{first.pid}/" in line for line in shown) >= 1, shown
    password = pg_url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password and password not in done.stderr + done.stdout
    assert not [k for k in (*KEYS.values(), "test-key-fal") if k in done.stderr]


def test_three_workers_one_killed_mid_run(sb: Any, pg_url: str, tmp_path: Path) -> None:
    """The issue's crash test: three workers on 300 lines with claims in PostgreSQL, one of them
    SIGKILLed while a submit of its own is on the wire. Every line ends succeeded except the
    ones whose submit was on the wire (at most 2: that worker runs 2 at a time), which are
    reported as uncertain, not resent; no request reaches the provider twice."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 300)
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=pg_url)
    lease = ("--lease", "2")
    victim = subprocess.Popen(
        batch_command(jobs, tmp_path / "out0", "--max-in-flight", "2", *lease), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    others = [
        subprocess.Popen(
            batch_command(jobs, tmp_path / f"out{i}", "--max-in-flight", "6", *lease),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    notes = tmp_path / "j.sqlite-submits"
    wait_until(lambda: remote_submits(sb) >= 60, "60 submits reached the provider")
    sb.set_faults(latency=3.0)  # from now on answers are slow: a submit can be caught mid-air

    def caught_in_the_air() -> bool:
        """A submit of the victim's still unanswered half a second on: slowed down, so its
        request has reached the provider and its answer is seconds away."""
        first = notes_of(notes, victim.pid)[0]
        if not first:
            return False
        time.sleep(0.5)
        return bool(first & notes_of(notes, victim.pid)[0])

    wait_until(caught_in_the_air, "the victim's submit on the wire")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    sb.set_faults(latency=0.0)
    in_the_air, _ = notes_of(notes, victim.pid)
    results = [p.communicate(timeout=600) for p in others]
    assert [p.returncode for p in others] == [1, 1], [err[-2000:] for _, err in results]

    manifest = read_manifest(tmp_path / "out1" / "manifest.jsonl")
    # One manifest: the same tasks, results and workers, each naming the files in its own --out.
    other = read_manifest(tmp_path / "out2" / "manifest.jsonl")
    keys = ("line", "task_id", "status", "sha256", "worker", "error")
    assert [[e.get(k) for k in keys] for e in other] == [[e.get(k) for k in keys] for e in manifest]
    assert all(
        Path(e["outputs"][0]).parent.name == "out2" for e in other if e["status"] == "succeeded"
    )
    assert [e["line"] for e in manifest] == list(range(1, 301))
    uncertain = [e for e in manifest if e["status"] != "succeeded"]
    assert 1 <= len(uncertain) == len(in_the_air) <= 2, (in_the_air, uncertain)
    assert all("may have been accepted" in e["error"] for e in uncertain)
    by_victim = [e for e in manifest if f"/{victim.pid}/" in e["worker"]]
    assert by_victim and not [e for e in uncertain if e in by_victim]  # others took them over
    fingerprints = sb.stats()["submit_fingerprints"]
    assert set(fingerprints.values()) == {1}, "a request reached the provider twice"
    # No line's submit arrived twice (an uncertain one's may not have arrived at all).
    assert 300 - len(uncertain) <= remote_submits(sb) <= 300
    assert 300 - len(uncertain) <= len(fingerprints)  # (a body cut by the kill is not read)
    assert f"{300 - len(uncertain)} succeeded" in results[0][0]


def test_a_line_that_succeeded_is_fetched_again_not_resubmitted(sb: Any, tmp_path: Path) -> None:
    """Its files are not in this machine's cache (run elsewhere, or a worker died before the
    download): the recorded task's outputs are downloaded, the request is not paid twice."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 2)
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=str(tmp_path / "first.sqlite"))
    first = subprocess.run(batch_command(jobs, tmp_path / "out1"), env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    for blob in (tmp_path / "cache").rglob("*.*"):
        blob.unlink()
    env["GENWIDGETS_CLAIMS"] = str(tmp_path / "second.sqlite")  # a new claims store: lines open
    second = subprocess.run(batch_command(jobs, tmp_path / "out2"), env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert remote_submits(sb) == 2
    before = read_manifest(tmp_path / "out1" / "manifest.jsonl")
    after = read_manifest(tmp_path / "out2" / "manifest.jsonl")
    assert [e["task_id"] for e in after] == [e["task_id"] for e in before]
    assert [e["sha256"] for e in after] == [e["sha256"] for e in before]
    assert all(Path(e["outputs"][0]).is_file() for e in after)


def test_a_local_journal_refuses_lines_claimed_on_another_machine(
    sb: Any, tmp_path: Path
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 2, marker="[slow]")
    path = tmp_path / "claims.sqlite"
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=str(path))
    command = batch_command(jobs, tmp_path / "out", "--lease", "1")
    elsewhere = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: remote_submits(sb) == 2, "both lines submitted")
    elsewhere.send_signal(signal.SIGKILL)
    elsewhere.wait(10)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE batch_claims SET host = 'another-machine'")
    time.sleep(1.0)  # the leases expire
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "workers on several machines" in done.stderr and "postgresql://" in done.stderr
    assert remote_submits(sb) == 2


def test_workers_wait_out_a_database_restart(
    sb: Any, postgres: Any, pg_url: str, tmp_path: Path
) -> None:
    """The claims' PostgreSQL goes away mid-run and comes back: the running tasks go on, the
    worker waits for the database instead of dying, and every line ends once, submitted once."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 8, marker="[slow]")  # 3 s each, 4 at a time
    env = cli_env(sb, tmp_path, GENWIDGETS_CLAIMS=pg_url)
    command = batch_command(jobs, tmp_path / "out", "--max-in-flight", "4")
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    wait_until(lambda: remote_submits(sb) >= 4, "the first submits")
    postgres.stop()
    try:
        time.sleep(2.0)
    finally:
        postgres.start()
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err[-3000:]
    assert "8 succeeded" in out
    assert "warning: batch: the claims store is unavailable" in err  # shown, and no password
    assert postgres.password not in err
    assert set(sb.stats()["submit_fingerprints"].values()) == {1}
    assert len(read_manifest(tmp_path / "out" / "manifest.jsonl")) == 8


def test_workers_on_a_postgresql_journal_split_a_batch_and_survive_a_kill(
    sb: Any, pg_url: str, tmp_path: Path
) -> None:
    """The team set-up: GENWIDGETS_JOURNAL=postgresql://..., the claims in the same database by
    default, `--workers 3`; one worker SIGKILLed with a submit on the wire (seen in the journal's
    submit leases): its lines are taken over, the uncertain one reported, none sent twice."""
    import psycopg

    jobs = write_jobs(tmp_path / "jobs.jsonl", 90)
    env = cli_env(sb, tmp_path, GENWIDGETS_JOURNAL=pg_url)
    options = ("--workers", "3", "--max-in-flight", "2", "--lease", "2")
    command = batch_command(jobs, tmp_path / "out", *options)
    batch = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    db = psycopg.connect(pg_url, autocommit=True)
    unanswered = "SELECT token FROM journal_submits WHERE pid = %s AND task IS NULL"

    def in_the_air(pid: int) -> set[str]:
        return {row[0] for row in db.execute(unanswered, (pid,))}

    def victim_caught() -> int | None:
        """A worker with a submit still unanswered half a second on (slowed down: its request
        has reached the provider)."""
        claimed = "SELECT DISTINCT pid FROM batch_claims WHERE state = 'claimed'"
        for (pid,) in db.execute(claimed).fetchall():
            first = in_the_air(pid)
            if first:
                time.sleep(0.5)
                if first & in_the_air(pid):
                    return int(pid)
        return None

    try:
        wait_until(lambda: remote_submits(sb) >= 30, "30 submits reached the provider")
        sb.set_faults(latency=3.0)
        found: list[int] = []
        wait_until(lambda: bool(found.append(victim_caught() or 0) or found[-1]), "a victim")
        os.kill(found[-1], signal.SIGKILL)
        sb.set_faults(latency=0.0)
        lost = in_the_air(found[-1])
        out, err = batch.communicate(timeout=600)
    finally:
        db.close()
    manifest = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [e["line"] for e in manifest] == list(range(1, 91))
    uncertain = [e for e in manifest if e["status"] != "succeeded"]
    assert 1 <= len(uncertain) == len(lost) <= 2, (lost, uncertain, err[-2000:])
    assert all("may have been accepted" in e["error"] for e in uncertain)
    assert batch.returncode == 1 and f"{90 - len(uncertain)} succeeded" in out
    assert len({e["worker"] for e in manifest}) >= 2  # shared (the victim may have ended none)
    assert set(sb.stats()["submit_fingerprints"].values()) == {1}
    assert 90 - len(uncertain) <= remote_submits(sb) <= 90


async def test_a_worker_that_lost_a_lease_stops_that_line(
    sb: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose lease on a line was taken (its heartbeat came too late and a worker on
    another machine claimed the line) stops that line at once: here it was waiting for a slot of
    its budget, and must not send the request the other worker sends."""
    from genwidgets import AsyncClient, Limits
    from genwidgets._batch import plan
    from genwidgets._workers import work

    tag = uuid.uuid4().hex[:6]
    rows = [{"model": MODEL, "prompt": f"heron 1 [slow] {tag}"},
            {"model": MODEL, "prompt": f"heron 2 {tag}"}]  # fmt: skip

    def client(folder: str) -> AsyncClient:
        return AsyncClient(
            api_keys={"fal": "test-key-fal"},
            base_urls=sb.urls,
            cache_dir=tmp_path / folder,
            journal=tmp_path / "j.sqlite",
            poll_interval=(0.05, 0.3),
            budgets={"fal": Limits(max_in_flight=1)},  # line 2 waits for line 1's slot
        )

    path = tmp_path / "claims.sqlite"
    here, there = SQLiteClaims(path, "b1"), SQLiteClaims(path, "b1")
    here.register([(1, "x"), (2, "y")], reopen_failed=True)
    async with client("a") as a, client("b") as b:
        jobs = {job.line: job for job in plan(a, None, rows, yes=True)}
        options = {"max_in_flight": 2, "lease": 0.4}
        first = asyncio.ensure_future(work(a, jobs, here, out=tmp_path / "a", **options))
        await asyncio.to_thread(
            wait_until, lambda: remote_submits(sb) == 1 and here.counts() == {"claimed": 2},
            "line 1 running, line 2 waiting for its slot",
        )  # fmt: skip
        with closing(sqlite3.connect(path, timeout=30)) as db, db:  # line 2: lost, elsewhere
            db.execute(
                "UPDATE batch_claims SET owner = 'gone', host = 'another-machine', "
                "expires_at = 0 WHERE line = 2"
            )
        with caplog.at_level("WARNING", logger="genwidgets.batch"):
            second = asyncio.ensure_future(work(b, jobs, there, out=tmp_path / "b", **options))
            await asyncio.wait_for(asyncio.gather(first, second), 60)
    entries = here.entries()
    assert "lost the lease on line 2" in caplog.text
    assert [e["status"] for e in entries] == ["succeeded", "succeeded"]
    assert entries[1]["worker"] == there.worker
    assert set(sb.stats()["submit_fingerprints"].values()) == {1}, "line 2 was sent twice"
    assert remote_submits(sb) == 2
    here.close()
    there.close()


async def test_a_line_lost_then_claimed_again_is_followed_not_sent_again(
    sb: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that lost a line while its task ran, and claims it again once that lease expired
    too, follows the task it started (its own client follows it, so `submit` would send anew)."""
    from genwidgets import AsyncClient
    from genwidgets._batch import plan
    from genwidgets._workers import work

    rows = [{"model": MODEL, "prompt": f"heron {i} [slow] {uuid.uuid4().hex[:6]}"} for i in (1, 2)]
    async with AsyncClient(
        api_keys={"fal": "test-key-fal"},
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=tmp_path / "j.sqlite",
        poll_interval=(0.05, 0.3),
    ) as client:
        jobs = {job.line: job for job in plan(client, None, rows, yes=True)}
        claims = SQLiteClaims(tmp_path / "claims.sqlite", "b1")
        claims.register([(1, "x"), (2, "y")], reopen_failed=True)
        running = asyncio.ensure_future(
            work(client, jobs, claims, out=tmp_path / "out", max_in_flight=2, lease=0.4)
        )
        await asyncio.to_thread(wait_until, lambda: remote_submits(sb) == 2, "both submitted")
        with closing(sqlite3.connect(tmp_path / "claims.sqlite", timeout=30)) as db, db:
            db.execute(
                "UPDATE batch_claims SET owner = 'thief', expires_at = ? WHERE line = 1",
                (time.time() + 1.0,),
            )
        with caplog.at_level("WARNING", logger="genwidgets.batch"):
            await asyncio.wait_for(running, 60)
        entries = claims.entries()
        claims.close()
    assert "lost the lease on line 1" in caplog.text
    assert [e["status"] for e in entries] == ["succeeded", "succeeded"]
    assert set(sb.stats()["submit_fingerprints"].values()) == {1}
    assert remote_submits(sb) == 2


def test_a_rerun_into_another_folder_or_machine_brings_the_files_there(
    sb: Any, tmp_path: Path
) -> None:
    """The batch ran on machine A into outA; the same command on machine B (its own empty cache,
    the same journal and claims) into outB: every file is in outB, byte-identical, and the
    manifest names it there; nothing is submitted again."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", 4)
    env = cli_env(sb, tmp_path, GENWIDGETS_CACHE_DIR=str(tmp_path / "cacheA"))
    first = subprocess.run(batch_command(jobs, tmp_path / "outA", "--workers", "2"), env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    env["GENWIDGETS_CACHE_DIR"] = str(tmp_path / "cacheB")
    second = subprocess.run(batch_command(jobs, tmp_path / "outB", "--workers", "2"), env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 succeeded" in second.stdout
    assert remote_submits(sb) == 4
    before = read_manifest(tmp_path / "outA" / "manifest.jsonl")
    after = read_manifest(tmp_path / "outB" / "manifest.jsonl")
    assert [e["task_id"] for e in after] == [e["task_id"] for e in before]
    for a, b in zip(before, after, strict=True):
        assert Path(b["outputs"][0]).parent.resolve() == (tmp_path / "outB").resolve()
        assert Path(b["outputs"][0]).read_bytes() == Path(a["outputs"][0]).read_bytes()
