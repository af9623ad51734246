"""Following a task for a card: submit, updates, download, cancel, retry, all in asyncio tasks on
the kernel's loop. Each event becomes a new `CardState` through its pure transitions; the card's
`_apply` renders it. Kept apart from the view (`_card.py`) so each stays small."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from .._models import Status, Task
from ._base import TaskClient, Ticker, loop, running_loop
from ._media_html import join_media
from ._preview import prepare_previews
from ._state import CardState, wait_info

__all__ = ["TICKER", "Following"]

log = logging.getLogger("genwidgets.widgets")

#: Refreshes the elapsed time of every live card (one asyncio task for all of them).
TICKER = Ticker()


class Following:
    """The card's jobs (a mixin of `StatusCard`, which supplies the view methods used here)."""

    _state: CardState
    _client: TaskClient | None
    _request: tuple[str, dict[str, Any]] | None
    _exception: BaseException | None
    _withdraw: bool
    _follow_job: asyncio.Task[Task | None] | None
    _cancel_job: asyncio.Task[None] | None
    _live: bool
    _closed: bool
    _view_closed: bool
    _media: str
    _display_id: str | None
    _listeners: list[Any]
    max_inline_bytes: int

    def _apply(self, new: CardState) -> None:
        raise NotImplementedError

    def _render(self, old: CardState | None) -> None:
        raise NotImplementedError

    def _reopen(self) -> None:
        raise NotImplementedError

    def _close_view(self) -> None:
        raise NotImplementedError

    def _goes_static(self) -> bool:
        raise NotImplementedError

    # From `StaticDisplay` (after this mixin in the card's bases): _final_bundle, _publish and
    # refresh_display.

    def _notify(self) -> None:
        raise NotImplementedError

    def set_task(self, task: Task) -> None:
        raise NotImplementedError

    @property
    def can_cancel(self) -> bool:
        raise NotImplementedError

    def track(self, client: TaskClient, task: Task) -> asyncio.Task[Task | None]:
        """Follow `task` on the running loop: updates, then download, then the media.

        Returns the asyncio task (awaiting it is optional; `await card` does the same)."""
        self._stop_jobs()
        self._client = client
        self._request = (task.name, dict(task.params))
        self._exception = None
        current = self._state.task
        if current is None or (current.provider, current.id) != (task.provider, task.id):
            self._media = ""
            self._apply(CardState.following(task, time.monotonic()))
        self._live = True
        self.set_task(task)
        return self._spawn(self._follow(client, task))

    @classmethod
    def submit(cls, client: TaskClient | None, model: str, /, **params: Any) -> Any:
        """A card in the "submitting" state at once; the submit runs in a loop task.

        A refused submit (bad parameters, missing key) shows its error on the card."""
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
        self._media, self._exception = "", None
        if self._view_closed and not self._closed:
            self._reopen()
        self._live = True
        self._apply(self._state.retried(time.monotonic()))
        return self._spawn(self._submit_and_follow(self._client, model, dict(params)))

    def cancel(self) -> asyncio.Task[None] | None:
        """Ask the provider to cancel (in a loop task). While submitting, cancels right after;
        while waiting for a slot, the submit is withdrawn and nothing is sent."""
        state, client = self._state, self._client
        if state.task is None:
            job = self._follow_job
            if state.phase == "waiting" and job is not None and not job.done():
                self._withdraw = True
                job.cancel()
            elif self._live:
                self._apply(state.cancel_asked())
            return None
        if not self.can_cancel or client is None:
            return None
        if self._cancel_job is not None and not self._cancel_job.done():
            return self._cancel_job
        self._apply(state.cancel_asked())
        self._cancel_job = loop().create_task(self._do_cancel(client, state.task))
        return self._cancel_job

    async def wait(self) -> Task | None:
        """Wait until the card settles (following retries); returns the last snapshot."""
        while (job := self._follow_job) is not None and not job.done():
            await asyncio.wait({job})
        return self._state.task

    def _spawn(self, coro: Coroutine[Any, Any, Task | None]) -> asyncio.Task[Task | None]:
        self._live = True
        self._follow_job = loop().create_task(coro)
        self._render(None)
        return self._follow_job

    async def _submit_and_follow(
        self, client: TaskClient, model: str, params: dict[str, Any]
    ) -> Task | None:
        try:
            task = await client.submit(model, on_wait=self._waiting, **params)
        except asyncio.CancelledError:
            if not self._withdraw:
                raise
            self._withdraw = False
            self._apply(self._state.withdrawn(time.monotonic()))
            self._settle()
            return None
        except Exception as exc:
            self._fail(exc)
            self._settle()
            return None
        self.set_task(task)
        if self._state.cancel_requested:
            self.cancel()
        return await self._follow(client, task)

    def _waiting(self, notice: Any, *_args: Any) -> None:
        """The client holds the submit (budget full): say why and until when, on the card."""
        if not self._closed:
            self._apply(self._state.waiting(wait_info(notice, time.monotonic())))

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
            final = self._state.task
            if final is not None and final.status is Status.SUCCEEDED:
                self._apply(self._state.fetching())
                downloaded = await client.download(final)
                previews = await asyncio.to_thread(
                    prepare_previews, downloaded.outputs, self.max_inline_bytes
                )
                self._media = await asyncio.to_thread(join_media, previews)
                self._apply(self._state.shown(downloaded, previews))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        self._settle()
        return self._state.task

    def _fail(self, exc: BaseException) -> None:
        log.debug("card error", exc_info=exc)
        self._exception = exc
        self._apply(self._state.failed(f"{type(exc).__name__}: {exc}", time.monotonic()))

    def _settle(self) -> None:
        """The follow job ends: the output becomes the static card, and a card shown on its own
        closes its widgets (a container's cards keep theirs)."""
        self._live = False
        TICKER.discard(self)
        if self._state.terminal and self._goes_static():
            final = self._final_bundle()
            self._close_view()
            self._publish(final)
        else:
            self._render(None)
            self.refresh_display()
        self._notify()

    async def _do_cancel(self, client: TaskClient, task: Task) -> None:
        try:
            snapshot = await client.cancel(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("cancel failed", exc_info=exc)
            self._apply(self._state.cancel_done(f"Cancel failed: {type(exc).__name__}: {exc}"))
            return
        state = self._state.cancel_done()
        current = state.task
        same = current is not None and (current.provider, current.id) == (
            snapshot.provider,
            snapshot.id,
        )
        if same:
            state = state.snapshot(snapshot, time.monotonic())
        self._apply(state)

    def _stop_jobs(self) -> None:
        me = asyncio.current_task() if running_loop() else None
        for job in (self._follow_job, self._cancel_job):
            if job is not None and not job.done() and job is not me:
                job.cancel()
        self._cancel_job = None
        self._live = False
        TICKER.discard(self)
