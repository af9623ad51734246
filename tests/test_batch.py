"""Batch runs: lines checked first, a manifest, and the journal as the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient
from genwidgets._batch import abatch, read_jobs, summarize
from tests.conftest import KEYS


def write_jobs(path: Path, n: int, slow: bool = False) -> Path:
    models = ["segmind:seedream-4.5", "netmind:Qwen/Qwen-Image", "local:image"]
    lines = [
        json.dumps(
            {
                "model": models[i % 3],
                "prompt": f"job {i}" + (" [slow]" if slow else ""),
                "params": {"seed": i},
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_lines_are_reported_with_numbers_before_anything(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"model": "local:image", "prompt": "ok"}\nnot json\n\n[1, 2]\n')
    with pytest.raises(genwidgets.InvalidParams, match=r"line 2: not JSON[\s\S]*line 4"):
        read_jobs(jobs)


async def test_invalid_requests_fail_the_batch_before_any_submit(sb: Any, tmp_path: Path) -> None:
    rows = [
        {"model": "segmind:seedream-4.5", "prompt": "fine"},
        {"model": "segmnd:seedream-4.5", "prompt": "typo"},
        {"model": "local:image", "prompt": ""},
    ]
    async with AsyncClient(
        api_keys=KEYS, base_urls=sb.urls, cache_dir=tmp_path, journal=False
    ) as c:
        with pytest.raises(genwidgets.InvalidParams, match=r"line 2: .*segmind[\s\S]*line 3"):
            await abatch(None, rows, client=c, progress=False)
    assert sb.stats()["submits"] == {}


async def test_batch_writes_a_manifest_and_reruns_for_free(
    sb: Any, tmp_path: Path, journal_at: Any
) -> None:
    rows = [r for _, r in read_jobs(write_jobs(tmp_path / "jobs.jsonl", 12))]

    def client() -> AsyncClient:
        return AsyncClient(
            api_keys=KEYS,
            base_urls=sb.urls,
            cache_dir=tmp_path / "cache",
            journal=journal_at(tmp_path),  # a SQLite file, or a PostgreSQL database
            poll_interval=(0.05, 0.3),
        )

    async with client() as c:
        results = await abatch(
            None,
            rows,
            client=c,
            out=tmp_path / "out",
            manifest=tmp_path / "manifest.jsonl",
            progress=False,
        )
    assert [r["status"] for r in results] == ["succeeded"] * 12
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["line"] for m in manifest) == list(range(1, 13))
    assert all(Path(m["outputs"][0]).exists() and m["sha256"][0] for m in manifest)
    submits = dict(sb.stats()["submits"])
    async with client() as c:
        again = await abatch(None, rows, client=c, out=tmp_path / "out", progress=False)
    assert all(r["replayed"] for r in again)
    assert dict(sb.stats()["submits"]) == submits


def remote_submits(sb: Any) -> int:
    """Submit requests the sandbox has received (counted on arrival, before any latency)."""
    return sum(endpoints.get("submit", 0) for endpoints in sb.stats()["requests"].values())


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_cli_batch_killed_then_rerun_submits_nothing_twice(
    sb: Any, tmp_path: Path, journal_at: Any
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 30, slow=True)  # 20 remote lines, 10 local
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    env.update({f"GENWIDGETS_{p.upper()}_URL": u for p, u in sb.urls.items()})
    env.update({f"{p.upper()}_API_KEY": k for p, k in KEYS.items()})
    env.update(
        GENWIDGETS_JOURNAL=str(journal_at(tmp_path)),  # a file, or PostgreSQL with leases
        GENWIDGETS_CACHE_DIR=str(tmp_path / "c"),
        GENWIDGETS_LOCAL_DURATION="0.2",
        GENWIDGETS_BUDGETS="off",  # this tests the checkpoint; budgets have tests of their own
    )
    command = [sys.executable, "-m", "genwidgets", "batch", str(jobs), "--out",
               str(tmp_path / "out"), "--max-in-flight", "6"]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: remote_submits(sb) >= 4, "four submits reached the provider")
    # From now on every answer takes 4 s: the next submit is certainly on the wire at the kill.
    sb.set_faults(latency=4.0)
    before = remote_submits(sb)
    wait_until(lambda: remote_submits(sb) > before, "a submit sent into the slow answers")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    in_the_air = remote_submits(sb) - before
    sb.set_faults(latency=0.0)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    fingerprints = sb.stats()["submit_fingerprints"]
    assert all(count == 1 for count in fingerprints.values()), "a job was submitted twice"
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").open()]
    final = {entry["line"]: entry for entry in manifest}  # the rerun's entry is the last one
    assert set(final) == set(range(1, 31))
    # A job the kill caught between sending and recording may have been accepted: it is
    # reported (and left to `fresh=True`) instead of sent twice. Everything else succeeded,
    # local jobs always (their work died with the process: they simply run again).
    uncertain = [e for e in final.values() if e["status"] != "succeeded"]
    assert len(uncertain) >= in_the_air >= 1, (in_the_air, uncertain)
    assert all("may have been accepted" in e["error"] for e in uncertain), uncertain
    assert not [e for e in uncertain if e["model"].startswith("local:")]
    assert len(uncertain) <= 6  # at most what was in flight at the kill
    # Every other remote line was submitted exactly once, by one run or the other.
    assert 20 - len(uncertain) <= len(fingerprints) <= 20
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"{30 - len(uncertain)} succeeded" in done.stdout.splitlines()[-1]


def _rows(n: int, model: str = "onerouter:bytedance/seedance") -> list[dict[str, Any]]:
    return [{"model": model, "prompt": f"kitten {i}"} for i in range(n)]


def _client(sb: Any, tmp_path: Path, **options: Any) -> AsyncClient:
    return AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=False,
        poll_interval=(0.05, 0.3),
        **options,
    )


async def test_more_paid_tasks_than_the_threshold_need_a_yes(sb: Any, tmp_path: Path) -> None:
    guard = genwidgets.CostGuard(prices={"onerouter:*": 0.5}, confirm_above=2)
    asked: list[str] = []
    async with _client(sb, tmp_path, cost_guard=guard) as c:
        with pytest.raises(
            genwidgets.ConfirmationRequired, match=r"3 paid tasks, estimated \$1.50"
        ):
            await abatch(None, _rows(3), client=c, progress=False)
        with pytest.raises(genwidgets.ConfirmationRequired):
            await abatch(
                None,
                _rows(3),
                client=c,
                progress=False,
                confirm=lambda p: bool(asked.append(p.describe())),
            )
        assert sb.stats()["submits"] == {}
        assert asked == ["3 paid tasks, estimated $1.50"]
        results = await abatch(None, _rows(3), client=c, progress=False, confirm=lambda p: True)
        assert [r["status"] for r in results] == ["succeeded"] * 3
        free = await abatch("local:image", [{"prompt": "a"}] * 5, client=c, progress=False)
        assert len(free) == 5  # local tasks never ask
    assert sb.stats()["submits"] == {"onerouter": 3}


async def test_a_batch_over_the_cap_fails_before_sending(sb: Any, tmp_path: Path) -> None:
    guard = genwidgets.CostGuard(max_paid_tasks=4)
    async with _client(sb, tmp_path, cost_guard=guard) as c:
        with pytest.raises(genwidgets.SpendCapExceeded, match="5 more paid"):
            await abatch(None, _rows(5), client=c, progress=False, yes=True)
    assert sb.stats()["submits"] == {}


async def test_batch_runs_under_the_budget_and_sums_the_cost(
    sb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb.set_limits("onerouter", requests_per_minute=300, max_in_flight=3)
    async with _client(sb, tmp_path, budgets={"onerouter": (300, 3)}) as c:
        results = await abatch(None, _rows(10), client=c, max_in_flight=10, yes=True)
    assert [r["status"] for r in results] == ["succeeded"] * 10
    assert sb.stats()["limited"]["onerouter"] == {"rate": 0, "in_flight": 0}
    assert summarize(results) == "10 succeeded; cost $0.1 (reported for 10 of 10 paid tasks)"
    assert capsys.readouterr().out == ""  # library code prints nothing: the CLI prints the summary


def test_summarize_counts_statuses_and_the_cost_of_paid_lines_only() -> None:
    entries = [
        {"model": "segmind:seedream-4.5", "status": "succeeded", "cost": 0.25},
        {"model": "segmind:seedream-4.5", "status": "succeeded", "cost": 0.5, "replayed": True},
        {"model": "netmind:Qwen/Qwen-Image", "status": "error", "error": "uncertain"},
        {"model": "local:image", "status": "succeeded", "cost": None},
    ]
    assert summarize(entries, "€") == (
        "1 error, 3 succeeded; cost €0.25 (reported for 1 of 2 paid tasks)"
    )
    assert summarize(entries[3:]) == "1 succeeded"  # nothing paid: no cost at all
    assert summarize([]) == "nothing run"


def test_cli_asks_for_yes_above_the_threshold(sb: Any, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(r) for r in _rows(3)) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    env.update({f"GENWIDGETS_{p.upper()}_URL": u for p, u in sb.urls.items()})
    env.update({f"{p.upper()}_API_KEY": k for p, k in KEYS.items()})
    env.update(
        GENWIDGETS_JOURNAL="off",
        GENWIDGETS_CACHE_DIR=str(tmp_path / "c"),
        GENWIDGETS_CONFIRM_ABOVE="2",
    )
    command = [sys.executable, "-m", "genwidgets", "batch", str(jobs), "--out", str(tmp_path)]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "3 paid tasks" in refused.stderr and "--yes" in refused.stderr
    assert sb.stats()["submits"] == {}
    done = subprocess.run([*command, "--yes"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("3 succeeded; cost $0.03")
