"""What a notebook file keeps of a genwidgets output that still shows a widget when it is saved.

JupyterLab renders an output's widget view before its `text/html`, and the view needs the
widget's model: the kernel holds it, and the front end writes its state into the file only with
"Save Widget State Automatically" (off by default). So a card still running when the notebook is
saved, reopened once its kernel is gone, reads "Error displaying widget: model not found", and
nothing the kernel sends later can change a file the front end already wrote (the static form it
sends at shutdown reaches an open notebook only, and only a second save keeps it).

This module is a Jupyter server extension (`jupyter-config/` enables it on install): at each save
it drops the widget view of every genwidgets output whose model state is not saved with it. The
file keeps that output's static HTML and text, written by the widgets for exactly this case (the
card's last known state: prompt, model, "Saved while running" and how to follow it again). The
open notebook is untouched: its live card goes on, and is replaced by the static result when the
task ends, as before. Outputs of other libraries and views whose state is saved are left alone.
"""

from __future__ import annotations

from typing import Any

from ._render import WIDGET_VIEW_MIME

__all__ = ["drop_unsaved_views", "pre_save"]

WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
#: every genwidgets output carries its static form, and only genwidgets' static forms this class
MARK = 'class="genwidgets-static'


def _text(value: Any) -> str:
    """nbformat stores multiline strings as lists of lines."""
    return "".join(value) if isinstance(value, list) else str(value or "")


def _saved_models(nb: dict[str, Any]) -> set[str]:
    widgets = (nb.get("metadata") or {}).get("widgets") or {}
    state = (widgets.get(WIDGET_STATE_MIME) or {}).get("state") or {}
    return set(state) if isinstance(state, dict) else set()


def drop_unsaved_views(nb: dict[str, Any]) -> int:
    """Drop, in place, the widget view of each genwidgets output whose model state is not in
    `nb`'s metadata (its static HTML stays); returns how many were dropped."""
    saved = _saved_models(nb)
    dropped = 0
    for cell in nb.get("cells") or ():
        for output in cell.get("outputs") or ():
            data = output.get("data") if isinstance(output, dict) else None
            view = data.get(WIDGET_VIEW_MIME) if isinstance(data, dict) else None
            if not isinstance(view, dict) or MARK not in _text(data.get("text/html")):
                continue
            if view.get("model_id") not in saved:
                del data[WIDGET_VIEW_MIME]
                dropped += 1
    return dropped


def pre_save(model: dict[str, Any], path: str = "", **_kwargs: Any) -> None:
    """The contents manager's pre-save hook: a notebook is saved with its static forms."""
    content = model.get("content")
    if model.get("type") == "notebook" and isinstance(content, dict):
        drop_unsaved_views(content)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save)
