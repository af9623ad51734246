"""The magic, the form and errors as a new user meets them, in JupyterLab + Chromium.

A typo'd provider is an error that names the right one and shows no card; a long usage error
wraps inside the output; errors from the Python API are a few lines with the fix; the form
shows empty numbers and speech on, has no horizontal scrollbar, and a blank seed gives a new
seed at each Generate. Screenshots are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    jupyter_server,
    open_notebook_lab,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))

#: Lab 4.6 renders an error output with the stderr renderer
ERROR_MIMES = ("application/vnd.jupyter.stderr", "application/vnd.jupyter.error")
CELLS = [
    "import genwidgets\n%load_ext genwidgets",
    "%gen locl:image a typo",
    "%gen netmind:" + "x" * 30 + " a model name far too long " * 3,
    "%gen local:imag a tulip",
    "card = genwidgets.show('local:image', prompt='')",
    "genwidgets.run('local:video', prompt='slow', duration=30, timeout=0.5)",
    "form = genwidgets.SubmitForm(model='local:image', prompt='a red rose')\nform",
    "audio = genwidgets.SubmitForm(model='local:audio')\naudio",
    "t = %gen local:image a lighthouse in a storm --seed 5\nt",  # 8: shown once, no Out[]
    "t.status.value, len(t.outputs), t.outputs[0].path is not None",  # 9: run once it ended
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("magic")
    env = {
        "GENWIDGETS_LOCAL_DURATION": "0.3",
        "GENWIDGETS_JOURNAL": str(workdir / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(workdir / "cache"),
    }
    with jupyter_server(workdir, "lab", env) as server:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
        nbformat.write(nb, server.root / "walk.ipynb")
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


def run_each(page: Any, panel: str, indexes: range) -> None:
    """Run the cells one at a time, each after the previous ended: Lab's Run All stops at the
    first error, and errors are what this notebook shows."""
    prompt = f"{panel} .jp-CodeCell .jp-InputArea-prompt"
    for index in indexes:
        page.locator(f"{panel} .jp-CodeCell").nth(index).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            f"i => /\\[\\d+\\]/.test(document.querySelectorAll('{prompt}')[i].textContent)",
            arg=index,
            timeout=60_000,
        )


def outputs(page: Any, panel: str, index: int) -> list[dict[str, Any]]:
    """Each output of code cell `index`: its mime type, text and whether it overflows."""
    return page.eval_on_selector_all(
        f"{panel} .jp-CodeCell",
        """(cells, index) => [...cells[index].querySelectorAll('.jp-OutputArea-output')].map(o => ({
            mime: o.dataset.mimeType, text: o.innerText,
            overflow: o.scrollWidth - o.clientWidth}))""",
        index,
    )


def test_magic_errors_and_form_in_jupyterlab(lab: Server, page: Any) -> None:
    panel = open_notebook_lab(page, lab, "walk.ipynb")
    run_each(page, panel, range(len(CELLS) - 1))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    typo = outputs(page, panel, 1)
    assert len(typo) == 1 and typo[0]["mime"] in ERROR_MIMES, typo
    text = " ".join(typo[0]["text"].split())
    assert "Did you mean local:image?" in text and "Nothing was sent" in text
    cards_in_typo_cell = page.eval_on_selector_all(
        f"{panel} .jp-CodeCell", "cs => cs[1].querySelectorAll('.genwidgets-card').length"
    )
    assert cards_in_typo_cell == 0

    for index in (2, 3):  # long usage errors wrap inside the output, nothing clipped
        (error,) = outputs(page, panel, index)
        assert error["overflow"] <= 1, error
    (unknown,) = outputs(page, panel, 3)
    assert "Did you mean 'image'?" in unknown["text"]

    for index, name, fix in (
        (4, "InvalidParams", "To fix: correct the parameters"),
        (5, "DeadlineExceeded", "To fix: give it more time"),
    ):
        (error,) = outputs(page, panel, index)
        assert error["mime"] in ERROR_MIMES, error
        lines = error["text"].strip().splitlines()
        assert lines[0].startswith(name) and fix in error["text"] and len(lines) <= 7, lines
        assert "asyncio" not in error["text"]

    form = page.locator(f"{panel} .genwidgets-form").first
    form.wait_for()
    overflow = form.evaluate(
        "f => [f, ...f.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 0"
        " && getComputedStyle(e).overflowX !== 'visible').map(e => e.className).slice(0, 5)"
    )
    wide = form.evaluate(
        "f => { const r = f.getBoundingClientRect().right - parseFloat(getComputedStyle(f)"
        ".paddingRight); return [...f.querySelectorAll('*')].filter(e =>"
        " e.getBoundingClientRect().right > r + 0.5).map(e => e.tagName + '.' + e.className"
        " + ' +' + (e.getBoundingClientRect().right - r).toFixed(1)).slice(0, 8) }"
    )
    assert overflow == [], (overflow, wide)  # no horizontal scrollbar anywhere in the form
    numbers = form.locator(".genwidgets-number input")
    assert numbers.count() >= 3
    assert all(v == "" for v in numbers.evaluate_all("es => es.map(e => e.value)"))
    audio = page.locator(f"{panel} .genwidgets-form").nth(1)
    assert audio.locator(".genwidgets-param input[type=checkbox]").first.is_checked()

    seed = form.locator(".genwidgets-seed input").first
    placeholders = []
    for click in (1, 2):
        form.locator("button.genwidgets-submit").first.click()
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{panel} .genwidgets-form-results"
            f" .genwidgets-badge')].filter(e => e.dataset.state === 'succeeded').length >= {click}"
        )
        placeholders.append(seed.get_attribute("placeholder"))
    assert all("last: " in p for p in placeholders) and placeholders[0] != placeholders[1]
    # the finished cards sit in an HTML output of their own: a saved notebook shows them
    html = f"{panel} .jp-OutputArea-output[data-mime-type='text/html'] .genwidgets-form-results"
    assert page.locator(f"{html} img").count() == 2
    # t = %gen ...: one card in its cell (not a second one, not a stale Out[]), and t stays live
    cell = page.locator(f"{panel} .jp-CodeCell").nth(8)
    cell.locator(".genwidgets-badge[data-state='succeeded']").wait_for()
    assert cell.locator(".jp-OutputArea-output").count() == 1
    assert cell.locator(".genwidgets-badge").count() == 1  # live or, once ended, static
    run_each(page, panel, range(9, 10))
    (result,) = outputs(page, panel, 9)
    assert result["text"].strip() == "('succeeded', 1, True)", result

    page.locator(f"{panel} .jp-CodeCell").nth(1).evaluate("e => e.scrollIntoView()")
    page.screenshot(path=str(ARTIFACTS / "walk-magic-errors.png"))
    page.locator(f"{panel} .genwidgets-form").first.evaluate("e => e.scrollIntoView()")
    page.screenshot(path=str(ARTIFACTS / "walk-magic-form.png"))
