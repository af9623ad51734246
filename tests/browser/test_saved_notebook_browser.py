"""Saved notebooks show their results, in a real browser.

A user-written notebook runs in JupyterLab: `t = genwidgets.show(...)` and `lh = %gen ...` cards
update by themselves, a later cell reads `t.status` and `lh.status` as succeeded, and a bare
`%gen` line shows its card once (no second card, no stale `Out[n]`). The notebook is saved, its
kernel shut down, and it is reopened: in JupyterLab (the same server: a trusted notebook, where the
widget view would win over the static HTML) and in Notebook 7 on a fresh server (an untrusted
notebook: JupyterLab's sanitizer filters the HTML). Both show every image, audio and video, and
never "Error displaying widget". Screenshots of the cards go to the artifacts folder.
"""

from __future__ import annotations

import os
import shutil
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
    wait_all_executed_lab,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))
NAME = "saved.ipynb"
CELLS = [
    "import genwidgets\n%load_ext genwidgets",
    "t = genwidgets.show('local:image', prompt='a red rose on a wooden table', seed=3)",
    "hello = genwidgets.show('local:audio', prompt='Hello from genwidgets', seed=1)",
    "waves = genwidgets.show('local:video', prompt='waves at dusk', seed=2, seconds=2)",
    "lh = %gen local:image a lighthouse in a storm --seed 5 --aspect_ratio 16:9",
    "%gen local:image a quiet harbour at night --seed 8",
    "long = genwidgets.show('local:video', prompt='a very long video', seconds=2, duration=600)",
    "f'{t.status} {lh.status} {lh.outputs[0].path.suffix if lh.outputs else None}'",
]
FINISHED = 5  # cards that succeed; `long` runs until cancelled


def write_notebook(folder: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, folder / NAME)


def server_env(workdir: Path) -> dict[str, str]:
    return {
        "GENWIDGETS_LOCAL_DURATION": "0.5",
        "GENWIDGETS_JOURNAL": str(workdir / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(workdir / "cache"),
        "GENWIDGETS_REPLAY": "off",
    }


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(90_000)
    return page


def count_state(page: Any, scope: str, state: str) -> int:
    """Badges showing `state` (by their text: the sanitizer of an untrusted notebook drops
    `data-` attributes)."""
    return page.eval_on_selector_all(
        f"{scope} .genwidgets-badge", "(es, s) => es.filter(e => e.textContent === s).length", state
    )


def check_reopened(page: Any, scope: str, shots: str) -> None:
    """Every result is on screen from the saved outputs alone."""
    page.wait_for_function(
        f"() => document.querySelectorAll('{scope} .genwidgets-static').length >= {FINISHED + 1}",
        timeout=60_000,
    )
    page.wait_for_timeout(3000)  # a widget manager that would fail says so within this time
    text = page.locator(scope).inner_text()
    assert "Error displaying widget" not in text and "Loading widget" not in text
    assert count_state(page, scope, "succeeded") == FINISHED
    assert count_state(page, scope, "cancelled") == 1
    images = page.eval_on_selector_all(
        f"{scope} .genwidgets-static img.genwidgets-image",
        "es => es.map(e => [e.naturalWidth, e.getBoundingClientRect().width])",
    )
    assert len(images) == 3, images
    for natural, shown in images:  # at natural size up to 512 px, never stretched
        assert natural > 0 and shown <= min(natural, 512) + 1, images
    for tag in ("audio", "video"):
        page.wait_for_function(
            f"() => {{ const m = document.querySelector('{scope} .genwidgets-static {tag}');"
            " return m && m.readyState >= 1 && m.duration > 0; }",
            timeout=30_000,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cards = page.locator(f"{scope} .genwidgets-static")
    for index in range(cards.count()):
        cards.nth(index).scroll_into_view_if_needed()
        cards.nth(index).screenshot(path=str(ARTIFACTS / f"{shots}-card{index}.png"))


def test_a_saved_notebook_shows_every_result_when_reopened(
    tmp_path: Path, browser: Any
) -> None:
    lab_dir = tmp_path / "lab"
    with jupyter_server(lab_dir, "lab", server_env(lab_dir)) as lab:
        write_notebook(lab.root)
        page = new_page(browser)
        panel = open_notebook_lab(page, lab, NAME)
        run_all_lab(page, panel)
        wait_all_executed_lab(page, panel)
        assert error_outputs(page, panel) == []
        page.wait_for_function(
            f"() => document.querySelectorAll('{panel} .genwidgets-badge[data-state=succeeded]')"
            f".length >= {FINISHED}",
            timeout=120_000,
        )
        # The card is the live handle: run the last cell again, it reads the current status.
        last = page.locator(f"{panel} .jp-CodeCell").last
        last.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        last.locator(".jp-OutputArea-output", has_text="succeeded succeeded .png").wait_for(
            timeout=30_000
        )
        bare = page.locator(f"{panel} .jp-CodeCell").nth(5).locator(".jp-OutputArea-output")
        assert bare.count() == 1, bare.all_inner_texts()  # the card, once; no Out[n]
        # A live card: running, with its Cancel; the screenshot shows the card mid-run.
        running = page.locator(f"{panel} .genwidgets-card", has_text="a very long video").first
        running.locator(".genwidgets-badge[data-state='running']").wait_for(timeout=30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        running.screenshot(path=str(ARTIFACTS / "card-running.png"))
        running.locator("button.genwidgets-cancel, .genwidgets-cancel button").first.click()
        page.locator(f"{panel} .genwidgets-badge[data-state='cancelled']").wait_for(
            timeout=30_000
        )
        page.wait_for_function(  # every output is the static card now
            f"() => document.querySelectorAll('{panel} .genwidgets-card').length === 0"
        )
        page.keyboard.press("Control+s")
        page.wait_for_function(
            "() => !document.querySelector('#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty')",
            timeout=30_000,
        )
        time.sleep(1)
        lab.delete_sessions()  # the kernel is shut down
        page.close()

        reopened = new_page(browser)
        panel = open_notebook_lab(reopened, lab, NAME)
        check_reopened(reopened, panel, "reopened-lab")
        reopened.close()
        saved = lab.root / NAME

    # Someone else's copy: a fresh Notebook 7 server, where the notebook is not trusted.
    nb7_dir = tmp_path / "nb7"
    with jupyter_server(nb7_dir, "notebook", server_env(nb7_dir)) as server:
        shutil.copy(saved, server.root / NAME)
        page = new_page(browser)
        page.goto(f"{server.base}/notebooks/{NAME}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        check_reopened(page, ".jp-Notebook", "reopened-notebook7")
        assert page.locator(".jp-Notebook .genwidgets-static script").count() == 0
