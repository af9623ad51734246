"""Deadlines cancel the remote job; `wait(timeout)` only stops waiting; interrupts cancel."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from genwidgets.journal import Journal

KEYS = {p: f"test-key-{p}" for p in ("onerouter", "rixapi", "segmind", "netmind", "oxen")}


def make(sb: Any, tmp_path: Path, **kw: Any) -> AsyncClient:
    return AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=tmp_path / "journal.sqlite",
        poll_interval=(0.05, 0.3),
        **kw,
    )


async def test_deadline_cancels_a_local_task_and_records_why(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path) as client:
        started = time.monotonic()
        with pytest.raises(genwidgets.DeadlineExceeded) as info:
            await client.run("local:video", prompt="too long", duration=30, timeout=0.5)
        assert time.monotonic() - started < 5
        assert isinstance(info.value, TimeoutError) and info.value.task_id
    recorded = Journal(tmp_path / "journal.sqlite").get("local", info.value.task_id)
    assert recorded is not None and recorded.status is Status.CANCELLED
    assert recorded.error == "deadline of 0.5 s passed"


async def test_deadline_cancels_at_oxen_and_the_server_sees_it(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path) as client:
        with pytest.raises(genwidgets.DeadlineExceeded, match="cancelled"):
            await client.run("oxen:flux-image", prompt="slow one [slow]", timeout=0.3)
    assert sb.stats()["cancels"] == 1


async def test_deadline_where_the_provider_cannot_cancel_keeps_the_id(
    sb: Any, tmp_path: Path
) -> None:
    async with make(sb, tmp_path) as client:
        task = await client.submit("segmind:seedream-4.5", prompt="slow [slow]", deadline=0.3)
        with pytest.raises(genwidgets.DeadlineExceeded, match="cannot cancel") as info:
            await client.wait(task)
        assert info.value.task_id == task.id
        later = await client.wait(task, timeout=30)  # the id still fetches the result later
        assert later.status is Status.SUCCEEDED
    assert sb.stats()["cancels"] == 0


async def test_wait_timeout_leaves_the_task_running(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path) as client:
        task = await client.submit("oxen:flux-image", prompt="patience [slow]")
        with pytest.raises(genwidgets.WaitTimeout):
            await client.wait(task, timeout=0.2)
        assert (await client.wait(task, timeout=30)).status is Status.SUCCEEDED
    assert sb.stats()["cancels"] == 0


async def test_cancel_all(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path) as client:
        local = [await client.submit("local:video", prompt=f"v{i}", duration=30) for i in range(2)]
        oxen = await client.submit("oxen:flux-image", prompt="o [slow]")
        segmind = await client.submit("segmind:seedream-4.5", prompt="s [slow]")
        stopped = await client.cancel_all()
        assert {t.id for t in stopped} == {local[0].id, local[1].id, oxen.id}
        assert all(t.status is Status.CANCELLED for t in stopped)
        assert [t.id for t in client.live_tasks()] == [segmind.id]


async def test_interrupted_await_run_cancels_the_job(sb: Any, tmp_path: Path) -> None:
    async with make(sb, tmp_path) as client:
        job = asyncio.ensure_future(client.run("oxen:flux-image", prompt="stop me [slow]"))
        await asyncio.sleep(0.5)
        job.cancel()  # what Jupyter's Stop does to a top-level `await` cell
        with pytest.raises(asyncio.CancelledError):
            await job
    assert sb.stats()["cancels"] == 1


CLI = textwrap.dedent(
    """
    import sys
    from genwidgets.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli_env(sb: Any, tmp_path: Path) -> dict[str, str]:
    """A clean environment for the CLI, pointed at the sandbox's Oxen."""
    return {
        "GENWIDGETS_OXEN_URL": sb.urls["oxen"],
        "OXEN_API_KEY": "test-key-oxen",
        "GENWIDGETS_JOURNAL": str(tmp_path / "j.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
    }


def test_cli_sigint_cancels_the_task(sb: Any, tmp_path: Path) -> None:
    env = _cli_env(sb, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "run", "oxen:flux-image", "--prompt", "ctrl-c me [slow]"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("submitted")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "cancelling" in err
    assert sb.stats()["cancels"] == 1


def test_cli_timeout_is_the_task_deadline(sb: Any, tmp_path: Path) -> None:
    env = _cli_env(sb, tmp_path)
    command = ["run", "oxen:flux-image", "--prompt", "slow [slow]", "--timeout", "0.5"]
    done = subprocess.run(
        [sys.executable, "-c", CLI, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "deadline of 0.5 s passed" in done.stderr
    assert sb.stats()["cancels"] == 1
