"""The server's pre-save hook: a genwidgets output saved while its widget is live keeps only its
static form; views whose state is saved, and other libraries' views, are left alone. The browser
test (tests/browser/test_saved_running_browser.py) shows the result in JupyterLab."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from genwidgets.widgets import _saved
from genwidgets.widgets._render import WIDGET_VIEW_MIME, fallback_bundle

REPO = Path(__file__).resolve().parents[2]


def output(data: dict[str, Any]) -> dict[str, Any]:
    return nbformat.v4.new_output("display_data", data=data)


def notebook(*outputs: dict[str, Any], saved: tuple[str, ...] = ()) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("card")
    cell.outputs = list(outputs)
    nb.cells = [cell]
    if saved:
        state = {model: {"state": {}} for model in saved}
        nb.metadata["widgets"] = {_saved.WIDGET_STATE_MIME: {"state": state}}
    return json.loads(json.dumps(nb))  # what the front end sends: plain JSON


CARD = '<div class="genwidgets-static" data-state="running">a rose</div>'


def test_a_live_card_is_saved_as_its_static_form() -> None:
    nb = notebook(output(fallback_bundle(CARD, "<StatusCard running>", "m1")))
    _saved.pre_save({"type": "notebook", "content": nb}, "n.ipynb")
    data = nb["cells"][0]["outputs"][0]["data"]
    assert data == {"text/plain": "<StatusCard running>", "text/html": CARD}
    nbformat.validate(nbformat.from_dict(nb))


def test_html_saved_as_lines_is_recognised() -> None:
    bundle = fallback_bundle(CARD, "card", "m1")
    bundle["text/html"] = [*CARD.splitlines(keepends=True), "\n"]
    nb = notebook(output(bundle))
    assert _saved.drop_unsaved_views(nb) == 1


def test_saved_state_and_other_widgets_are_kept() -> None:
    ours_saved = output(fallback_bundle(CARD, "card", "kept"))
    slider = output({WIDGET_VIEW_MIME: {"model_id": "s1"}, "text/plain": "IntSlider()"})
    plain_html = output({"text/html": "<b>hi</b>"})
    nb = notebook(ours_saved, slider, plain_html, saved=("kept",))
    before = json.dumps(nb)
    assert _saved.drop_unsaved_views(nb) == 0
    assert json.dumps(nb) == before


def test_other_contents_are_untouched() -> None:
    model = {"type": "file", "content": "text", "format": "text"}
    _saved.pre_save(model, "a.txt")
    assert model["content"] == "text"


def test_the_install_enables_the_extension() -> None:
    config = REPO / "jupyter-config" / "jupyter_server_config.d" / "genwidgets.json"
    enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled == {_saved.__name__: True}
    pyproject = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+
    line = f'"etc/jupyter/jupyter_server_config.d" = ["{config.relative_to(REPO)}"]'
    assert "[tool.setuptools.data-files]\n" + line in pyproject
    assert _saved._jupyter_server_extension_points() == [{"module": _saved.__name__}]


def test_this_environment_enables_the_extension_as_a_user_gets_it() -> None:
    """What `scripts/setup.sh` (and binder's postBuild) set up for the editable install, whose
    Lab the quick start opens and the browser tests drive: the server loads the extension.
    (An editable install skips data files: without the setup step, it would not.)"""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(REPO / ".e2e" / "no-user-config")},
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert re.search(rf"{re.escape(_saved.__name__)}\s+enabled", text), text[-2000:]
