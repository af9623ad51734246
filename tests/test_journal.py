"""The journal: every snapshot recorded, status history, fingerprints, provenance, two writers."""

from __future__ import annotations

import csv
import json
import multiprocessing
from datetime import datetime, timezone
from pathlib import Path

from genwidgets import Output, Status, Task
from genwidgets.journal import Journal, fingerprint


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


def test_records_status_changes_and_outputs(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
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


def test_unfinished_includes_succeeded_but_not_downloaded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
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


def test_replayed_snapshots_are_not_recorded_again(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.record(make_task(replayed=True))
    assert journal.tasks() == []


def test_export_json_and_csv(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
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
