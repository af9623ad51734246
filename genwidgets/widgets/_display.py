"""Showing a widget under a display id, and replacing that output later from a background task.

Three notebook facts shape this module:

- JupyterLab renders an output's widget view before its `text/html`, and a saved notebook reopened
  without the widget's model shows "Error displaying widget: model not found" instead of falling
  back. So an object whose work is over replaces its output with a static-only bundle
  (`text/html` + `text/plain`, no widget view): a saved notebook shows the result everywhere.
- nbclient (so `nbconvert --execute`, papermill, nbval) keeps only the messages whose parent is the
  cell it is running. An `update_display` sent from an asyncio task carries the parent of the
  cell that started the task (ipykernel 7 keeps the parent in a context variable the task
  copied) and would be dropped. So updates are published with the parent of the cell executing
  now (captured by a `pre_run_cell` hook), and an update sent while no cell runs is sent again
  when the next cell starts.
- A kernel that shuts down takes its widgets along, and the front end keeps a dead card (saved,
  it reads "model not found"). So the kernel's `do_shutdown` first gives every output still
  showing a widget its static form ("running, task id, how to resume"); JupyterLab applies it
  on "Shut Down Kernel" (not on "Restart Kernel", where it drops the kernel's last messages).
  A file saved while a card was live is beyond the kernel's reach: the server's pre-save hook
  (`_saved`) writes such outputs without their widget view.
- Voila never applies an `update_display` to an output already shown: there (see
  `static_swap_allowed`) finished objects keep their widgets.
- A bare `card` as a cell's last line and `display(card)` both reach `_ipython_display_`. An
  object already shown by the same cell (`%gen` displays its card and returns it) shows nothing
  more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

from . import _render as render

__all__ = ["StaticDisplay", "shell", "shell_active", "static_swap_allowed", "this_cell"]

log = logging.getLogger("genwidgets.widgets")


def shell_active() -> bool:
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    return InteractiveShell.initialized()


class _NoKernel:
    """Stands in for a shell that tests declare active without starting one."""

    execution_count = 0  # one stand-in cell


def shell() -> Any:
    """The running IPython shell, or None (plain Python)."""
    from . import _card  # tests declare a shell active through `_card._shell_active`

    if not _card._shell_active():
        return None
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance() if InteractiveShell.initialized() else _NoKernel()


def static_swap_allowed() -> bool:
    """May a finished object replace its widget output with static HTML? Not under Voila: it
    never applies an `update_display` to an output already on the page, so the closed widget
    would read "model not found" there (Voila sets VOILA_KERNEL_ID in its kernels)."""
    return "VOILA_KERNEL_ID" not in os.environ


def this_cell() -> int | None:
    """The execution count of the cell running now (None outside IPython)."""
    current = shell()
    return getattr(current, "execution_count", None) if current is not None else None


class _Cells:
    """Which cell runs now, as seen by the shell's `pre_run_cell`/`post_run_cell` events."""

    def __init__(self) -> None:
        self.hooked: int | None = None  # id() of the shell the hooks are registered on
        self.running = True  # until the hooks say otherwise
        self.parent: dict[str, Any] | None = None
        self.pending: weakref.WeakValueDictionary[str, StaticDisplay] = (
            weakref.WeakValueDictionary()
        )
        self.shown: weakref.WeakSet[StaticDisplay] = weakref.WeakSet()

    def install(self, current: Any) -> None:
        if self.hooked == id(current) or not hasattr(current, "events"):
            return
        self.hooked = id(current)
        self.running = True  # installed from inside a cell
        self.parent = _kernel_parent(current)
        current.events.register("pre_run_cell", self._pre)
        current.events.register("post_run_cell", self._post)
        self._hook_shutdown(current)

    def _hook_shutdown(self, current: Any) -> None:
        """Before the kernel shuts down or restarts, every output still showing a widget gets
        its static form: the widget is about to vanish with the kernel, and the front end would
        keep a dead card (or save "model not found")."""
        kernel = getattr(current, "kernel", None)
        original = getattr(kernel, "do_shutdown", None)
        if original is None or getattr(original, "genwidgets", False):
            return

        def do_shutdown(restart: bool) -> Any:
            for shown in [s for s in self.shown if getattr(s, "comm", None) is not None]:
                try:
                    shown._publish(shown._final_bundle())
                except Exception:  # never stand in the way of a shutdown
                    log.debug("static form at shutdown failed", exc_info=True)
            return original(restart)

        do_shutdown.genwidgets = True  # type: ignore[attr-defined]
        kernel.do_shutdown = do_shutdown

    def _pre(self, *_args: Any) -> None:
        self.running = True
        self.parent = _kernel_parent(shell())
        pending = list(self.pending.values())
        self.pending.clear()
        for shown in pending:  # sent while no cell ran: nbclient dropped them
            shown.refresh_display()

    def _post(self, *_args: Any) -> None:
        self.running = False


_cells = _Cells()


def _kernel_parent(current: Any) -> dict[str, Any] | None:
    kernel = getattr(current, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:
        return None
    return parent if isinstance(parent, dict) and parent.get("header") else None


@contextlib.contextmanager
def _as_running_cell(current: Any) -> Iterator[None]:
    """Publish with the parent of the cell executing now, not of the task's starting cell."""
    publisher = getattr(current, "display_pub", None)
    parent = _cells.parent
    setter = getattr(publisher, "set_thread_parent", None)
    if parent is None or setter is None:
        yield
        return
    token = setter(parent)
    try:
        yield
    finally:
        publisher.reset_thread_parent(token)


class StaticDisplay:
    """Display as widget view + static HTML under a display id, and update that display.

    `update_display` is routed by display id, so it may be called from a background task long
    after the cell returned: the front end (and nbclient) replace every output carrying the id.
    Subclasses give `_static_html()` and `_static_text()`; the widget view is in the bundle
    while the widget is open.
    """

    _display_id: str | None = None
    _shown_in: frozenset[int] = frozenset()

    def _static_html(self) -> str:
        raise NotImplementedError

    def _static_text(self) -> str:
        raise NotImplementedError

    def mimebundle(self) -> dict[str, Any]:
        """The bundle shown now: the widget view (while live), `text/html` and `text/plain`."""
        open_ = getattr(self, "comm", None) is not None
        model_id = self.model_id if open_ else None  # type: ignore[attr-defined]
        return render.fallback_bundle(self._static_html(), self._static_text(), model_id)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        return self.mimebundle()

    def _ipython_display_(self) -> None:
        if this_cell() in self._shown_in:
            return  # this cell shows it already (`%gen` displays its card and returns it)
        self.display()

    def display(self) -> None:
        """Show it in the notebook, under a display id that later updates replace."""
        current = shell()
        if current is None:
            print(self._static_text())
            return
        from IPython.display import display

        _cells.install(current)
        if self._display_id is None:
            self._display_id = f"genwidgets-{uuid.uuid4().hex}"
        if current.execution_count is not None:
            self._shown_in = self._shown_in | {current.execution_count}
        _cells.shown.add(self)
        display(self.mimebundle(), raw=True, display_id=self._display_id)

    def refresh_display(self) -> None:
        """Replace every output of this object with its current bundle (no-op if not shown)."""
        self._publish(None)

    def _final_bundle(self) -> dict[str, Any]:
        """The static bundle (no widget view), taken before closing the widgets it describes."""
        return render.fallback_bundle(self._static_html(), self._static_text(), None)

    def _publish(self, bundle: dict[str, Any] | None) -> None:
        current = shell()
        if self._display_id is None or current is None:
            return
        from IPython.display import update_display

        if not _cells.running:
            _cells.pending[self._display_id] = self
        try:
            data = bundle if bundle is not None else self.mimebundle()
            with _as_running_cell(current):
                update_display(data, raw=True, display_id=self._display_id)
        except Exception:  # a display problem must not break the task that triggered it
            log.debug("update_display failed", exc_info=True)
