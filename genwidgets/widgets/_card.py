"""`StatusCard`: the live handle and view of one task.

The card holds one immutable `CardState` (`_state.py`); each event makes a new value through a
pure transition, and `_render` shows it (the HTML itself is built in `_render.py`, the one place
that draws a card). The card never does HTTP: it consumes `client.updates(task)`, asks
`client.download(task)` for the files and shows them. Updates run in an asyncio task on the
kernel's loop (never a thread, never `with output:`, which puts output in the wrong cell:
ipywidgets #2358/#3993); errors in that task are shown on the card, never printed or lost.

A card shown on its own (`show()`, `%gen`, a bare `card`) has a display id. While the task is
live its output is the widget plus a static summary; when the task ends the output is replaced by
the static card alone (media, status, details) and the widgets are closed, so the saved notebook
shows the result in JupyterLab, Notebook 7, nbviewer and nbconvert HTML alike (see `_display`).
Cards inside a gallery or form (they add a listener) keep their widgets: their container decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .._models import Output, Status, Task
from . import _render as render
from ._base import TaskClient, assign, close_tree, css
from ._display import StaticDisplay, shell_active, static_swap_allowed
from ._follow import TICKER, Following
from ._preview import MAX_CARD_EMBED
from ._state import CardState

__all__ = [
    "TICKER",
    "StaticDisplay",
    "StatusCard",
    "TaskClient",
    "assign",
    "close_tree",
    "css",
    "resume",
    "show",
]

log = logging.getLogger("genwidgets.widgets")

Listener = Callable[["StatusCard"], None]


def _shell_active() -> bool:
    """True inside IPython (tests replace it to capture display calls)."""
    return shell_active()


def _card_layout() -> widgets.Layout:
    return widgets.Layout(
        border="1px solid #ddd", padding="4px 8px", margin="2px 0", max_width="540px"
    )


class StatusCard(Following, StaticDisplay, widgets.VBox):
    """A live card for one generation task, and the handle to it.

        card = genwidgets.show("local:image", prompt="a red rose", seed=3)
        card.status, card.outputs[0].path     # always current
        task = await card                     # the final Task

    Phases: "submitting" (no task yet), "waiting" (the submit waits locally for the account's
    budget), the task statuses, and "error" (the client raised; the error text says why).
    """

    def __init__(
        self,
        task: Task | None = None,
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        client: TaskClient | None = None,
        max_inline_bytes: int = MAX_CARD_EMBED,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("layout", _card_layout())
        kwargs.setdefault("_dom_classes", ("genwidgets-card",))
        super().__init__(**kwargs)
        self.max_inline_bytes = max_inline_bytes
        self._client = client
        now = time.monotonic()
        prompt = (params or {}).get("prompt")
        text = prompt if isinstance(prompt, str) else None
        self._state = CardState.submitting(model, text, now, params)
        self._request = (model, dict(params or {})) if model is not None else None
        if task is not None:
            self._state = CardState.following(task, now)
            self._request = self._request or (task.name, dict(task.params))
        self._exception: BaseException | None = None
        self._withdraw = False  # the follow job is cancelled to withdraw a waiting submit
        self._follow_job: asyncio.Task[Task | None] | None = None
        self._cancel_job: asyncio.Task[None] | None = None
        self._live = False  # a follow job runs
        self._closed = False
        self._view_closed = False
        self._media = ""  # the media's HTML, built once when they are ready
        self._static: tuple[CardState, str] | None = None
        self._listeners: list[Listener] = []
        self._notified: str | None = None
        self._build_view()
        if task is not None:
            self._apply(self._state.snapshot(task, now))
        else:
            self._render(None)

    def _build_view(self) -> None:
        # Classes are given at construction (in the comm-open state): add_class() afterwards
        # would cost one more message per part.
        self._headline = widgets.HTML(**css("genwidgets-headline"))
        self._elapsed = widgets.Label(**css("genwidgets-elapsed"))
        self._buttons = widgets.HBox(layout=widgets.Layout(margin="0 0 0 auto"))
        self._cancel_button: widgets.Button | None = None
        self._retry_button: widgets.Button | None = None
        self._header = widgets.HBox(
            [self._headline, self._elapsed, self._buttons],
            layout=widgets.Layout(align_items="center", grid_gap="8px"),
            **css("genwidgets-header"),
        )
        self._prompt = widgets.HTML(**css("genwidgets-prompt"))
        self._status = widgets.HTML(**css("genwidgets-status"))  # the part a poll changes
        self._body = widgets.HTML(**css("genwidgets-body"))
        self.children = (self._header, self._prompt, self._status, self._body)

    def _button(self, kind: str) -> widgets.Button:
        name = f"_{kind}_button"
        button = getattr(self, name)
        if button is None:
            label, icon, tip, act = {
                "cancel": ("Cancel", "stop", "Cancel this task", self.cancel),
                "retry": ("Retry", "redo", "Submit the same again", self.retry),
            }[kind]
            button = widgets.Button(
                description=label,
                icon=icon,
                tooltip=tip,
                layout=widgets.Layout(width="auto"),
                **css(f"genwidgets-{kind}"),
            )
            button.on_click(lambda _button: act())
            setattr(self, name, button)
        return button

    # ------------------------------------------------------------------ the live handle
    @property
    def card_state(self) -> CardState:
        """The card's state: one immutable value (see `genwidgets.widgets._state`)."""
        return self._state

    @property
    def task(self) -> Task | None:
        """The latest snapshot (None while submitting, or if the submit was refused)."""
        return self._state.task

    @property
    def state(self) -> str:
        """'submitting', 'waiting', a task status ('running', 'succeeded', ...) or 'error'."""
        return self._state.phase

    @property
    def status(self) -> Status | str:
        """The task's `Status` (a str enum: `card.status == "succeeded"`); before there is a
        task, or after the client failed, the phase ('submitting', 'waiting', 'error')."""
        return self._state.status

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The task's outputs; each has its local `path` once downloaded."""
        return self._state.outputs

    @property
    def error(self) -> str | None:
        """The client-side error shown on the card (the task's own error is `task.error`)."""
        return self._state.error

    @property
    def elapsed(self) -> float:
        """Seconds since this attempt started (frozen when it ended)."""
        return self._state.elapsed(time.monotonic())

    @property
    def settled(self) -> bool:
        """True when nothing is being followed: the task ended (and was shown), or never was."""
        return not self._live

    @property
    def can_cancel(self) -> bool:
        task, client = self._state.task, self._client
        if task is None:
            return self._live and self._state.phase in ("submitting", "waiting")
        if task.done or client is None:
            return False
        try:
            return bool(client.can_cancel(task))
        except Exception:
            return False

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(card)` when the card's phase changes and when it settles."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def __await__(self) -> Generator[Any, None, Task]:
        """`await card`: the final Task; raises the client's error if there never was one."""
        return self._final().__await__()

    async def _final(self) -> Task:
        task = await self.wait()
        if task is None:
            if self._exception is not None:
                raise self._exception
            raise RuntimeError(f"no task: the card ended {self.state} ({self.error or ''})")
        return task

    def __repr__(self) -> str:
        state = self._state
        parts = [f"<StatusCard {state.name or '?'} {state.phase}"]
        parts.append(render.format_seconds(state.elapsed(time.monotonic())))
        if state.task is not None:
            parts.append(f"id={state.task.id!r} outputs={len(state.task.outputs)}")
        paths = [o.path for o in state.outputs if o.path is not None]
        if paths:
            parts.append("path=" + render.display_path(paths[0], self._cache_root()))
        if state.error:
            parts.append(f"error={state.error!r}")
        return " ".join(parts) + ">"

    # ------------------------------------------------------------------ rendering
    def set_task(self, task: Task) -> None:
        """Apply one snapshot: only changed traits are sent, each widget in one message."""
        self._apply(self._state.snapshot(task, time.monotonic()))

    def _apply(self, new: CardState) -> None:
        if new is not self._state:
            old, self._state = self._state, new
            self._render(old)

    def _render(self, old: CardState | None) -> None:
        state = self._state
        if not self._view_closed:
            with self.hold_sync():
                assign(self._headline, value=render.headline_html(state.phase, state.name))
                self.tick(time.monotonic())
                assign(self._prompt, value=render.card_prompt_html(state.prompt))
                assign(self._status, value=render.card_status_html(state))
                # A card shown on its own is replaced by its static form when it ends: its
                # widgets never need the media (they would cross the comm for nothing).
                media = "" if self._goes_static() else self._media
                root = self._cache_root()
                body = render.card_body_html(state, media=media, cache_root=root)
                assign(self._body, value=body)
                assign(self._buttons, children=self._button_row())
        if state.live and self._live and not self._view_closed:
            TICKER.add(self)
        else:
            TICKER.discard(self)
        if old is not None and (old.phase, old.task is None) != (state.phase, state.task is None):
            self.refresh_display()  # the saved form follows the phase (and the task id)
        if self._notified != state.phase:
            self._notified = state.phase
            self._notify()

    def _goes_static(self) -> bool:
        """Shown on its own (not in a gallery or form): its output becomes static at the end."""
        return self._display_id is not None and not self._listeners and static_swap_allowed()

    def tick(self, now: float) -> None:
        """Refresh the elapsed time (the shared ticker calls it about once a second)."""
        if not self._view_closed:
            assign(self._elapsed, value=render.format_seconds(self._state.elapsed(now)))

    def _button_row(self) -> tuple[widgets.Button, ...]:
        row = []
        if self.can_cancel:
            cancel = self._button("cancel")
            asked = self._state.cancel_requested
            assign(cancel, disabled=asked, description="Cancelling…" if asked else "Cancel")
            row.append(cancel)
        if self._can_retry():
            row.append(self._button("retry"))
        return tuple(row)

    def _can_retry(self) -> bool:
        if self._client is None or self._request is None or self._live:
            return False
        return self._state.phase in ("failed", "cancelled", "expired", "error") or bool(
            self._state.error
        )

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:  # a listener must not break the card
                log.debug("card listener failed", exc_info=True)

    def _cache_root(self) -> Path | None:
        cache = getattr(self._client, "cache", None)
        root = getattr(cache, "root", None)
        if root is None:
            from .._cache import default_cache_dir

            return default_cache_dir()
        return Path(root)

    # ------------------------------------------------------------------ closing
    def _close_view(self) -> None:
        """Close every widget of the card; the handle keeps its state and its static form."""
        if self._view_closed:
            return
        self._view_closed = True
        TICKER.discard(self)
        parts = (self._header, self._prompt, self._status, self._body)
        for part in (*parts, self._cancel_button, self._retry_button):
            if part is not None:
                close_tree(part)
        layout = self.layout
        widgets.VBox.close(self)
        layout.close()
        self.__dict__.pop("_repr_mimebundle_", None)  # Widget.close() shadows ours with None

    def _reopen(self) -> None:
        """New widgets for a card whose view was closed when its task ended (a retry)."""
        self._view_closed = False
        self.layout = _card_layout()
        self._build_view()
        self.open()
        self._render(None)

    def close(self) -> None:
        """Stop following (the task itself keeps running) and close every widget of the card."""
        if self._closed:
            return
        final = None if self._display_id is None or self._view_closed else self._final_bundle()
        self._closed = True
        self._stop_jobs()
        self._listeners.clear()
        self._close_view()
        if final is not None:
            self._publish(final)  # a shown card leaves its static summary behind

    # ------------------------------------------------------------------ static form
    def _static_html(self) -> str:
        cached = self._static
        if cached is not None and cached[0] is self._state and self._state.terminal:
            return cached[1]
        text = render.card_html(
            self._state, time.monotonic(), media=self._media, cache_root=self._cache_root()
        )
        self._static = (self._state, text)
        return text

    def _static_text(self) -> str:
        return render.summary_text(self._state, time.monotonic(), self._cache_root())


def show(model: str, /, *, client: TaskClient | None = None, **params: Any) -> StatusCard:
    """Submit, show a live card at once, and return it (the notebook stays usable).

        rose = genwidgets.show("local:image", prompt="a red rose", seed=3)
        rose.status, rose.outputs          # always current
        task = await rose                  # later, if a cell needs the result

    Bad parameters, an unknown model or a missing key raise here (`InvalidParams`,
    `ConfigError`) and nothing is sent or shown; errors after that appear on the card.
    """
    if client is None:
        from .._client import get_client

        client = get_client()
    client.validate(model, **params)
    card = StatusCard.submit(client, model, **params)
    card.display()
    return card


def resume(*, client: TaskClient | None = None) -> list[StatusCard]:
    """After a kernel restart: a live card for every task the journal holds as unfinished
    (still running at its provider, or succeeded but not yet downloaded), followed to the end.

        cards = genwidgets.resume()
    """
    if client is None:
        from .._client import get_client

        client = get_client()
    cards = []
    for task in client.resume():  # type: ignore[attr-defined]
        card = StatusCard(task, client=client)
        card.track(client, task)
        card.display()
        cards.append(card)
    return cards
