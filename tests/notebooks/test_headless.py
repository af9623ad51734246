"""Headless runs save the truth: a notebook of `%gen`/`show()` cells and a last cell that only
sleeps, run by nbclient (what `jupyter nbconvert --execute` uses), papermill and nbval.

The cards finish while later cells run. Their `update_display` comes from a background task; it
must reach the runner as a message of the cell running now (nbclient, papermill and nbval drop
the others), so the saved notebook holds every finished card with its media, and the card still
running is saved as such, with its task id and how to resume it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "<img src=x onerror=alert(1)>"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "import genwidgets\n%load_ext genwidgets",
    f"rose = genwidgets.show('local:image', prompt={HOSTILE!r}, seed=2)",
    "hello = genwidgets.show('local:audio', prompt='hello there', seed=1)",
    "%gen local:image a lighthouse in a storm --seed 5",
    "still = genwidgets.show('local:video', prompt='a very long video', seconds=1, duration=600)",
    "import asyncio\nawait asyncio.sleep(5)",
]


def notebook() -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    return nb


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the kernels see: this checkout first, a private cache and journal, no replay."""
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "GENWIDGETS_LOCAL_DURATION": "0.5",
        "GENWIDGETS_CACHE_DIR": str(tmp_path / "cache"),
        "GENWIDGETS_JOURNAL": str(tmp_path / "journal.sqlite"),
        "GENWIDGETS_REPLAY": "off",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def displayed(cell: Any) -> dict[str, Any]:
    (output,) = [o for o in cell.outputs if o["output_type"] == "display_data"]
    return output["data"]


def check_saved(nb: Any, tmp_path: Path) -> None:
    """Every finished card is saved static with its media; the live one with its task id."""
    for index, media in ((1, "data:image/png;base64,"), (2, "data:audio/"), (3, "data:image/")):
        data = displayed(nb.cells[index])
        assert WIDGET_VIEW not in data, f"cell {index} keeps its widget view"
        html = data["text/html"]
        assert 'data-state="succeeded"' in html, (index, data["text/plain"])
        assert media in html and "Details" in html and "total" in html
        assert data["text/plain"].startswith("[succeeded] local:")
    assert HOSTILE not in displayed(nb.cells[1])["text/html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in displayed(nb.cells[1])["text/html"]
    still = displayed(nb.cells[4])
    assert any(f'data-state="{s}"' in still["text/html"] for s in ("queued", "running"))
    assert "local-" in still["text/plain"] and "genwidgets.resume()" in still["text/plain"]
    assert "genwidgets.resume()" in still["text/html"]
    saved = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert str(tmp_path) not in saved and str(Path.home()) not in saved  # no absolute paths


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_nbclient_and_nbconvert_save_the_finished_cards(
    tmp_path: Path, kernel_env: dict[str, str]
) -> None:
    nbclient = pytest.importorskip("nbclient")
    from nbconvert import HTMLExporter

    nb = notebook()
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    check_saved(nb, tmp_path)
    page, _ = HTMLExporter().from_notebook_node(nb)
    assert page.count('data-state="succeeded"') >= 3 and "data:audio/" in page
    assert HOSTILE not in page


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_papermill_saves_the_finished_cards(tmp_path: Path, kernel_env: dict[str, str]) -> None:
    papermill = pytest.importorskip("papermill")
    source, target = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook(), source)
    papermill.execute_notebook(
        str(source), str(target), kernel_name="python3", cwd=str(tmp_path), progress_bar=False
    )
    check_saved(nbformat.read(target, as_version=4), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_nbval_receives_the_final_cards_in_the_running_cell(
    tmp_path: Path, kernel_env: dict[str, str]
) -> None:
    """nbval saves nothing and ignores `update_display_data` (it prints "unhandled iopub msg"
    for each one that belongs to the running cell, and skips the others silently). So: the run
    passes, and the updates of the cards that finished during later cells arrived as messages of
    those cells, which is what a runner that saves would keep."""
    source = tmp_path / "headless.ipynb"
    nbformat.write(notebook(), source)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-s", "-q", "-p", "no:cacheprovider",
         str(source)],
        cwd=tmp_path,
        env={**os.environ, **kernel_env},
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 passed" in done.stdout
    received = done.stdout.count("unhandled iopub msg: update_display_data")
    assert received >= 3, done.stdout[-3000:]
