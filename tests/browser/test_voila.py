"""The exploration notebook served as an app with Voilà, driven in Chromium.

Voilà runs the notebook in a fresh kernel, hides its code and serves its outputs. It never applies
an update to an output it already rendered, so the gallery stays live there (a closed or frozen
gallery would read "model not found"): six succeeded cards, every image decoded, within the
page. The form works: Generate twice with a blank seed gives two cards with two seeds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium"),
    pytest.mark.skipif(shutil.which("voila", path=str(Path(sys.executable).parent)) is None,
                       reason="needs voila (the test extra)"),
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GENWIDGETS_ARTIFACTS", REPO / ".e2e"))
NOTEBOOK = "02-prompt-exploration.ipynb"


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`voila 02-prompt-exploration.ipynb` on a free loopback port; stopped by PID."""
    workdir = tmp_path_factory.mktemp("voila")
    shutil.copy(REPO / "notebooks" / NOTEBOOK, workdir / NOTEBOOK)
    port = free_port()
    env = {
        **os.environ,
        "GENWIDGETS_LOCAL_DURATION": "0.3",
        "GENWIDGETS_JOURNAL": str(workdir / "journal.sqlite"),
        "GENWIDGETS_CACHE_DIR": str(workdir / "cache"),
        "JUPYTER_CONFIG_DIR": str(workdir / "jcfg"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "jrt"),
        "JUPYTER_DATA_DIR": str(workdir / "jdata"),
    }
    log = workdir / "voila.log"
    command = [
        str(Path(sys.executable).with_name("voila")),
        NOTEBOOK,
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"voila died:\n{log.read_text()[-3000:]}")
            try:  # the port answers (its API wants a login: a plain connect is the check)
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"voila did not start: {log}") from None
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def test_exploration_notebook_as_a_voila_app(voila: str, page: Any) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(voila)
    page.locator(".genwidgets-gallery").first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.genwidgets-gallery .genwidgets-badge')]"
        ".filter(e => e.dataset.state === 'succeeded').length === 6"
    )
    page.wait_for_function(
        "() => { const i = [...document.querySelectorAll('.genwidgets-gallery img')];"
        " return i.length === 6 && i.every(e => e.complete && e.naturalWidth > 0); }"
    )
    assert page.get_by_text("model not found").count() == 0
    text = page.locator("body").inner_text()
    assert "import genwidgets" not in text and "SubmitForm(" not in text  # no code shown
    width = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert width <= 1, width  # nothing wider than the window

    form = page.locator(".genwidgets-form").first
    form.wait_for()
    seed = form.locator(".genwidgets-seed input").first
    seen = []
    for click in (1, 2):
        form.locator("button.genwidgets-submit").first.click()
        page.wait_for_function(
            "n => [...document.querySelectorAll('.genwidgets-form-cards .genwidgets-badge')]"
            ".filter(e => e.dataset.state === 'succeeded').length >= n",
            arg=click,
        )
        seen.append(seed.get_attribute("placeholder"))
    assert all("last: " in s for s in seen) and seen[0] != seen[1], seen
    page.wait_for_function(  # the media arrive just after the badge turns succeeded
        "() => { const i = [...document.querySelectorAll('.genwidgets-form-cards img')];"
        " return i.length >= 2 && i.every(e => e.complete && e.naturalWidth > 0); }"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "voila-exploration.png"), full_page=True)
    assert errors == []
