"""Whether a process on this machine is still running: the one check behind every take-over.

Claims (`_claims`) and submit notes (`_journal_notes`, `_journal_leases`) both hand a dead
process's work to another only when that process is gone; they decide *which* pid to ask (same
machine, not this process), this module answers for the pid.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine. A pid this process may not signal belongs to
    another user's live process (alive). A zombie (killed, not yet reaped by its parent) is dead:
    it runs nothing, and its work must not wait for a parent that may never reap it."""
    if pid <= 0:
        raise ValueError(f"not a process id: {pid}")  # 0 and -1 would signal whole groups
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it ended just now: the signal said it was there
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]  # the state follows "(command)"
