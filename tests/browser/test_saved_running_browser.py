"""A notebook saved while its cards still run, reopened after its kernel is gone, in JupyterLab.

The user runs `show()` and `t = %gen` cards, saves (Ctrl+S) while all run, and closes the tab;
one task ends later in that kernel (journalled), then the kernel is shut down (the sessions API,
as the Running panel does: no second save). The live cards are untouched by the save. Reopened,
each output is the card's static form, its last known state (prompt, model, running, "Saved while
running" and how to follow it again), never "Error displaying widget: model not found", which is
what JupyterLab shows for a saved widget view whose model state is not in the file. Re-running
the cell of the task that ended shows its result, replayed from the journal. Screenshots go to
the artifacts folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    error_outputs,
    jupyter_server,
    open_notebook_lab,
    run_all_lab,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))
NAME = "running.ipynb"
PROMPTS = ("a tulip done after the save", "a lighthouse saved mid-run")
CELLS = [  # the local provider runs two tasks at a time
    "import genwidgets\n%load_ext genwidgets",
    f"tulip = genwidgets.show('local:image', prompt={PROMPTS[0]!r}, seed=6, duration=12)",
    f"lh = %gen local:image {PROMPTS[1]} --seed 5 --duration 600",
]
LIVE = len(CELLS) - 1
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(90_000)
    return page


def saved_mimes(path: Path) -> list[list[str]]:
    cells = json.loads(path.read_text())["cells"]
    return [sorted(o.get("data", {})) for c in cells for o in c.get("outputs", [])]


def journal_status(journal: Path, prompt: str) -> str | None:
    if not journal.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT status FROM tasks WHERE params LIKE ?", (f"%{prompt}%",)
        ).fetchone()
    return row[0] if row else None


def test_a_card_saved_while_running_reopens_as_its_static_form(
    tmp_path: Path, browser: Any
) -> None:
    env = {
        "GENWIDGETS_JOURNAL": str(tmp_path / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(tmp_path / "cache"),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyter_server(tmp_path / "lab", "lab", env) as lab:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
        nbformat.write(nb, lab.root / NAME)

        page = new_page(browser)
        panel = open_notebook_lab(page, lab, NAME)
        run_all_lab(page, panel)
        live = f"{panel} .genwidgets-card .genwidgets-badge[data-state='running']"
        page.wait_for_function(f"() => document.querySelectorAll(\"{live}\").length === {LIVE}")
        page.keyboard.press("Control+s")
        page.wait_for_function(
            "() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty')",
            timeout=30_000,
        )
        # The save leaves the live cards alone: still widgets, ticking, with their Cancel.
        elapsed = page.locator(f"{panel} .genwidgets-card .genwidgets-elapsed").first
        before = elapsed.inner_text()
        page.wait_for_function(
            f"t => document.querySelector(\"{panel} .genwidgets-card .genwidgets-elapsed\")"
            ".textContent !== t",
            arg=before,
            timeout=15_000,
        )
        assert page.locator(f"{panel} .genwidgets-card").count() == LIVE
        assert page.locator(f"{panel} .genwidgets-card .genwidgets-cancel").count() >= LIVE
        assert error_outputs(page, panel) == []
        page.screenshot(path=str(ARTIFACTS / "saved-running-live.png"))
        mimes = saved_mimes(lab.root / NAME)

        page.close()  # the tab is closed, its kernel runs on: the tulip ends and is journalled
        journal = tmp_path / "journal.sqlite"
        deadline = time.monotonic() + 90
        while journal_status(journal, PROMPTS[0]) != "succeeded":
            assert time.monotonic() < deadline, journal_status(journal, PROMPTS[0])
            time.sleep(0.5)
        time.sleep(1)  # its download
        lab.delete_sessions()  # then the kernel is shut down; the file is not saved again
        time.sleep(1)

        reopened = new_page(browser)
        panel = open_notebook_lab(reopened, lab, NAME)
        static = f"{panel} .genwidgets-static[data-state='running']"
        outputs = f"{panel} .jp-OutputArea-output"
        reopened.wait_for_function(  # both outputs rendered, as static cards or as errors
            f"() => [...document.querySelectorAll(\"{outputs}\")].filter(e => "
            "e.querySelector('.genwidgets-static') || /Error displaying/.test(e.textContent))"
            f".length === {LIVE}"
        )
        reopened.wait_for_timeout(3000)  # a widget manager that would fail says so within this
        reopened.screenshot(path=str(ARTIFACTS / "saved-running-reopened.png"))
        text = reopened.locator(panel).inner_text()
        assert "Error displaying widget" not in text and "Loading widget" not in text
        assert "model not found" not in text
        assert reopened.locator(static).count() == LIVE
        for prompt in PROMPTS:
            assert prompt in text
        assert text.count("local:image") >= 3  # in the sources, and each card's model
        assert text.count("Saved while running") == LIVE
        assert "genwidgets.resume()" in text
        assert reopened.locator(f"{panel} .genwidgets-card").count() == 0

        # Re-run: the tulip, which ended after the save, is replayed from the journal.
        for index in (0, 1):
            reopened.locator(f"{panel} .jp-CodeCell").nth(index).locator(".jp-InputPrompt").click()
            reopened.keyboard.press("Escape")
            reopened.keyboard.press("Control+Enter")
        tulip = reopened.locator(f"{panel} .jp-CodeCell").nth(1)
        tulip.locator(".genwidgets-static[data-state='succeeded']").wait_for(timeout=60_000)
        image = tulip.locator("img.genwidgets-image").first
        reopened.wait_for_function("e => e.naturalWidth > 0", arg=image.element_handle())
        assert "replayed from the journal" in tulip.text_content()
        reopened.screenshot(path=str(ARTIFACTS / "saved-running-rerun.png"))
        reopened.close()
        assert mimes == [["text/html", "text/plain"]] * LIVE, mimes  # no widget view saved
