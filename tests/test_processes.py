"""The one "is this process alive" check that claims and submit notes share, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from genwidgets import _claims, _journal_notes
from genwidgets._processes import pid_alive


def _claim_owner_alive(pid: int) -> bool:
    return _claims._alive_here(_claims._HOST, pid)


def _note_writer_alive(pid: int) -> bool:
    note = {"host": _journal_notes._HOST, "pid": pid, "process": "another process"}
    return _journal_notes._alive(note)


def _state(pid: int) -> str:
    return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]


def test_claims_and_notes_ask_the_same_check_live_killed_and_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        assert _claim_owner_alive(child.pid) and _note_writer_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)  # killed, not reaped yet: a zombie
        ends = time.monotonic() + 5
        while _state(child.pid) != "Z" and time.monotonic() < ends:
            time.sleep(0.02)
        assert _state(child.pid) == "Z"
        assert not pid_alive(child.pid)  # a zombie holds nothing: its lines are taken over
        assert not _claim_owner_alive(child.pid) and not _note_writer_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
    assert not _claim_owner_alive(child.pid) and not _note_writer_alive(child.pid)


def test_this_process_and_other_users_processes() -> None:
    assert pid_alive(os.getpid())
    assert not _claim_owner_alive(os.getpid())  # our own pid's expired leases are ours to take
    assert _note_writer_alive(0)  # a note without a pid: cannot tell, so it stays someone's
    assert pid_alive(1)  # init: alive whether or not this process may signal it
