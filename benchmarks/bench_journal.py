"""What one PostgreSQL journal carries: snapshots written per second, lookups, submit notes.

    .venv/bin/python benchmarks/bench_journal.py [--tasks 4000] [--processes 3]
    .venv/bin/python benchmarks/bench_journal.py --tiny    # 200 tasks, 2 processes, seconds

What is measured: the team journal's capacity, for the README's scale notes. A real PostgreSQL
(`genwidgets.sandbox.postgres.LocalPostgres`, loopback, with fsync and synchronous commit ON
like a production server) takes the records of `--processes` writer processes at once, each
recording `--tasks` tasks as two snapshots (running, then succeeded with one output) through
`Journal(url)` and its background writer, then flushing. Then, in one process: `latest()` by
fingerprint (the lookup before every submit, adoption check included) and a submit note begun
and ended (a lease inserted and deleted, what every submit adds). The peer is the same run on
a SQLite journal file (one file, the same processes): ratios are PostgreSQL over SQLite. No
provider is involved: the client's own cost per task is in bench_client/bench_batch.
Prints a table and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import parse_args

from genwidgets import Output, Status, Task
from genwidgets.journal import Journal, fingerprint
from genwidgets.sandbox.postgres import LocalPostgres

TINY = {"tasks": 200, "processes": 2, "lookups": 50}
CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def write(where: str, prefix: str, tasks: int, done: Any) -> None:
    """One writer process: record `tasks` tasks (two snapshots each), flush, report seconds."""
    journal = Journal(where)
    start = time.perf_counter()
    for i in range(tasks):
        task = Task(id=f"{prefix}{i}", provider="segmind", model="m", status=Status.RUNNING,
                    params={"prompt": f"{prefix}{i}"}, created_at=CREATED,
                    provider_data={"status_url": f"https://x/{prefix}{i}"})  # fmt: skip
        journal.record(task)
        output = Output(kind="image", url=f"https://x/{i}.png", sha256="ab" * 32, size=100)
        journal.record(task.evolve(status=Status.SUCCEEDED, outputs=(output,)))
    journal.flush()
    done.put(time.perf_counter() - start)
    journal.close()


def measure(where: str, args: argparse.Namespace) -> dict[str, float]:
    Journal(where).close()  # tables or file created before the clock starts
    done: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=write, args=(where, f"w{k}-", args.tasks, done))
        for k in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    seconds = max(done.get(timeout=600) for _ in workers)  # from each one's first record
    for worker in workers:
        worker.join()
    journal = Journal(where)
    start = time.perf_counter()
    for i in range(args.lookups):
        assert journal.latest(fingerprint("segmind", "m", {"prompt": f"w0-{i}"})) is not None
    lookup = (time.perf_counter() - start) / args.lookups
    start = time.perf_counter()
    for i in range(args.lookups):
        token = journal.begin_submit("segmind", "m", {"prompt": f"note {i}"})
        journal.end_submit(token, at_once=True)
    note = (time.perf_counter() - start) / args.lookups
    journal.close()
    snapshots = 2 * args.tasks * args.processes
    return {"snapshots": snapshots, "seconds": round(seconds, 3),
            "snapshots_per_second": round(snapshots / seconds),
            "latest_ms": round(lookup * 1000, 3), "note_ms": round(note * 1000, 3)}  # fmt: skip


def durable(url: str) -> None:
    """fsync and synchronous commit on, as on a production server (the test server has them
    off, for speed)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = on")
        conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        conn.execute("SELECT pg_reload_conf()")
    with psycopg.connect(url) as conn:  # a new session sees the reloaded settings
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=4000, help="tasks per writer process")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=500)
    args = parse_args(parser, TINY)
    with LocalPostgres() as pg, tempfile.TemporaryDirectory() as folder:
        durable(pg.url)
        rows = {"postgresql": measure(pg.url, args),
                "sqlite": measure(str(Path(folder) / "journal.sqlite"), args)}  # fmt: skip
    print(f"{args.processes} writer processes x {args.tasks} tasks (2 snapshots each)")
    print(f"{'journal':12} {'snapshots/s':>12} {'latest() ms':>12} {'note ms':>9}")
    for name, row in rows.items():
        print(f"{name:12} {row['snapshots_per_second']:12,d} {row['latest_ms']:12.3f} "
              f"{row['note_ms']:9.3f}")  # fmt: skip
    pg_row, lite = rows["postgresql"], rows["sqlite"]
    ratios = {
        "postgres_over_sqlite_write_rate": round(
            pg_row["snapshots_per_second"] / lite["snapshots_per_second"], 3
        ),
        "postgres_over_sqlite_latest_time": round(pg_row["latest_ms"] / lite["latest_ms"], 2),
        "postgres_over_sqlite_note_time": round(pg_row["note_ms"] / lite["note_ms"], 2),
    }
    print("RESULT " + json.dumps({"journals": rows, "ratios": ratios, "ok": True}))


if __name__ == "__main__":
    main()
