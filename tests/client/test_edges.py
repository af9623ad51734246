"""Edges found by trying bad input: hosts that cannot be reached, a stopped sender, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import KEYS

CLI = "import sys; from genwidgets.__main__ import main; sys.exit(main(sys.argv[1:]))"


def cli(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`genwidgets COMMAND...` in a fresh process with exactly `env`."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *command], env=env, capture_output=True, text=True, timeout=60
    )


def _closed_port() -> str:
    """An origin nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An origin whose accept queue is full: a connection attempt hangs until it times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):  # fill the queue (backlog 0 still takes one or two); later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    for filler in fillers:
        filler.close()
    server.close()


async def test_a_deadline_bounds_a_submit_that_cannot_connect(
    black_hole: str, tmp_path: Path
) -> None:
    async with AsyncClient(
        api_keys=KEYS, base_urls={"segmind": black_hole}, cache_dir=tmp_path, journal=False
    ) as client:
        started = time.monotonic()
        with pytest.raises(genwidgets.DeadlineExceeded, match="nothing was sent"):
            await client.submit("segmind:seedream-4.5", prompt="x", deadline=1.5)
        took = time.monotonic() - started
    assert took < 3.0, f"a 1.5 s deadline took {took:.1f} s"  # was 10 s a connect attempt


def test_cli_timeout_bounds_a_provider_that_refuses_connections(tmp_path: Path) -> None:
    env = {
        "GENWIDGETS_SEGMIND_URL": _closed_port(),
        "SEGMIND_API_KEY": "test-key-segmind",
        "GENWIDGETS_JOURNAL": str(tmp_path / "j.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
    }
    command = ["run", "segmind:seedream-4.5", "--prompt", "x", "--timeout", "2"]
    started = time.monotonic()
    done = cli(command, env)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: The deadline passed")
    assert took < 6.0, f"--timeout 2 took {took:.1f} s"  # six attempts with backoff: 16 s


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from genwidgets import AsyncClient

    urls, keys, cache, journal = json.loads(sys.argv[1])

    async def main():
        async with AsyncClient(api_keys=keys, base_urls=urls, cache_dir=cache, journal=journal,
                               retry_attempts=50) as client:
            print("submitting", flush=True)
            await client.submit("rixapi:kling-v3/text-to-video", prompt="never connected")

    asyncio.run(main())
    """
)


async def test_a_sender_stopped_while_it_could_not_connect_is_not_refused_later(
    sb: Any, tmp_path: Path
) -> None:
    journal = str(tmp_path / "journal.sqlite")
    args = json.dumps([{"rixapi": _closed_port()}, KEYS, str(tmp_path / "c1"), journal])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENWIDGETS_")}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, args], env=env, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None and worker.stdout.readline() == "submitting\n"
    time.sleep(1.0)  # refused at once, then again after 0.5 s: it is backing off now
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path / "c2",
        journal=journal,
        poll_interval=(0.05, 0.3),
    ) as client:  # nothing ever reached a server: the same request goes out, no questions
        task = await client.run("rixapi:kling-v3/text-to-video", prompt="never connected")
    assert task.status is Status.SUCCEEDED


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    env = {"GENWIDGETS_JOURNAL": "off", "PATH": "/usr/bin:/bin"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\nnot json\n[1]\n')
    cases = {
        "missing.jsonl": ["batch", str(tmp_path / "missing.jsonl")],
        "line 2: not JSON (Expecting value); line 3: expected a JSON object": [
            "batch",
            str(bad),
            "--out",
            str(tmp_path / "out"),
        ],
        "required: model (see genwidgets run --help)": ["run"],
        "No API key": ["run", "segmind:seedream-4.5", "--prompt", "x"],
        "Unknown provider": ["run", "nosuch:model", "--prompt", "x"],
    }
    for expected, command in cases.items():
        done = cli(command, env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert expected in done.stderr
