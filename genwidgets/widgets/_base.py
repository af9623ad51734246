"""What the widgets need from a client, and the helpers every widget here uses: minimal trait
updates, closing whole trees, classes, the kernel's loop, and the one ticker that refreshes the
elapsed time of every live card."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import ipywidgets as widgets

from .._models import Task
from ..providers import ModelInfo

__all__ = ["TaskClient", "Ticker", "assign", "close_tree", "css", "loop", "running_loop"]


class TaskClient(Protocol):
    """What the widgets need from a client (`genwidgets.AsyncClient` offers it)."""

    async def submit(
        self, model: str, *, on_wait: Callable[[Any], None] | None = None, **params: Any
    ) -> Task: ...

    def updates(self, task: Task) -> AsyncIterator[Task]: ...

    async def cancel(self, task: Task) -> Task: ...

    async def download(self, task: Task) -> Task: ...

    def can_cancel(self, task: Task) -> bool: ...

    def validate(self, model: str, **params: Any) -> dict[str, Any]: ...

    def available_models(self) -> dict[str, list[ModelInfo]]: ...

    def model_info(self, model: str) -> ModelInfo | None: ...


def assign(widget: widgets.Widget, **values: Any) -> bool:
    """Set only the traits whose value differs, in one message; True if anything changed."""
    changes = {k: v for k, v in values.items() if getattr(widget, k) != v}
    if not changes:
        return False
    with widget.hold_sync():
        for key, value in changes.items():
            setattr(widget, key, value)
    return True


def owned(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    """The widgets `widget` holds in its synced traits (children, layout, style)."""
    for name in widget.keys:
        value = getattr(widget, name, None)
        if isinstance(value, widgets.Widget):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, widgets.Widget))


def close_tree(root: widgets.Widget) -> None:
    """Close `root` and every widget it holds (children, layout, style).

    ipywidgets keeps each widget in a global registry until `.close()`: a `Box.close()` closes
    neither its children nor its `Layout`, so dropped cards would leak in kernel and browser.
    """
    seen: set[int] = set()

    def visit(widget: widgets.Widget) -> None:
        if id(widget) in seen:
            return
        seen.add(id(widget))
        for child in list(owned(widget)):
            visit(child)
        widget.close()

    visit(root)


def css(*classes: str) -> dict[str, Any]:
    """Constructor kwargs giving a widget its classes (hooks for browser tests and styling)."""
    return {"_dom_classes": classes}


def loop() -> asyncio.AbstractEventLoop:
    """The kernel's running loop; outside one, the loop `genwidgets.get_client()` uses."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from .._runner import LoopRunner

        return LoopRunner.shared().loop


def running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Ticking(Protocol):
    def tick(self, now: float) -> None: ...


class Ticker:
    """One asyncio task refreshing every live card's elapsed time, instead of one task per card.

    Each wake handles one slice of the cards (a tenth at `slices=10`), so a thousand live cards
    cost a hundred small trait updates every 0.1 s rather than a thousand at once every second:
    the kernel's event loop never stalls on them. A card is dropped when it ends or is collected.
    """

    def __init__(self, period: float = 1.0, slices: int = 10) -> None:
        self.period = period
        self.slices = max(1, slices)
        self._cards: weakref.WeakKeyDictionary[Ticking, int] = weakref.WeakKeyDictionary()
        self._next = 0
        self._job: asyncio.Task[None] | None = None

    def add(self, card: Ticking) -> None:
        if card not in self._cards:
            self._cards[card] = self._next % self.slices
            self._next += 1
        job, current = self._job, loop()
        if job is None or job.done() or job.get_loop() is not current:
            self._job = current.create_task(self._run())

    def discard(self, card: Ticking) -> None:
        self._cards.pop(card, None)

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, card: object) -> bool:
        return card in self._cards

    async def _run(self) -> None:
        part = 0
        while self._cards and self._job is asyncio.current_task():
            await asyncio.sleep(self.period / self.slices)
            now = time.monotonic()
            for card, slot in list(self._cards.items()):
                if slot == part:
                    try:
                        card.tick(now)
                    except Exception:  # a broken card must not stop the others' clocks
                        self.discard(card)
            part = (part + 1) % self.slices
        if self._job is asyncio.current_task():
            self._job = None
