"""`StatusCard`: a live view of one task, updated by an asyncio task on the kernel's own loop.

The card never does HTTP: it consumes `client.updates(task)`, asks `client.download(task)` for the
files and shows them. Each snapshot is applied with `hold_sync()`, changing only the traits whose
value changed, so a poll that changes nothing sends nothing to the browser. Updates come from an
asyncio task made with `loop.create_task` (never a thread, never `with output:` from a task:
ipywidgets #2358/#3993 put such output in the wrong cell); errors in that task are shown on the
card, never printed or lost.

The card displays with a display id: a bundle of the widget view plus a static `text/html`
summary, replaced by `update_display` when the task ends, so a saved notebook shows the finished
media on GitHub, nbviewer or `nbconvert --to html`, where no widget JavaScript runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from functools import cached_property
from typing import Any, Protocol

import ipywidgets as widgets

from .._models import Status, Task, utcnow
from ..providers import ModelInfo
from . import _render as render

__all__ = ["StatusCard", "TaskClient", "assign", "close_tree", "css", "show"]

log = logging.getLogger("genwidgets.widgets")

Listener = Callable[["StatusCard"], None]


class TaskClient(Protocol):
    """What the widgets need from a client (`genwidgets.AsyncClient` offers it)."""

    async def submit(
        self, model: str, *, on_wait: Callable[[str], None] | None = None, **params: Any
    ) -> Task: ...

    def updates(self, task: Task) -> AsyncIterator[Task]: ...

    async def cancel(self, task: Task) -> Task: ...

    async def download(self, task: Task) -> Task: ...

    def can_cancel(self, task: Task) -> bool: ...

    def validate(self, model: str, **params: Any) -> dict[str, Any]: ...

    def available_models(self) -> dict[str, list[ModelInfo]]: ...

    def model_info(self, model: str) -> ModelInfo | None: ...


# ---------------------------------------------------------------------------------- helpers
def assign(widget: widgets.Widget, **values: Any) -> bool:
    """Set only the traits whose value differs, in one message; True if anything changed."""
    changes = {k: v for k, v in values.items() if getattr(widget, k) != v}
    if not changes:
        return False
    with widget.hold_sync():
        for key, value in changes.items():
            setattr(widget, key, value)
    return True


def _owned(widget: widgets.Widget) -> Iterator[widgets.Widget]:
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
        for child in list(_owned(widget)):
            visit(child)
        widget.close()

    visit(root)


def css(*classes: str) -> dict[str, Any]:
    """Constructor kwargs giving a widget its classes (hooks for browser tests and styling)."""
    return {"_dom_classes": classes}


def _loop() -> asyncio.AbstractEventLoop:
    """The kernel's running loop; outside one, the loop `genwidgets.get_client()` uses."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from .._runner import LoopRunner

        return LoopRunner.shared().loop


def _shell_active() -> bool:
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    return InteractiveShell.initialized()


class StaticDisplay:
    """Display as widget view + static HTML under a display id, and update that display.

    `update_display` is routed by display id, not by the message's parent, so it may be called
    from a background asyncio task long after the cell returned: the front end (and nbclient)
    replace every output carrying the id, and the saved notebook keeps the final HTML.
    """

    _display_id: str | None = None

    def _static_html(self) -> str:
        raise NotImplementedError

    def _static_text(self) -> str:
        raise NotImplementedError

    def mimebundle(self) -> dict[str, Any]:
        """The bundle shown now: the widget view (while open), `text/html` and `text/plain`."""
        model_id = self.model_id if getattr(self, "comm", None) is not None else None  # type: ignore[attr-defined]
        return render.fallback_bundle(self._static_html(), self._static_text(), model_id)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        return self.mimebundle()

    def _ipython_display_(self) -> None:
        # A bare `card` at the end of a cell and `display(card)` both come here, so both get the
        # display id that lets the static fallback be replaced when the task ends.
        self.display()

    def display(self) -> None:
        """Show it in the notebook (with a display id, for the static fallback's update)."""
        if not _shell_active():
            print(self._static_text())
            return
        from IPython.display import display

        if self._display_id is None:
            self._display_id = f"genwidgets-{uuid.uuid4().hex}"
        display(self.mimebundle(), raw=True, display_id=self._display_id)

    def refresh_display(self) -> None:
        """Replace every output of this object with its current bundle (no-op if not shown)."""
        self._publish(None)

    def _final_bundle(self) -> dict[str, Any]:
        """The static bundle (no widget view), taken before closing the widgets it describes."""
        return render.fallback_bundle(self._static_html(), self._static_text(), None)

    def _publish(self, bundle: dict[str, Any] | None) -> None:
        if self._display_id is None or not _shell_active():
            return
        from IPython.display import update_display

        try:
            data = bundle if bundle is not None else self.mimebundle()
            update_display(data, raw=True, display_id=self._display_id)
        except Exception:  # a display problem must not break the task that triggered it
            log.debug("update_display failed", exc_info=True)


# ---------------------------------------------------------------------------------- the card
class StatusCard(StaticDisplay, widgets.VBox):
    """A live card for one generation task: status, prompt, elapsed time, progress, logs, the
    finished media, Cancel and Retry.

        card = StatusCard.submit(client, "local:image", prompt="a red rose", seed=3)
        card                      # shows at once, in the "submitting" state

        card = StatusCard(task); card.track(client, task); card.display()

    States: "submitting" (no task yet), "waiting" (the provider account's budget is full: the
    submit waits locally for a slot instead of drawing 429s), the task statuses, and "error" (the
    client raised: the submit was refused or the card lost track of the task; the error text says
    which).
    """

    #: seconds between elapsed-time updates while the task is live
    tick_seconds: float = 1.0

    def __init__(
        self,
        task: Task | None = None,
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        client: TaskClient | None = None,
        max_inline_bytes: int = render.MAX_INLINE_BYTES,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "layout",
            widgets.Layout(border="1px solid #ddd", padding="6px", margin="2px", overflow="hidden"),
        )
        kwargs.setdefault("_dom_classes", ("genwidgets-card",))
        super().__init__(**kwargs)
        self.max_inline_bytes = max_inline_bytes
        self._client: TaskClient | None = client
        self._current: Task | None = None
        self._phase = "submitting"
        self._title_text = model or (task.name if task is not None else None)
        self._request: tuple[str, dict[str, Any]] | None = None
        if model is not None:
            self._request = (model, dict(params or {}))
        elif task is not None:
            self._request = (task.name, dict(task.params))
        prompt = (params or {}).get("prompt")
        self._prompt_text: str | None = prompt if isinstance(prompt, str) else None
        self._client_error: str | None = None
        self._wait_text = ""  # why the submit is waiting ("waiting for a slot: 30 of 30 ...")
        self._withdrawn = False  # cancelled while waiting: the submit was never sent
        self._follow_job: asyncio.Task[Task | None] | None = None
        self._tick_job: asyncio.Task[None] | None = None
        self._cancel_job: asyncio.Task[None] | None = None
        self._cancel_requested = False
        self._live = False
        self._closed = False
        self._clock = time.monotonic()
        self._frozen: float | None = None
        self._previews: list[render.MediaPreview] = []
        self._media_parts: list[widgets.Widget] = []
        self._listeners: list[Listener] = []
        self._notified_phase: str | None = None

        # Classes are given at construction (in the comm-open state), not with add_class()
        # afterwards, which would cost one extra message per part. Parts that many cards never
        # need (logs, error, buttons, progress, media) are made on first use: a gallery of a
        # hundred cards opens far fewer comms.
        self._headline = widgets.HTML(**css("genwidgets-headline"))
        self._elapsed = widgets.Label(**css("genwidgets-elapsed"))
        self._header = widgets.HBox(
            [self._headline, self._elapsed],
            layout=widgets.Layout(align_items="center", grid_gap="8px"),
            **css("genwidgets-header"),
        )
        self._prompt = widgets.HTML(**css("genwidgets-prompt"))
        if task is not None:
            self.set_task(task)
        else:
            self._refresh()

    # ------------------------------------------------------------------ parts made on first use
    @cached_property
    def _queue(self) -> widgets.Label:
        return widgets.Label(**css("genwidgets-queue"))

    @cached_property
    def _progress(self) -> widgets.FloatProgress:
        return widgets.FloatProgress(
            min=0.0, max=1.0, layout=widgets.Layout(width="60%"), **css("genwidgets-progress")
        )

    @cached_property
    def _status_row(self) -> widgets.HBox:
        return widgets.HBox(**css("genwidgets-status-row"))

    @cached_property
    def _error(self) -> widgets.HTML:
        return widgets.HTML(**css("genwidgets-error"))

    @cached_property
    def _note(self) -> widgets.HTML:
        return widgets.HTML(**css("genwidgets-media-note"))

    @cached_property
    def _media(self) -> widgets.VBox:
        return widgets.VBox(**css("genwidgets-media"))

    @cached_property
    def _details(self) -> widgets.HTML:
        return widgets.HTML(**css("genwidgets-details"))

    @cached_property
    def _log_view(self) -> widgets.HTML:
        return widgets.HTML(**css("genwidgets-log-text"))

    @cached_property
    def _logs(self) -> widgets.Accordion:
        return widgets.Accordion(
            children=[self._log_view],
            titles=("Logs",),
            selected_index=None,  # collapsed
            **css("genwidgets-logs"),
        )

    @cached_property
    def _cancel_button(self) -> widgets.Button:
        button = widgets.Button(
            description="Cancel",
            icon="stop",
            tooltip="Cancel this task",
            **css("genwidgets-cancel"),
        )
        button.on_click(lambda _button: self.cancel())
        return button

    @cached_property
    def _retry_button(self) -> widgets.Button:
        button = widgets.Button(
            description="Retry",
            icon="redo",
            tooltip="Submit the same again",
            **css("genwidgets-retry"),
        )
        button.on_click(lambda _button: self.retry())
        return button

    @cached_property
    def _buttons(self) -> widgets.HBox:
        return widgets.HBox(**css("genwidgets-buttons"))

    def _made(self, name: str) -> Any:
        """The part `name` if it was made already, else None (without making it)."""
        return self.__dict__.get(name)

    # ------------------------------------------------------------------ public state
    @property
    def task(self) -> Task | None:
        """The latest snapshot (None while submitting, or if the submit was refused)."""
        return self._current

    @property
    def state(self) -> str:
        """'submitting', a task status ('running', 'succeeded', ...) or 'error'."""
        return self._phase

    @property
    def error(self) -> str | None:
        """The client-side error shown on the card (the task's own error is `task.error`)."""
        return self._client_error

    @property
    def settled(self) -> bool:
        """True when nothing is being followed: the task ended (and was shown), or never was."""
        return not self._live

    @property
    def can_cancel(self) -> bool:
        task, client = self._current, self._client
        if task is None and self._phase == "waiting":
            return True  # withdrawing a submit that has not gone out costs nothing
        if task is None or task.done or client is None:
            return False
        try:
            return bool(client.can_cancel(task))
        except Exception:
            return False

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(card)` when the card's state changes and when it settles."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # ------------------------------------------------------------------ applying snapshots
    def set_task(self, task: Task) -> None:
        """Apply one snapshot: only changed traits are sent, each widget in one message."""
        current = self._current
        if current is not None and (current.provider, current.id) == (task.provider, task.id):
            if current.done and not task.done:
                return  # a poll answered before the cancel landed: the end already happened
        elif current is not None:
            self._clear_result()
        self._current = task
        self._title_text = task.name
        if task.prompt is not None:
            self._prompt_text = task.prompt
        self._phase = task.status.value
        if task.done:
            self._freeze(task)
            self._stop_ticker()
        self._refresh()

    def _freeze(self, task: Task | None = None) -> None:
        if self._frozen is None:
            elapsed = task.elapsed if task is not None else None
            self._frozen = elapsed if elapsed is not None else self._elapsed_seconds()

    def _elapsed_seconds(self) -> float:
        if self._frozen is not None:
            return self._frozen
        task = self._current
        if task is not None and task.created_at is not None:
            since = (utcnow() - task.created_at).total_seconds()
            if 0 <= since < 7 * 86400:  # else the server's clock disagrees with ours
                return since
        return time.monotonic() - self._clock

    def _update_elapsed(self) -> None:
        assign(self._elapsed, value=render.format_seconds(self._elapsed_seconds()))

    def _refresh(self) -> None:
        if self._closed:
            return
        task = self._current
        terminal = self._phase in render.TERMINAL_STATES
        status_text = render.progress_text(task) if task is not None else self._wait_text
        progress = task.progress if task is not None and not task.done else None
        logs = task.logs if task is not None else ()
        error = render.error_html(task.error if task else None, self._client_error)
        with self.hold_sync():
            assign(
                self._headline,
                value=render.headline_html(
                    self._phase, self._title_text, task.id if task is not None else None
                ),
            )
            assign(self._prompt, value=render.prompt_html(self._prompt_text))
            self._update_elapsed()
            if status_text or self._made("_queue"):
                assign(self._queue, value=status_text)
            if progress is not None:
                assign(self._progress, value=round(progress, 2))
            if error or self._made("_error"):
                assign(self._error, value=error)
            if logs:
                assign(self._log_view, value=render.logs_html(logs))
                assign(self._logs, titles=(f"Logs ({len(logs)})",))
            done = task is not None and task.done and terminal
            if done:
                assign(self._details, value=render.details_html(task, self._previews))
            buttons = []
            if self.can_cancel:
                buttons.append(self._cancel_button)
            if self._can_retry():
                buttons.append(self._retry_button)
            if buttons or self._made("_buttons"):
                assign(self._buttons, children=tuple(buttons))
            row = [self._queue] if status_text else []
            if progress is not None:
                row.append(self._progress)
            if row or self._made("_status_row"):
                assign(self._status_row, children=tuple(row))
            media = self._made("_media")
            children: list[widgets.Widget] = [self._header]
            if self._prompt_text:
                children.append(self._prompt)
            if row:
                children.append(self._status_row)
            if error:
                children.append(self._error)
            if media is not None and media.children:
                children.append(media)
            if done:
                children.append(self._details)
            if logs:
                children.append(self._logs)
            if buttons:
                children.append(self._buttons)
            assign(self, children=tuple(children))
        if self._phase != self._notified_phase:
            self._notified_phase = self._phase
            self._notify()

    def _can_retry(self) -> bool:
        if self._client is None or self._request is None:
            return False
        if self._phase in ("failed", "cancelled", "expired", "error"):
            return True
        return self._client_error is not None and not self._live

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:  # a listener must not break the card
                log.debug("card listener failed", exc_info=True)

    # ------------------------------------------------------------------ following a task
    def track(self, client: TaskClient, task: Task) -> asyncio.Task[Task | None]:
        """Follow `task` on the running loop: updates, then download, then the media.

        Returns the asyncio task (awaiting it is optional; `await card.wait()` does the same
        and also follows retries).
        """
        self._stop_jobs()
        self._client = client
        self._request = (task.name, dict(task.params))
        self._client_error = None
        self._clear_result()
        self.set_task(task)
        return self._spawn(self._follow(client, task))

    @classmethod
    def submit(cls, client: TaskClient | None, model: str, /, **params: Any) -> StatusCard:
        """A card shown at once in the "submitting" state; the submit runs in a loop task.

        A refused submit (bad parameters, missing key) shows its error on the card.
        """
        if client is None:
            from .._client import get_client

            client = get_client()
        card = cls(model=model, params=params, client=client)
        card._spawn(card._submit_and_follow(client, model, dict(params)))
        return card

    def retry(self) -> asyncio.Task[Task | None] | None:
        """Submit the same model and parameters again, and follow the new task in this card."""
        if self._client is None or self._request is None:
            return None
        model, params = self._request
        self._stop_jobs()
        self._clear_result()
        self._current = None
        self._phase = "submitting"
        self._title_text = model
        self._clock = time.monotonic()
        self._refresh()
        return self._spawn(self._submit_and_follow(self._client, model, dict(params)))

    def cancel(self) -> asyncio.Task[None] | None:
        """Ask the provider to cancel (in a loop task). While submitting, cancels right after;
        while waiting for a slot, the submit is withdrawn and nothing is sent."""
        task, client = self._current, self._client
        if task is None:
            job = self._follow_job
            if self._phase == "waiting" and job is not None and not job.done():
                self._withdrawn = True
                job.cancel()
            elif self._live:
                self._cancel_requested = True
            return None
        if not self.can_cancel or client is None:
            return None
        if self._cancel_job is not None and not self._cancel_job.done():
            return self._cancel_job
        assign(self._cancel_button, disabled=True, description="Cancelling…")
        self._cancel_job = _loop().create_task(self._do_cancel(client, task))
        return self._cancel_job

    async def wait(self) -> Task | None:
        """Wait until the card settles (following retries); returns the last snapshot.

        Also re-sends the final display from the awaiting cell: the background task's own
        `update_display` carries the parent of the cell that started it, and nbclient (so
        `nbconvert --execute`, nbval) drops messages whose parent is not the running cell.
        """
        while (job := self._follow_job) is not None and not job.done():
            await asyncio.wait({job})
        self.refresh_display()
        return self._current

    def _spawn(self, coro: Coroutine[Any, Any, Task | None]) -> asyncio.Task[Task | None]:
        loop = _loop()
        self._live = True
        self._follow_job = loop.create_task(coro)
        if self._phase not in render.TERMINAL_STATES:
            self._start_ticker(loop)
        return self._follow_job

    async def _submit_and_follow(
        self, client: TaskClient, model: str, params: dict[str, Any]
    ) -> Task | None:
        try:
            task = await client.submit(model, on_wait=self._waiting, **params)
        except asyncio.CancelledError:
            if not self._withdrawn:
                raise
            self._withdrawn = False
            self._phase = "cancelled"
            self._wait_text = "withdrawn while waiting for a slot: nothing was sent"
            self._settle()
            return None
        except Exception as exc:
            self._fail(exc)
            self._settle()
            return None
        self.set_task(task)
        if self._cancel_requested:
            self._cancel_requested = False
            self.cancel()
        return await self._follow(client, task)

    def _waiting(self, message: str) -> None:
        """The client holds the submit until the account has a slot: say so on the card."""
        if self._current is None and not self._closed:
            self._phase = "waiting"
            self._wait_text = message
            self._refresh()

    async def _follow(self, client: TaskClient, task: Task) -> Task | None:
        try:
            updates = client.updates(task)
            try:
                async for snapshot in updates:
                    self.set_task(snapshot)
            finally:
                aclose = getattr(updates, "aclose", None)
                if aclose is not None:
                    await aclose()
            final = self._current
            if final is not None and final.status is Status.SUCCEEDED:
                await self._show_result(client, final)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        self._settle()
        return self._current

    async def _show_result(self, client: TaskClient, task: Task) -> None:
        assign(self._note, value=_note_html(["downloading…"]))
        assign(self._media, children=(self._note,))
        self._refresh()
        downloaded = await client.download(task)
        self.set_task(downloaded)
        previews = await asyncio.to_thread(
            render.prepare_previews, downloaded.outputs, self.max_inline_bytes
        )
        self._show_media(previews)

    def _show_media(self, previews: list[render.MediaPreview]) -> None:
        """Create the media widgets once: their bytes travel to the browser once, in binary."""
        self._close_media()
        self._previews = list(previews)
        parts: list[widgets.Widget] = []
        for preview in previews:
            parts.extend(_media_widgets(preview))
        notes = [p.note for p in previews if p.note]
        if not previews:
            notes.append("The task succeeded but returned no output.")
        self._media_parts = parts
        assign(self._note, value=_note_html(notes))
        assign(self._media, children=tuple(parts + ([self._note] if notes else [])))
        self._refresh()

    def _fail(self, exc: BaseException) -> None:
        log.debug("card error", exc_info=exc)
        self._client_error = f"{type(exc).__name__}: {exc}"
        if self._current is None or not self._current.done:
            self._phase = "error"
            self._freeze()
        media = self._made("_media")
        if media is not None and not self._media_parts:
            assign(media, children=())  # drop the "downloading…" note
        self._refresh()

    def _settle(self) -> None:
        self._live = False
        self._stop_ticker()
        if self._phase in render.TERMINAL_STATES:
            self._freeze(self._current)
        self._refresh()
        self.refresh_display()
        self._notify()

    async def _do_cancel(self, client: TaskClient, task: Task) -> None:
        try:
            snapshot = await client.cancel(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("cancel failed", exc_info=exc)
            self._client_error = f"Cancel failed: {type(exc).__name__}: {exc}"
        else:
            current = self._current
            if current is not None and (current.provider, current.id) == (
                snapshot.provider,
                snapshot.id,
            ):
                self.set_task(snapshot)
        finally:
            if not self._closed:
                assign(self._cancel_button, disabled=False, description="Cancel")
                self._refresh()

    # ------------------------------------------------------------------ ticking
    def _start_ticker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._tick_job is None or self._tick_job.done():
            self._tick_job = loop.create_task(self._tick())

    async def _tick(self) -> None:
        while self._phase not in render.TERMINAL_STATES and not self._closed:
            await asyncio.sleep(self.tick_seconds)
            if self._phase in render.TERMINAL_STATES or self._closed:
                break
            self._update_elapsed()

    def _stop_ticker(self) -> None:
        job = self._tick_job
        self._tick_job = None
        if job is not None and not job.done() and job is not asyncio.current_task():
            job.cancel()

    def _stop_jobs(self) -> None:
        me = asyncio.current_task() if _has_running_loop() else None
        for job in (self._follow_job, self._cancel_job):
            if job is not None and not job.done() and job is not me:
                job.cancel()
        self._cancel_job = None
        self._cancel_requested = False
        self._live = False
        self._stop_ticker()

    # ------------------------------------------------------------------ clearing and closing
    def _close_media(self) -> None:
        for widget in self._media_parts:
            close_tree(widget)
        self._media_parts = []

    def _clear_result(self) -> None:
        """Forget the previous task's result (a retry, or a new task tracked in this card)."""
        self._close_media()
        self._previews = []
        self._client_error = None
        self._frozen = None
        self._clock = time.monotonic()
        if not self._closed:
            for name, values in (
                ("_media", {"children": ()}),
                ("_note", {"value": ""}),
                ("_details", {"value": ""}),
                ("_log_view", {"value": ""}),
            ):
                part = self._made(name)
                if part is not None:
                    assign(part, **values)

    def close(self) -> None:
        """Stop following (the task itself keeps running) and close every widget of the card."""
        if self._closed:
            return
        final = self._final_bundle() if self._display_id is not None else None
        self._closed = True
        self._stop_jobs()
        self._listeners.clear()
        parts = [self._header, self._prompt]
        parts += [part for name in _LAZY_PARTS if (part := self._made(name)) is not None]
        self._close_media()
        for widget in parts:
            close_tree(widget)
        layout = self.layout
        super().close()
        layout.close()
        self._publish(final)  # a shown card leaves its static summary behind

    # ------------------------------------------------------------------ static fallback
    def _static_html(self) -> str:
        return render.fallback_html(
            name=self._title_text,
            state=self._phase,
            elapsed=render.format_seconds(self._elapsed_seconds()),
            prompt=self._prompt_text,
            error=self._client_error,
            task=self._current,
            previews=self._previews,
        )

    def _static_text(self) -> str:
        task = self._current
        return render.summary_text(
            self._title_text,
            self._phase,
            elapsed=render.format_seconds(self._elapsed_seconds()),
            prompt=self._prompt_text,
            error=self._client_error or (task.error if task is not None else None),
            previews=self._previews,
        )

    def __repr__(self) -> str:
        return f"<StatusCard {self._title_text or '?'} {self._phase}>"


def show(model: str, /, *, client: TaskClient | None = None, **params: Any) -> StatusCard:
    """Submit, show a live card at once, and return it (the notebook stays usable).

        rose = genwidgets.show("local:image", prompt="a red rose", seed=3)
        task = await rose.wait()      # later, if a cell needs the result

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


_LAZY_PARTS = (
    "_queue",
    "_progress",
    "_status_row",
    "_error",
    "_note",
    "_media",
    "_details",
    "_log_view",
    "_logs",
    "_cancel_button",
    "_retry_button",
    "_buttons",
)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _note_html(notes: list[str]) -> str:
    if not notes:
        return ""
    body = "".join(f"<div>{render.esc(n)}</div>" for n in notes)
    return f'<div style="font-size:0.85em;color:#555">{body}</div>'


def _subtype(mime: str | None, default: str) -> str:
    return mime.split("/", 1)[1] if mime and "/" in mime else default


def _media_widgets(preview: render.MediaPreview) -> list[widgets.Widget]:
    """The widgets for one output, each created once with its bytes (sent once, as a binary
    buffer). Video and audio never autoplay or loop: ipywidgets defaults both to True, and a
    grid of cards would all play at once."""
    kind = preview.kind

    def fit() -> widgets.Layout:
        return widgets.Layout(max_width="100%", height="auto")

    if kind == "image" and preview.data is not None:
        return [
            widgets.Image(
                value=preview.data, format=preview.format, layout=fit(), **css("genwidgets-image")
            )
        ]
    if kind in ("image", "video") and preview.data is None and preview.poster is not None:
        return [  # too large to send: a reduced copy or the first frame, and the note says so
            widgets.Image(
                value=preview.poster,
                format=_subtype(preview.poster_mime, "png"),
                layout=fit(),
                **css("genwidgets-poster", f"genwidgets-{kind}"),
            )
        ]
    if kind == "video" and preview.data is not None:
        return [
            widgets.Video(
                value=preview.data,
                format=preview.format,
                autoplay=False,
                loop=False,
                controls=True,
                layout=fit(),
                **css("genwidgets-video"),
            )
        ]
    if kind == "audio" and preview.data is not None:
        return [
            widgets.Audio(
                value=preview.data,
                format=preview.format,
                autoplay=False,
                loop=False,
                controls=True,
                **css("genwidgets-audio"),
            )
        ]
    if preview.text is not None:
        return [
            widgets.HTML(
                value='<pre style="white-space:pre-wrap;max-height:20em;overflow:auto">'
                f"{render.esc(preview.text)}</pre>",
                **css("genwidgets-text"),
            )
        ]
    return []


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
