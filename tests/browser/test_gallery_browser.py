"""The exploration gallery's saved forms in a real browser: a grid within the output's width.

The forms: the notebook run in JupyterLab (the finished gallery turns into its static grid), the
same notebook executed headless by nbclient and opened in JupyterLab and in Notebook 7
(untrusted, so through the HTML sanitizer), and its `nbconvert --to html` page. In each the
grid fits its output (no horizontal scroll), has several columns at 1280 px, every image
decodes, text is left-aligned and no path runs into the next cell. Screenshots are kept.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    error_outputs,
    jupyter_server,
    open_notebook_lab,
    run_all_lab,
    wait_all_executed_lab,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))
NOTEBOOK = "02-prompt-exploration.ipynb"

#: Measured in the page: the grid against the output that holds it, each cell against the next.
MEASURE = """grid => {
  const out = grid.closest('.jp-OutputArea-output') || grid.parentElement;
  const body = grid.querySelector('.genwidgets-grid-body');
  const cells = [...grid.querySelectorAll('.genwidgets-static-cell')];
  const boxes = cells.map(c => c.getBoundingClientRect());
  const overlaps = boxes.filter((b, i) => i > 0 && boxes[i - 1].top === b.top
      && boxes[i - 1].right > b.left + 0.5).length;
  const spill = cells.filter(c => c.scrollWidth > c.clientWidth + 1).length;
  return {
    gridWidth: grid.getBoundingClientRect().width,
    outWidth: out.getBoundingClientRect().width,
    outScroll: out.scrollWidth - out.clientWidth,
    display: getComputedStyle(body).display,
    columns: new Set(boxes.map(b => Math.round(b.left))).size,
    cells: cells.length,
    overlaps, spill,
    align: cells.map(c => getComputedStyle(c).textAlign),
    images: [...grid.querySelectorAll('img')].map(i => i.naturalWidth),
  };
}"""


def check(shape: dict[str, Any], cards: int = 6, columns: int | None = 3) -> None:
    """A grid within its output; `columns` as the notebook asked (`explore(..., columns=3)`),
    or None where only "several" is promised."""
    assert shape["display"] == "grid", shape
    assert shape["cells"] == cards, shape
    assert shape["gridWidth"] <= shape["outWidth"] + 1 and shape["outScroll"] <= 1, shape
    assert shape["columns"] >= 2, shape
    if columns is not None:
        assert shape["columns"] == columns, shape
    assert shape["overlaps"] == 0 and shape["spill"] == 0, shape
    assert all(a in ("left", "start") for a in shape["align"]), shape
    assert len(shape["images"]) == cards and all(w > 0 for w in shape["images"]), shape


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gallery")
    env = {
        "GENWIDGETS_LOCAL_DURATION": "0.3",
        "GENWIDGETS_JOURNAL": str(workdir / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(workdir / "cache"),
    }
    with jupyter_server(workdir, "lab", env) as server:
        yield server


@pytest.fixture
def page(lab: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(90_000)
        yield page
        browser.close()


def test_closed_gallery_is_a_grid_in_jupyterlab(lab: Server, page: Any) -> None:
    shutil.copy(REPO / "notebooks" / NOTEBOOK, lab.root / NOTEBOOK)
    panel = open_notebook_lab(page, lab, NOTEBOOK)
    run_all_lab(page, panel)
    wait_all_executed_lab(page, panel)
    assert error_outputs(page, panel) == []
    grid = page.locator(f"{panel} .genwidgets-static-grid").first
    grid.wait_for()
    page.wait_for_timeout(500)  # images decode
    shape = grid.evaluate(MEASURE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    grid.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "gallery-closed-lab.png"), full_page=True)
    check(shape)


def test_headless_run_opened_untrusted_and_as_html(
    lab: Server, page: Any, tmp_path: Path
) -> None:
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    env_before = dict(os.environ)
    os.environ.update(
        GENWIDGETS_LOCAL_DURATION="0.3",
        GENWIDGETS_JOURNAL=str(tmp_path / "journal.sqlite"),
        GENWIDGETS_CACHE_DIR=str(tmp_path / "cache"),
    )
    try:
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(lab.root)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    name = "headless-02.ipynb"
    nbformat.write(nb, lab.root / name)  # unsigned: JupyterLab sanitizes its HTML
    panel = open_notebook_lab(page, lab, name)
    grid = page.locator(f"{panel} .genwidgets-static-grid").first
    grid.wait_for()
    page.wait_for_timeout(500)
    shape = grid.evaluate(MEASURE)
    grid.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "gallery-untrusted-lab.png"), full_page=True)
    check(shape, columns=None)  # Lab's sanitizer decides whether the 3-column cap survives

    # the same saved notebook in Notebook 7, on a server of its own
    with jupyter_server(tmp_path / "nb7", "notebook") as nb7:
        nbformat.write(nb, nb7.root / name)
        page.goto(f"{nb7.base}/notebooks/{name}")
        grid = page.locator(".genwidgets-static-grid").first
        grid.wait_for()
        page.wait_for_timeout(500)
        shape = grid.evaluate(MEASURE)
        grid.evaluate("e => e.scrollIntoView()")
        page.screenshot(path=str(ARTIFACTS / "gallery-notebook7.png"))
        check(shape, columns=None)
        nb7.delete_sessions()

    body, _ = HTMLExporter().from_notebook_node(nb)
    html_file = tmp_path / "02.html"
    html_file.write_text(body)
    page.goto(html_file.as_uri())
    grid = page.locator(".genwidgets-static-grid").first
    grid.wait_for()
    page.wait_for_timeout(500)
    shape = grid.evaluate(MEASURE)
    page.screenshot(path=str(ARTIFACTS / "gallery-nbconvert.png"), full_page=True)
    check(shape)
