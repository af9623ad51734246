"""Every notebook executes in a real kernel under nbval.

Each runs in its own pytest process so its environment is its own: 04 replays from the journal
committed beside it with `GENWIDGETS_REPLAY=require` (zero provider calls, byte-identical
checked outputs); the others run live on the local provider and the sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def snapshot() -> dict[str, bytes]:
    """Every file under notebooks/ but the journal's SQLite files (the journal's own tests own
    those): running a notebook must leave the .ipynb files and the cache as committed."""
    return {
        str(path.relative_to(NOTEBOOKS)): path.read_bytes()
        for path in sorted(NOTEBOOKS.rglob("*"))
        if path.is_file()
        and not any(
            part.startswith("journal.sqlite")  # the database, its -wal/-shm, its -submits/ notes
            or part in ("__pycache__", ".ipynb_checkpoints")
            for part in path.relative_to(NOTEBOOKS).parts
        )
    }


@pytest.mark.parametrize(
    ("notebook", "replay"),
    [
        ("01-quickstart.ipynb", "auto"),
        ("02-prompt-exploration.ipynb", "auto"),
        ("03-providers.ipynb", "auto"),
        ("04-reproducible-research.ipynb", "require"),
    ],
)
def test_notebook_runs_under_nbval(notebook: str, replay: str, tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY") and not key.startswith("GENWIDGETS_")
    }
    env.update(
        GENWIDGETS_REPLAY=replay,
        GENWIDGETS_JOURNAL=str(tmp_path / "journal.sqlite"),
        GENWIDGETS_CACHE_DIR=str(tmp_path / "cache"),
        GENWIDGETS_LOCAL_DURATION="0.3",
    )
    before = snapshot()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-cell-timeout=120",
            str(NOTEBOOKS / notebook),
        ],
        cwd=NOTEBOOKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    after = snapshot()
    names = before.keys() | after.keys()
    changed = sorted(name for name in names if before.get(name) != after.get(name))
    assert changed == [], f"running {notebook} changed {changed}"
