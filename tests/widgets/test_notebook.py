"""In a real kernel: the card's display id is updated from the background task after the cell
returned, the finished card's output is static only (no widget view: JupyterLab would show
"model not found" without the widget), and `nbconvert --to html` shows the finished card."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_executed_notebook_keeps_the_final_static_card(tmp_path: Path) -> None:
    from nbconvert import HTMLExporter

    setup = (
        "import os\n"
        "os.environ['GENWIDGETS_LOCAL_DURATION'] = '0.5'\n"
        "import genwidgets\n"
        "from genwidgets.widgets import StatusCard\n"
        f"client = genwidgets.AsyncClient(cache_dir={str(tmp_path / 'cache')!r}, journal=False)"
    )
    show = f"card = StatusCard.submit(client, 'local:image', prompt={HOSTILE!r}, seed=2)\ncard"
    wait = "task = await card.wait()\nassert card.state == 'succeeded', card.error\ntask.status"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (setup, show, wait)]
    # Widget state is not stored, as with JupyterLab's default and on GitHub: renderers must
    # fall back to the text/html in the card's bundle.
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", store_widget_state=False
    )
    client.execute()

    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"]  # one output, updated in place
    data = outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data
    html_text = data["text/html"]
    assert 'data-state="succeeded"' in html_text  # the final bundle replaced the first one
    assert "data:image/png;base64," in html_text
    assert HOSTILE not in html_text and "&lt;img src=x onerror=alert(1)&gt;" in html_text
    assert data["text/plain"].startswith("[succeeded] local:image")

    page, _ = HTMLExporter().from_notebook_node(nb)
    assert 'data-state="succeeded"' in page and "data:image/png;base64," in page
    assert HOSTILE not in page
