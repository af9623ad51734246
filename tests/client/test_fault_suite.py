"""The fault suite: many tasks across providers under injected faults, over real HTTP.

Every task must end terminal in the journal, every succeeded output must be on disk with the
recorded sha256, and no submit may reach the server twice, also when the client is killed
mid-run and a new process resumes from the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, GenError, Status
from genwidgets.journal import Journal
from tests.conftest import KEYS

MODELS = [
    "onerouter:acme/text-to-image",
    "rixapi:flux-pro",
    "segmind:seedream-4.5",
    "netmind:Qwen/Qwen-Image",
    "oxen:flux-image",
]
N_TASKS = int(os.environ.get("GENWIDGETS_FAULT_TASKS", "1000"))
FAULTS = dict(
    error_rate=0.2,  # transient 5xx on polls
    rate_limit_rate=0.05,  # 429s, half of them without Retry-After (see retry_after below)
    retry_after=0.2,
    reset_rate=0.03,  # connections dropped mid-response
    malformed_rate=0.03,  # truncated JSON
    submit_rate_limit_rate=0.05,  # 429 on submit: rejected, safe to resubmit
    one_shot_urls=True,  # result URLs die after their first fetch
    seed=2026,
)


def prompt_for(i: int) -> str:
    # Every 25th task fails at the provider, every 40th expires mid-poll.
    if i % 25 == 0:
        return f"task {i} [fail]"
    if i % 40 == 1:
        return f"task {i} [expire]"
    return f"task {i}"


def check_journal(journal: Journal, n: int) -> dict[str, int]:
    tasks = journal.tasks()
    assert len(tasks) == n, f"{len(tasks)} tasks in the journal, expected {n}"
    counts: dict[str, int] = {}
    for task in tasks:
        assert task.done, task
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
        if task.status is Status.SUCCEEDED:
            assert task.outputs, task
            for output in task.outputs:
                assert output.path is not None and output.path.exists(), task
                digest = hashlib.sha256(output.path.read_bytes()).hexdigest()
                assert digest == output.sha256, task
    return counts


async def follow(client: AsyncClient, task: Any) -> None:
    task = await client.wait(task, timeout=300)
    if task.status is Status.SUCCEEDED:
        with contextlib.suppress(GenError):  # a failed download stays visible in the journal
            await client.download(task)


@pytest.mark.slow
async def test_many_tasks_under_faults_lose_nothing(sb: Any, tmp_path: Path) -> None:
    sb.set_faults(**FAULTS)
    journal = Journal(tmp_path / "journal.sqlite")
    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        poll_interval=(0.2, 1.0),
        journal=journal,
    ) as client:
        tasks = []
        for i in range(N_TASKS):
            tasks.append(await client.submit(MODELS[i % len(MODELS)], prompt=prompt_for(i)))
        await asyncio.gather(*(follow(client, t) for t in tasks))
    counts = check_journal(journal, N_TASKS)
    stats = sb.stats()
    assert all(n == 1 for n in stats["submit_fingerprints"].values()), "a submit was sent twice"
    assert len(stats["submit_fingerprints"]) == N_TASKS
    assert counts.get("failed", 0) == len([i for i in range(N_TASKS) if i % 25 == 0])
    assert counts.get("succeeded", 0) > N_TASKS * 0.85
    faults = {
        "429": stats["statuses"].get("429", 0),
        "5xx": sum(v for k, v in stats["statuses"].items() if k.startswith("5")),
        "resets": stats["resets"],
        "malformed": stats["malformed"],
    }
    assert sum(faults.values()) > N_TASKS * 0.1, faults
    lost = N_TASKS - sum(counts.values())
    report = {"tasks": N_TASKS, "outcomes": counts, "faults_injected": faults, "lost": lost}
    print("FAULT SUITE", json.dumps(report, sort_keys=True))


WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from genwidgets import AsyncClient
    from genwidgets.journal import Journal

    urls, keys, cache, journal_path, n, mode = json.loads(sys.argv[1])

    async def main():
        journal = Journal(journal_path)
        async with AsyncClient(api_keys=keys, base_urls=urls, cache_dir=cache,
                               poll_interval=(0.2, 1.0), journal=journal) as client:
            if mode == "submit":
                tasks = [await client.submit(
                    ["segmind:seedream-4.5", "oxen:flux-image", "netmind:Qwen/Qwen-Image"][i % 3],
                    prompt=f"resume me {i} [slow]") for i in range(n)]
                print("SUBMITTED", flush=True)
                await asyncio.sleep(3600)  # killed while the tasks run
            else:
                tasks = client.resume()
                print("RESUMING", len(tasks), flush=True)
                async def follow(task):
                    task = await client.wait(task, timeout=300)
                    if task.status.value == "succeeded":
                        await client.download(task)
                await asyncio.gather(*(follow(t) for t in tasks))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_kill_and_resume_completes_everything(sb: Any, tmp_path: Path) -> None:
    sb.set_faults(error_rate=0.1, seed=7)
    n = 60
    args = [dict(sb.urls), KEYS, str(tmp_path / "cache"), str(tmp_path / "j.sqlite"), n]
    env = {**os.environ, "GENWIDGETS_REPLAY": "auto"}
    first = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps([*args, "submit"])],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert first.stdout is not None
    assert first.stdout.readline().strip() == b"SUBMITTED"
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    unfinished = Journal(tmp_path / "j.sqlite").unfinished()
    assert unfinished, "the kill came too late to test anything"
    second = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([*args, "resume"])],
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    counts = check_journal(Journal(tmp_path / "j.sqlite"), n)
    assert counts == {"succeeded": n}
    assert all(c == 1 for c in sb.stats()["submit_fingerprints"].values())
