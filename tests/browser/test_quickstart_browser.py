"""The quickstart in a real browser: JupyterLab 4 (and once Notebook 7) + Debian Chromium.

Every card reaches succeeded, the image decodes, the video and audio elements load their media,
Cancel ends a long local video as cancelled, the form refuses bad input inline and submits good
input, and hostile prompts render as text (no dialog fires). A screenshot is kept.
"""

from __future__ import annotations

import os
import re
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
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("lab")
    env = {
        "GENWIDGETS_LOCAL_DURATION": "0.5",
        "GENWIDGETS_JOURNAL": str(workdir / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(workdir / "cache"),
        "GENWIDGETS_REPLAY": "off",
    }
    with jupyter_server(workdir, "lab", env) as server:
        shutil.copy(REPO / "notebooks" / "01-quickstart.ipynb", server.root)
        yield server


@pytest.fixture
def page(lab: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(90_000)
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        yield page
        browser.close()



def card_states(page: Any, scope: str) -> list[str]:
    return page.eval_on_selector_all(
        f"{scope} .genwidgets-badge", "es => es.map(e => e.dataset.state)"
    )


def test_quickstart_in_jupyterlab(lab: Server, page: Any) -> None:
    panel = open_notebook_lab(page, lab, "01-quickstart.ipynb")
    run_all_lab(page, panel)
    wait_all_executed_lab(page, panel)
    assert error_outputs(page, panel) == []

    # rose, hello, waves, %gen, %%gen: succeeded; the long video still running
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{panel} .genwidgets-badge')]"
        ".filter(e => e.dataset.state === 'succeeded').length >= 5",
        timeout=120_000,
    )
    states = card_states(page, panel)
    assert states.count("succeeded") >= 5, states

    images = page.eval_on_selector_all(
        f"{panel} .genwidgets-static img.genwidgets-image",
        "es => es.map(e => [e.naturalWidth, e.getBoundingClientRect().width])",
    )
    assert images and all(natural > 0 for natural, _ in images), images
    assert all(shown <= min(natural, 512) + 1 for natural, shown in images), images  # unstretched

    for tag in ("video", "audio"):
        page.wait_for_function(
            f"() => {{ const m = document.querySelector('{panel} .genwidgets-static {tag}');"
            " return m && m.readyState >= 1 && m.duration > 0; }",
            timeout=30_000,
        )
    video = page.eval_on_selector(
        f"{panel} .genwidgets-static video",
        "v => ({auto: v.autoplay, loop: v.loop, err: v.error})",
    )
    assert video == {"auto": False, "loop": False, "err": None}

    # Cancel the long local video from its card.
    long_out = page.locator(f"{panel} .jp-OutputArea-output", has_text="a very long video").first
    long_out.locator(".genwidgets-badge[data-state='running']").wait_for(timeout=30_000)
    long_out.locator(".genwidgets-cancel button, button.genwidgets-cancel").first.click()
    long_out.locator(".genwidgets-badge[data-state='cancelled']").wait_for(timeout=30_000)

    # The form: an empty prompt is refused inline, nothing is submitted.
    form = page.locator(f"{panel} .genwidgets-form").first
    cards_before = page.locator(f"{panel} .genwidgets-form-cards .genwidgets-card").count()
    form.locator(".genwidgets-submit button, button.genwidgets-submit").first.click()
    error = form.locator(".genwidgets-form-error")
    error.wait_for(state="visible", timeout=15_000)
    assert "prompt" in error.inner_text().lower()
    assert page.locator(f"{panel} .genwidgets-form-cards .genwidgets-card").count() == cards_before

    # A hostile prompt is submitted and shown as text.
    form.locator(".genwidgets-prompt-input textarea").first.fill(HOSTILE)
    form.locator(".genwidgets-submit button, button.genwidgets-submit").first.click()
    # once it ends, the card moves from the form to the static results output below it
    results = page.locator(f"{panel} .genwidgets-form-results").first
    results.locator(".genwidgets-badge[data-state='succeeded']").wait_for(timeout=60_000)
    assert HOSTILE in results.inner_text()
    assert page.dialogs == []  # type: ignore[attr-defined]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "quickstart-lab.png"), full_page=True)


def test_hostile_text_in_cards_gallery_and_errors(lab: Server, page: Any) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import genwidgets\n"
            f"HOSTILE = {HOSTILE!r}\n"
            "def broken(prompt):\n"
            "    raise RuntimeError(HOSTILE)\n"
            "genwidgets.register_local_model('broken', broken, replace=True)\n"
            "card = genwidgets.show('local:image', prompt=HOSTILE, seed=1)\n"
            "bad = genwidgets.show('local:broken', prompt='fails ' + HOSTILE)"
        ),
        nbformat.v4.new_code_cell(
            "gallery = genwidgets.explore(\n"
            "    models=['local:image'], prompts=[HOSTILE], seeds=[1, 2])\n"
            "gallery"
        ),
    ]
    nbformat.write(nb, lab.root / "hostile.ipynb")
    panel = open_notebook_lab(page, lab, "hostile.ipynb")
    run_all_lab(page, panel)
    wait_all_executed_lab(page, panel)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{panel} .genwidgets-badge')]"
        ".filter(e => ['succeeded', 'failed'].includes(e.dataset.state)).length >= 4",
        timeout=60_000,
    )
    text = page.locator(panel).inner_text()
    assert text.count("<img src=x onerror=alert(1)>") >= 4  # shown as text, not parsed
    assert "RuntimeError" in text
    assert page.locator(f"{panel} img[src='x']").count() == 0
    assert page.locator(f"{panel} .jp-OutputArea-output script").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_quickstart_in_notebook7(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    env = {
        "GENWIDGETS_LOCAL_DURATION": "0.5",
        "GENWIDGETS_JOURNAL": str(tmp_path / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(tmp_path / "cache"),
        "GENWIDGETS_REPLAY": "off",
    }
    with jupyter_server(tmp_path, "notebook", env) as server:
        shutil.copy(REPO / "notebooks" / "01-quickstart.ipynb", server.root)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(f"{server.base}/notebooks/01-quickstart.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')]"
                ".some(e => e.dataset.status === 'idle')"
            )
            page.wait_for_timeout(1000)  # the indicator reads idle briefly before connecting
            for attempt in (1, 2):
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).first.click()
                page.locator(
                    ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                    has_text="Run All Cells",
                ).first.click()
                try:
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('.jp-InputArea-prompt')]"
                        ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))",
                        timeout=10_000,
                    )
                    break
                except Exception:
                    if attempt == 2:
                        raise
            page.wait_for_function(
                "() => [...document.querySelectorAll('.genwidgets-badge')]"
                ".filter(e => e.dataset.state === 'succeeded').length >= 5",
                timeout=180_000,
            )
            widths = page.eval_on_selector_all(
                ".genwidgets-static img", "es => es.map(e => e.naturalWidth)"
            )
            assert widths and all(w > 0 for w in widths)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "quickstart-notebook7.png"), full_page=True)
            browser.close()
