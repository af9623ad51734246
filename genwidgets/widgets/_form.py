"""`SubmitForm`: pick a model, write a prompt, set its parameters, submit N seeds.

The parameter fields are generated from the model's `Param` specs; models without a schema get
free `key=value` lines. Submit runs `client.validate` on every request first: bad input shows an
inline error on the form and sends nothing. Valid input adds one live card per task to a box the
form owns (traits only; no print, no Output capture from a task).

A shown form also shows its results: as each card ends it leaves the form for a static output of
its own right below (a grid of finished cards, no widget view), so a saved notebook shows every
result in JupyterLab without a kernel, where the form itself reads "model not found". Under Voilà,
which never updates an output it has rendered, the cards stay in the form.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as widgets

from .._exceptions import GenError, InvalidParams
from ..providers import ModelInfo
from . import _render as render
from ._card import StaticDisplay, StatusCard, TaskClient, assign, close_tree, css
from ._display import static_swap_allowed
from ._fields import (
    _OWN_FIELDS,
    _SEED_PLACEHOLDER,
    MAX_COUNT,
    UNSET,
    _Field,
    draw_seed,
    expand_requests,
    field_for,
    parse_extra,
    parse_seed,
)
from ._static_grid import static_grid_html

__all__ = ["UNSET", "SubmitForm", "draw_seed", "expand_requests", "parse_extra", "parse_seed"]


class _Results(StaticDisplay):
    """The form's finished cards: a static-only output of its own (no widget view), newest first."""

    def __init__(self) -> None:
        self.cards: list[StatusCard] = []

    def mimebundle(self) -> dict[str, Any]:
        return self._final_bundle()

    def _static_html(self) -> str:
        if not self.cards:
            return '<div class="genwidgets-form-results"></div>'
        count = len(self.cards)
        head = f"<b>{count} finished</b> (newest first)"
        cells = [card._static_html() + _seed_line(card) for card in self.cards]
        return f'<div class="genwidgets-form-results">{static_grid_html(cells, header=head)}</div>'

    def _static_text(self) -> str:
        return f"{len(self.cards)} finished genwidgets tasks" if self.cards else ""


def _seed_line(card: StatusCard) -> str:
    """The seed a result was made with, in sight: a blank Seed drew it, typing it back repeats."""
    task = card.task
    seed = task.params.get("seed") if task is not None else None
    if seed is None:
        return ""
    return (
        '<div class="genwidgets-seed-line" style="font-size:0.8em;color:#555;margin:0 0 4px 2px">'
        f"seed <code>{render.esc(seed)}</code> (type it in Seed to repeat this one)</div>"
    )


def _full_width() -> widgets.Layout:
    """The form's width, margins included: `width: 100%` plus the 2 px widget margins overflowed
    the form by 2 px and gave it a horizontal scrollbar; an auto width stretched by the flex
    column fits exactly."""
    return widgets.Layout(width="auto", align_self="stretch")


class SubmitForm(StaticDisplay, widgets.VBox):
    """A form that submits generation tasks and shows a live card for each, below itself."""

    def __init__(
        self,
        client: TaskClient | None = None,
        *,
        model: str | None = None,
        prompt: str = "",
        max_cards: int = 24,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("_dom_classes", ("genwidgets-form",))
        super().__init__(**kwargs)
        if client is None:
            from .._client import get_client

            client = get_client()
        self.client = client
        self.max_cards = max_cards
        self._closed = False
        self._fields: dict[str, _Field] = {}
        self._cards_list: list[StatusCard] = []  # still running (or never shown)
        self._results = _Results()
        options = [
            f"{provider}:{info.name}"
            for provider, infos in client.available_models().items()
            for info in infos
        ]
        if model is not None and model not in options:
            options.insert(0, model)  # remote catalogues are open: any name may be valid
        wide = {"description_width": "initial"}
        self._model = widgets.Dropdown(
            options=options,
            value=model or (options[0] if options else None),
            description="Model",
            style=wide,
            **css("genwidgets-model-picker"),
        )
        self._info = widgets.HTML(**css("genwidgets-model-info"))
        self._prompt = widgets.Textarea(
            value=prompt,
            placeholder="Describe what to generate",
            description="Prompt",
            rows=3,
            style=wide,
            layout=_full_width(),
            **css("genwidgets-prompt-input"),
        )
        self._params = widgets.VBox(**css("genwidgets-params"))
        self._extra = widgets.Textarea(
            placeholder="key=value, one per line (values are JSON when they parse)",
            description="Other parameters",
            rows=2,
            style=wide,
            layout=_full_width(),
            **css("genwidgets-extra"),
        )
        self._seed = widgets.Text(
            placeholder=_SEED_PLACEHOLDER,
            description="Seed",
            tooltip="blank: a fresh random seed at each Generate, shown on the card (type it "
            "here to repeat a result); tasks get seed, seed+1, ...",
            style=wide,
            **css("genwidgets-seed"),
        )
        self._count = widgets.BoundedIntText(
            value=1,
            min=1,
            max=MAX_COUNT,
            description="Count",
            tooltip="how many tasks to submit, one per seed",
            style=wide,
            **css("genwidgets-count"),
        )
        self._submit_button = widgets.Button(
            description="Generate", icon="play", **css("genwidgets-submit")
        )
        self._clear_button = widgets.Button(
            description="Clear finished", icon="trash", **css("genwidgets-clear")
        )
        self._error = widgets.HTML(**css("genwidgets-form-error"))
        self._cards = widgets.VBox(**css("genwidgets-form-cards"))
        self._row = widgets.HBox(
            [self._seed, self._count, self._submit_button, self._clear_button],
            layout=widgets.Layout(flex_flow="row wrap", grid_gap="8px"),
        )
        self._submit_button.on_click(lambda _button: self.submit())
        self._clear_button.on_click(lambda _button: self.clear())
        self._model.observe(self._on_model, "value")
        self._build_fields()
        self._layout_children()

    # ------------------------------------------------------------------ fields
    @property
    def model(self) -> str | None:
        return self._model.value

    @property
    def cards(self) -> tuple[StatusCard, ...]:
        """Every card the form made and keeps: running ones, then finished ones, newest first."""
        return tuple(self._cards_list + self._results.cards)

    @property
    def fields(self) -> dict[str, widgets.ValueWidget]:
        """The generated parameter widgets, by parameter name."""
        return {name: field.widget for name, field in self._fields.items()}

    def _info_for(self, model: str | None) -> ModelInfo | None:
        if not model:
            return None
        try:
            return self.client.model_info(model)
        except Exception:  # unknown provider: shown by validate at submit time
            return None

    def _on_model(self, _change: Any) -> None:
        self._build_fields()
        self._show_error(None)
        self._layout_children()

    def _build_fields(self) -> None:
        for field in self._fields.values():
            close_tree(field.widget)
        info = self._info_for(self._model.value)
        specs = info.params if info is not None else {}
        self._fields = {
            name: field_for(name, spec) for name, spec in specs.items() if name not in _OWN_FIELDS
        }
        assign(self._params, children=tuple(f.widget for f in self._fields.values()))
        if info is None:
            text = "No parameter list for this model: give parameters as key=value lines."
        else:
            text = f"{info.kind}" + (f": {info.description}" if info.description else "")
        assign(self._info, value=f'<span style="color:#555">{render.esc(text)}</span>')
        self._extra_shown = info is None or not info.closed

    def _layout_children(self) -> None:
        children: list[widgets.Widget] = [self._model, self._info, self._prompt]
        if self._fields:
            children.append(self._params)
        if self._extra_shown:
            children.append(self._extra)
        children.append(self._row)
        if self._error.value:
            children.append(self._error)
        children.append(self._cards)
        assign(self, children=tuple(children))

    def _show_error(self, exc: BaseException | None) -> None:
        if exc is None:
            text = ""
        else:
            message = str(exc) if isinstance(exc, GenError) else f"{type(exc).__name__}: {exc}"
            text = (
                '<div style="color:#b02a37;white-space:pre-wrap;overflow-wrap:anywhere">'
                f"{render.esc(message)}</div>"
            )
        assign(self._error, value=text)
        self._layout_children()

    # ------------------------------------------------------------------ submitting
    def requests(self, *, draw: bool = False) -> tuple[str, list[dict[str, Any]]]:
        """The model and the parameter dicts a click submits (raises `InvalidParams`).

        A blank Seed sends no seed, unless `draw` (what Generate does): then the tasks get a
        fresh random seed, see `draw_seed`."""
        model = self._model.value
        if not model:
            raise InvalidParams("Pick a model first")
        params: dict[str, Any] = {}
        prompt = self._prompt.value.strip()
        if prompt:
            params["prompt"] = prompt
        for name, field in self._fields.items():
            is_set, value = field.read()
            if is_set:
                params[name] = value
        if self._extra_shown:
            for key, value in parse_extra(self._extra.value).items():
                if key in params or key in _OWN_FIELDS:
                    raise InvalidParams(
                        f"{key!r} has its own field; remove it from the extra lines"
                    )
                params[key] = value
        seed = parse_seed(self._seed.value)
        count = int(self._count.value)
        if seed is None and draw:
            info = self._info_for(model)
            seed = draw_seed(info.params.get("seed") if info is not None else None, count)
        return model, expand_requests(params, seed, count)

    def submit(self) -> list[StatusCard]:
        """Validate everything, then submit: one card per task. Nothing is sent if any request
        is invalid; the error is shown on the form."""
        try:
            model, requests = self.requests(draw=True)
            for params in requests:
                self.client.validate(model, **params)
        except Exception as exc:  # shown on the form: printing would land in another cell
            self._show_error(exc)
            return []
        self._show_error(None)
        if not self._seed.value.strip() and "seed" in requests[0]:
            last = requests[0]["seed"]
            assign(self._seed, placeholder=f"{_SEED_PLACEHOLDER} (last: {last})")
        cards = [StatusCard.submit(self.client, model, **params) for params in requests]
        for card in cards:
            card.add_listener(self._on_card)
        self._cards_list = cards + self._cards_list
        self._trim()
        assign(self._cards, children=tuple(self._cards_list))
        return cards

    def _trim(self) -> None:
        """Close the oldest settled cards beyond `max_cards` (they would leak otherwise)."""
        results = self._results.cards
        while results and len(self._cards_list) + len(results) > self.max_cards:
            results.pop().close()
        while len(self._cards_list) > self.max_cards:
            settled = [c for c in reversed(self._cards_list) if c.settled]
            if not settled:
                break
            self._cards_list.remove(settled[0])
            settled[0].close()

    def clear(self, everything: bool = False) -> None:
        """Close the finished cards (all of them with `everything=True`; tasks keep running)."""
        keep = [] if everything else [c for c in self._cards_list if not c.settled]
        for card in self._cards_list + self._results.cards:
            if card not in keep:
                card.close()
        self._cards_list = keep
        self._results.cards = []
        assign(self._cards, children=tuple(keep))
        self.refresh_display()
        self._results.refresh_display()

    def display(self) -> None:
        """Show the form, and below it the output its finished cards move to."""
        super().display()
        if static_swap_allowed():
            self._results.display()

    def _on_card(self, card: StatusCard) -> None:
        if not card.settled:
            return
        if self._display_id is not None and static_swap_allowed():
            try:  # after the card's own notification has run: it is closed next
                asyncio.get_running_loop().call_soon(self._finished, card)
            except RuntimeError:
                self._finished(card)
        elif all(c.settled for c in self._cards_list):
            self.refresh_display()

    def _finished(self, card: StatusCard) -> None:
        """Move an ended card from the form to the results output, as static HTML."""
        if self._closed or card not in self._cards_list:
            return
        self._cards_list.remove(card)
        self._results.cards.insert(0, card)
        card.close()  # its widgets; the handle keeps its state and its static form
        self._trim()
        assign(self._cards, children=tuple(self._cards_list))
        self._results.refresh_display()
        self.refresh_display()

    # ------------------------------------------------------------------ static fallback
    def _static_html(self) -> str:
        cells = [card._static_html() for card in self._cards_list]
        note = (
            '<div style="color:#999;font-size:0.85em">genwidgets form: needs a running kernel</div>'
        )
        return static_grid_html(cells, header=note, min_px=None)

    def _static_text(self) -> str:
        return f"<SubmitForm {self._model.value or ''}: {len(self.cards)} cards>"

    def __repr__(self) -> str:
        return self._static_text()

    def close(self) -> None:
        if self._closed:
            return
        final = self._final_bundle() if self._display_id is not None else None
        self._closed = True
        for card in self._cards_list + self._results.cards:
            card.close()
        self._cards_list = []
        for field in self._fields.values():
            close_tree(field.widget)
        for widget in (
            self._model,
            self._info,
            self._prompt,
            self._params,
            self._extra,
            self._row,
            self._error,
            self._cards,
        ):
            close_tree(widget)
        layout = self.layout
        super().close()
        layout.close()
        self._publish(final)  # the output keeps the static snapshot of what was shown
