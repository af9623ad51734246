"""The loopback PostgreSQL the team tests run against: real, password-protected, restartable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import _server_missing

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_takes_its_password_and_only_it(postgres: Any) -> None:
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    wrong = postgres.url.replace(postgres.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)
    assert postgres.password not in repr(postgres)


def test_the_server_can_go_away_and_come_back(postgres: Any) -> None:
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(postgres.url, connect_timeout=2)
    finally:
        postgres.start()
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("select 2").fetchone() == (2,)


STARTS_ONE = """
from genwidgets.sandbox.postgres import LocalPostgres
pg = LocalPostgres().__enter__()
pid = (pg._data / "postmaster.pid").read_text().split()[0]
print(pid, pg.port, pg._root, flush=True)
import time
time.sleep(120)
"""


def test_it_ends_with_the_process_that_started_it_even_on_sigkill() -> None:
    """pg_ctl daemonizes the server: a test or benchmark killed with SIGKILL (no `__exit__`)
    must not leave it running, nor its folder behind."""
    from genwidgets.sandbox.postgres import PostgresUnavailable, find_binaries

    try:
        find_binaries()
    except PostgresUnavailable as exc:
        _server_missing("PostgreSQL", str(exc))
    owner = subprocess.Popen([sys.executable, "-c", STARTS_ONE], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert owner.stdout is not None
    pid, port, root = owner.stdout.readline().split()
    assert _running(int(pid)) and Path(root).is_dir()
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    ends = time.monotonic() + 5
    while time.monotonic() < ends and (_running(int(pid)) or Path(root).exists()):
        time.sleep(0.1)
    assert not _running(int(pid)), "the server outlived the process that started it"
    assert not Path(root).exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z")
