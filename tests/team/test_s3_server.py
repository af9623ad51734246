"""The loopback S3 server the store's tests and benchmarks run against (`LocalS3`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTS_ONE = "from genwidgets.sandbox.s3 import LocalS3\ns = LocalS3()\ns.start()\n" \
    "print(s._process.pid, flush=True)\nimport time\ntime.sleep(120)\n"  # fmt: skip


def test_it_counts_requests_and_hides_its_secret(s3: Any) -> None:
    s3.requests(reset=True)
    s3.create_bucket("counted")
    assert s3.requests() == {"PUT": 1}
    assert s3.secret not in repr(s3) and s3.endpoint_url in repr(s3)


def test_it_ends_with_the_process_that_started_it_even_on_sigkill(s3: Any) -> None:
    """A benchmark killed by tests/test_benchmarks.py (SIGKILL, no `stop()`) leaves no server."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    owner = subprocess.Popen([sys.executable, "-c", STARTS_ONE], stdout=subprocess.PIPE, env=env,
                             text=True)  # fmt: skip
    assert owner.stdout is not None
    server = int(owner.stdout.readline())
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    ends = time.monotonic() + 10
    while time.monotonic() < ends and _alive(server):
        time.sleep(0.1)
    assert not _alive(server)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # a zombie has ended


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
