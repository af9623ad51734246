"""`Gallery` and `explore`: a grid of live cards over models x prompts x seeds.

    gallery = explore(["local:image", "segmind:seedream-4.5"], ["a red rose", "a blue car"],
                      seeds=[1, 2, 3])
    gallery                      # shows at once; every card updates on its own
    await gallery.wait()         # in a notebook cell, before asserting on gallery.tasks

Every request is validated before anything is sent, so a typo in one parameter costs nothing.
Above `confirm_above` paid tasks (default 20; `local` and replayed tasks are free) the gallery
first shows what it is about to submit, with an estimated cost when prices are configured, and
submits nothing until "Submit" is clicked (or `gallery.confirm()`; `explore(..., yes=True)` skips
the question). The header sums the costs the providers report.
Cards dropped with `remove`/`clear` are closed: ipywidgets keeps every widget alive in a global
registry until then.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as widgets

from .._cost import CostPlan, cost_summary
from .._exceptions import ConfirmationRequired
from .._models import Task
from . import _render as render
from ._card import StaticDisplay, StatusCard, TaskClient, assign, close_tree, css
from ._display import static_swap_allowed
from ._static_grid import static_grid_html

__all__ = ["Gallery", "explore"]

_ORDER = (
    "submitting",
    "waiting",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "error",
)


class Gallery(StaticDisplay, widgets.VBox):
    """A grid of `StatusCard`s with a header counting them per state and a "Cancel all" button."""

    def __init__(
        self,
        cards: Iterable[StatusCard] = (),
        *,
        client: TaskClient | None = None,
        columns: int = 3,
        pending: Sequence[tuple[str, dict[str, Any]]] = (),
        plan: CostPlan | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("_dom_classes", ("genwidgets-gallery",))
        super().__init__(**kwargs)
        self.client = client
        self.columns = max(1, int(columns))
        self.plan = plan
        self._cards: list[StatusCard] = []
        self._closed = False
        self._frozen = False  # finished and shown: static snapshot published, widgets closed
        self._pending = list(pending)  # requests held until the user confirms
        self._decision: str | None = None
        self._summary = widgets.HTML(**css("genwidgets-gallery-summary"))
        self._cancel_all_button = widgets.Button(
            description="Cancel all",
            icon="stop",
            tooltip="Cancel every running task",
            **css("genwidgets-cancel-all"),
        )
        self._cancel_all_button.on_click(lambda _button: self.cancel_all())
        self._header = widgets.HBox(
            [self._summary, self._cancel_all_button],
            layout=widgets.Layout(align_items="center", grid_gap="12px"),
            **css("genwidgets-gallery-header"),
        )
        self._grid = widgets.GridBox(
            layout=widgets.Layout(
                grid_template_columns=f"repeat({self.columns}, minmax(0, 1fr))",
                grid_gap="8px",
                width="100%",
            ),
            **css("genwidgets-grid"),
        )
        self.children = (self._header, self._grid)
        self._confirm_box: widgets.VBox | None = None
        if self._pending:
            self.children = (self._header, self._make_confirm_box(), self._grid)
        self.add(*cards)

    # ------------------------------------------------------------------ confirmation
    def _make_confirm_box(self) -> widgets.VBox:
        plan = self.plan
        what = plan.describe() if plan is not None else f"{len(self._pending)} tasks"
        limit = f" (more than {plan.confirm_above})" if plan is not None else ""
        message = widgets.HTML(
            value=f"<b>About to submit {render.esc(what)}</b>{render.esc(limit)}. "
            "Nothing has been sent yet.",
            **css("genwidgets-confirm-text"),
        )
        submit = widgets.Button(
            description=f"Submit {len(self._pending)} tasks",
            button_style="warning",
            icon="play",
            **css("genwidgets-confirm-submit"),
        )
        decline = widgets.Button(description="Don't submit", **css("genwidgets-confirm-cancel"))
        submit.on_click(lambda _button: self.confirm())
        decline.on_click(lambda _button: self.decline())
        self._confirm_box = widgets.VBox(
            [message, widgets.HBox([submit, decline])], **css("genwidgets-confirm")
        )
        return self._confirm_box

    @property
    def awaiting_confirmation(self) -> bool:
        return bool(self._pending) and self._decision is None

    def confirm(self) -> None:
        """Submit the held requests (what the "Submit" button does)."""
        if not self.awaiting_confirmation:
            return
        self._decision = "confirmed"
        requests, self._pending = self._pending, []
        self._drop_confirm_box()
        self.add(*(StatusCard.submit(self.client, model, **params) for model, params in requests))

    def decline(self) -> None:
        """Submit nothing (what the "Don't submit" button does)."""
        if not self.awaiting_confirmation:
            return
        self._decision = "declined"
        self._pending = []
        self._drop_confirm_box()
        self._update_header()
        self.refresh_display()

    def _drop_confirm_box(self) -> None:
        box, self._confirm_box = self._confirm_box, None
        self.children = (self._header, self._grid)
        if box is not None:
            close_tree(box)

    # ------------------------------------------------------------------ content
    @property
    def cards(self) -> tuple[StatusCard, ...]:
        return tuple(self._cards)

    @property
    def tasks(self) -> list[Task]:
        """The current snapshot of every card that has a task (in grid order)."""
        return [card.task for card in self._cards if card.task is not None]

    def counts(self) -> dict[str, int]:
        """Cards per state ('running', 'succeeded', ..., 'submitting', 'error')."""
        return dict(Counter(card.state for card in self._cards))

    def add(self, *cards: StatusCard) -> None:
        if self._frozen:
            raise RuntimeError("this gallery finished and froze into its snapshot: make a new one")
        for card in cards:
            if card in self._cards:
                continue
            self._cards.append(card)
            card.add_listener(self._on_card)
        assign(self._grid, children=tuple(self._cards))
        self._update_header()

    def remove(self, card: StatusCard) -> None:
        """Drop one card and close it (its task keeps running at the provider)."""
        if card in self._cards:
            self._cards.remove(card)
            assign(self._grid, children=tuple(self._cards))
            card.close()
            self._update_header()

    def clear(self) -> None:
        """Drop and close every card (their tasks keep running; use `cancel_all` first to stop
        them)."""
        cards, self._cards = self._cards, []
        assign(self._grid, children=())
        for card in cards:
            card.close()
        self._update_header()
        self.refresh_display()

    def cancel_all(self) -> list[asyncio.Task[None]]:
        """Cancel every live task that can be cancelled (cards still submitting cancel as soon
        as their submit returns)."""
        jobs = []
        for card in self._cards:
            job = card.cancel()
            if job is not None:
                jobs.append(job)
        return jobs

    async def wait(self, timeout: float | None = None) -> list[Task]:
        """Wait until every card has settled; returns `tasks`. The tasks keep running if the
        timeout expires (asyncio.TimeoutError).

        Raises `ConfirmationRequired` while the gallery waits for "Submit": a cell awaiting here
        would keep the kernel from ever receiving the click."""
        if self.awaiting_confirmation:
            raise ConfirmationRequired(
                f"The gallery holds {len(self._pending)} paid tasks until you click Submit (or "
                "call gallery.confirm(); explore(..., yes=True) skips the question)"
            )
        waiting = asyncio.gather(*(card.wait() for card in list(self._cards)))
        if timeout is None:
            await waiting
        else:
            await asyncio.wait_for(waiting, timeout)
        self.refresh_display()  # from the awaiting cell, which nbclient listens to
        return self.tasks

    # ------------------------------------------------------------------ header
    def _on_card(self, card: StatusCard) -> None:
        self._update_header()
        if card.settled and all(c.settled for c in self._cards):
            self._finish()

    def display(self) -> None:
        super().display()
        self._finish()  # replayed from the journal: everything may have settled already

    def _finish(self) -> None:
        """Once every card has settled, replace the shown gallery with its static snapshot and
        close its widgets (tasks, counts and the snapshot stay): a saved notebook then shows the
        results in JupyterLab without a kernel, where a widget view reads "model not found".

        Not under Voilà, which never applies an update to an output it already rendered: there
        the live gallery stays. Nor before the gallery is shown (a later display shows it live)."""
        if self._closed or self._frozen or self._display_id is None:
            return
        if self.awaiting_confirmation or not self._cards:
            return
        if not all(card.settled for card in self._cards) or not static_swap_allowed():
            self.refresh_display()
            return
        final = self._final_bundle()
        self._frozen = True
        self._close_widgets(final)

    def _summary_html(self) -> str:
        counts = self.counts()
        total = len(self._cards)
        parts = [
            f'<span style="color:{render.STATE_COLORS.get(state, "#555")}">'
            f"{counts[state]} {render.esc(state)}</span>"
            for state in _ORDER
            if counts.get(state)
        ]
        noun = "task" if total == 1 else "tasks"
        text = f"<b>{total} {noun}</b>" + (": " + " · ".join(parts) if parts else "")
        tasks = self.tasks
        if any(t.provider != "local" and not t.replayed for t in tasks):
            text += f' <span class="genwidgets-cost">— {render.esc(cost_summary(tasks))}</span>'
        if self._decision == "declined":
            text += " — not submitted (declined)"
        return text

    def _update_header(self) -> None:
        if self._closed:
            return
        assign(self._summary, value=self._summary_html())
        live = any(
            card.can_cancel or card.state in ("submitting", "waiting") for card in self._cards
        )
        assign(self._cancel_all_button, disabled=not live)

    # ------------------------------------------------------------------ static fallback
    def _static_html(self) -> str:
        cells = [card._static_html() for card in self._cards]
        live = self.awaiting_confirmation or not all(card.settled for card in self._cards)
        footer = (
            "genwidgets gallery: live updates and Cancel all need a running kernel"
            if live
            else "static snapshot of a genwidgets gallery"
        )
        return static_grid_html(
            cells, header=self._summary_html(), footer=footer, max_columns=self.columns
        )

    def _static_text(self) -> str:
        counts = self.counts()
        detail = ", ".join(f"{counts[s]} {s}" for s in _ORDER if counts.get(s))
        return f"<Gallery of {len(self._cards)} tasks{': ' + detail if detail else ''}>"

    def __repr__(self) -> str:
        return self._static_text()

    def close(self) -> None:
        """Stop following every card and close every widget; a shown gallery leaves its static
        snapshot in the output."""
        if self._closed:
            return
        final = self._final_bundle() if self._display_id is not None else None
        cards, self._cards = self._cards, []
        if not self._frozen:
            self._close_widgets(final, cards)
        self._closed = True

    def _close_widgets(
        self, final: dict[str, Any] | None, cards: Sequence[StatusCard] | None = None
    ) -> None:
        for card in self._cards if cards is None else cards:
            card.close()
        for widget in (self._header, self._grid):
            close_tree(widget)
        layout = self.layout
        widgets.VBox.close(self)
        layout.close()
        self._publish(final)  # the output keeps the static snapshot of what was shown


def _as_list(value: Any, kind: type | tuple[type, ...]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, kind):
        return [value]
    return list(value)


def explore(
    models: str | Sequence[str],
    prompts: str | Sequence[str],
    seeds: int | Sequence[int] | None = None,
    *,
    client: TaskClient | None = None,
    columns: int | None = None,
    yes: bool = False,
    **params: Any,
) -> Gallery:
    """Submit every combination of `models` x `prompts` x `seeds` and return a live `Gallery`.

    `params` go to every request. All requests are validated first: an invalid one raises
    (`InvalidParams`, `ConfigError`) and nothing is sent. With no seeds each model x prompt is
    submitted once, with the provider's own seed.

    Paid work is checked before it is sent: a grid that cannot fit the session's caps raises
    `SpendCapExceeded`; one of more than `confirm_above` paid tasks (default 20) waits for the
    gallery's "Submit" button unless `yes=True`.
    """
    model_list = _as_list(models, str)
    prompt_list = _as_list(prompts, str)
    seed_list: list[int | None] = _as_list(seeds, int) if seeds is not None else [None]
    if not model_list or not prompt_list or not seed_list:
        raise ValueError("explore() needs at least one model, one prompt and one seed")
    if client is None:
        from .._client import get_client

        client = get_client()
    requests: list[tuple[str, dict[str, Any]]] = []
    for model in model_list:
        for prompt in prompt_list:
            for seed in seed_list:
                request = {**params, "prompt": prompt}
                if seed is not None:
                    request["seed"] = seed
                requests.append((model, request))
    for model, request in requests:
        client.validate(model, **request)
    if columns is None:
        columns = min(6, len(seed_list)) if len(seed_list) > 1 else min(4, len(requests))
    plan: CostPlan | None = None
    planner = getattr(client, "plan", None)
    if planner is not None:
        plan = planner(requests)
        client.cost_guard.check(plan)  # type: ignore[attr-defined]  # fail early: caps
        if plan.needs_confirmation and not yes:
            return Gallery(client=client, columns=columns, pending=requests, plan=plan)
    cards = [StatusCard.submit(client, model, **request) for model, request in requests]
    return Gallery(cards, client=client, columns=columns, plan=plan)
