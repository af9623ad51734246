"""One account's budget shared by processes through the real PostgreSQL (`_team_budget`).

Workers are real processes (`budget_worker.py`) on one OneRouter key, against a sandbox that
enforces the account's limits the way OneRouter does; the budget rows live in the session's
loopback PostgreSQL. Each test uses a key of its own, so its account's rows are its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, Status
from genwidgets.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("budget_worker.py")
DROP = ("GENWIDGETS_", "ONEROUTER_")


@pytest.fixture(scope="module")
def windowed() -> Iterator[Sandbox]:
    """A sandbox whose "per minute" window is 5 s, so a few seconds show what a minute would:
    `set_limits("onerouter", 60, n)` is 720 requests/min, more than a 600/min budget sends in any
    5 s (58 at most) and less than three such budgets send together."""
    with Sandbox(task_seconds=0.3, queue_seconds=0.1, _limit_window=5.0) as sb:
        yield sb


def worker_env(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["GENWIDGETS_BUDGETS_BACKEND"] = url or "local"
    env.update(extra)
    return env


def start(config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_workers(
    sb: Sandbox, tmp: Path, url: str | None, mode: str, tasks: int, budget: Any
) -> list[dict[str, Any]]:
    """Three workers of `mode` on one new key, started together; their results."""
    key, start_at = f"team-{uuid.uuid4().hex[:8]}", time.time() + 3.0  # after their imports
    procs = [
        start(
            {"mode": mode, "base": sb.urls["onerouter"], "key": key, "tasks": tasks,
             "budget": budget, "cache": str(tmp / f"c{i}"), "tag": f"w{i}", "start_at": start_at},
            worker_env(url),
        )
        for i in range(3)
    ]
    return [finish(p) for p in procs]


def limited(sb: Sandbox) -> dict[str, int]:
    return dict(sb.stats()["limited"].get("onerouter", {}))


@pytest.mark.parametrize(
    ("mode", "server", "budget", "reason"),
    [
        ("run", (None, 4), (None, 4), "in_flight"),  # 10 tasks each, 4 in flight in all
        ("gets", (60, None), (600, None), "rate"),  # 30 status calls each, 58 per 5 s in all
    ],
)
def test_three_processes_share_the_account(
    postgres: Any, windowed: Sandbox, tmp_path: Path, mode: str, server: Any, budget: Any,
    reason: str,
) -> None:
    """Each worker's budget is the whole account's: sharing it, three workers draw no 429 from
    a server enforcing it; with per-process budgets (the control, same run) they draw some."""
    windowed.set_limits("onerouter", *server)
    seen: dict[str, dict[str, int]] = {}
    try:
        for name, url in (("team", postgres.url), ("per process", None)):
            windowed.reset()
            done = run_workers(windowed, tmp_path / name, url, mode, 10 if mode == "run" else 30,
                               budget)
            if mode == "run":
                assert all(r["statuses"] == {"succeeded": 10} for r in done), done
            seen[name] = limited(windowed)
            if name == "team":
                assert all(r["budget"]["backend"] == "postgresql" for r in done)
    finally:
        windowed.set_limits()
    assert seen["team"] == {"rate": 0, "in_flight": 0}, seen
    assert seen["per process"][reason] > 0, seen  # the server does enforce what they share


def test_a_killed_process_gives_its_slots_back_when_its_lease_expires(
    postgres: Any, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"kill-{uuid.uuid4().hex[:8]}"
    holder = start(
        {"mode": "hold", "base": sb.urls["onerouter"], "key": key, "tasks": 2,
         "budget": [None, 2], "cache": str(tmp_path / "held")},
        worker_env(postgres.url, GENWIDGETS_BUDGETS_LEASE="2"),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("HELD")
    holder.send_signal(signal.SIGKILL)  # no exit handler runs: only the lease frees its slots
    holder.wait()
    killed_at = time.monotonic()
    monkeypatch.setenv("GENWIDGETS_BUDGETS_BACKEND", postgres.url)
    monkeypatch.delenv("GENWIDGETS_BUDGETS")

    async def after() -> tuple[float, list[str]]:
        notices: list[str] = []
        async with AsyncClient(
            api_keys={"onerouter": key}, base_urls=sb.urls, journal=False,
            cache_dir=tmp_path / "c", budgets={"onerouter": (None, 2)},
        ) as client:  # fmt: skip
            task = await asyncio.wait_for(
                client.submit("onerouter:flux-schnell", prompt="after", on_wait=notices.append),
                20,
            )
            took = time.monotonic() - killed_at
            assert (await client.wait(task)).status is Status.SUCCEEDED
        return took, notices

    took, notices = asyncio.run(after())
    assert notices and "2 of 2 onerouter tasks in flight" in notices[0]
    assert 0.5 < took < 6.0  # the lease (2 s, renewed every 0.67 s) ran out, then a slot came


def test_a_429_in_one_process_slows_the_others(
    postgres: Any, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose budget allows 4 in flight meets a server that allows 2: its 429 halves
    the shared rate and shrinks the shared cap, as this process then sees."""
    key = f"shrink-{uuid.uuid4().hex[:8]}"
    sb.set_limits("onerouter", max_in_flight=2)
    done = finish(
        start(
            {"mode": "run", "base": sb.urls["onerouter"], "key": key, "tasks": 4,
             "budget": [600, 4], "cache": str(tmp_path / "w")},
            worker_env(postgres.url),
        )
    )
    assert done["statuses"] == {"succeeded": 4}
    assert limited(sb)["in_flight"] >= 1
    monkeypatch.setenv("GENWIDGETS_BUDGETS_BACKEND", postgres.url)
    monkeypatch.delenv("GENWIDGETS_BUDGETS")

    async def here() -> dict[str, Any]:
        async with AsyncClient(
            api_keys={"onerouter": key}, base_urls=sb.urls, journal=False,
            cache_dir=tmp_path / "c", budgets={"onerouter": (600, 4)},
        ) as client:  # fmt: skip
            budget = client.budget("onerouter")
            assert budget is not None
            await budget.spend("poll")
            return budget.state()

    state = asyncio.run(here())
    assert state["team_limited"] >= 1
    assert state["requests_per_minute"] <= 300  # halved by the other process's 429
    assert state["cap"] is not None and state["cap"] < 4
