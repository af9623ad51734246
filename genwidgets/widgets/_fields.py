"""The form's parameter fields, generated from a model's `Param` specs, and the pure helpers that
turn what was typed into requests: `key=value` lines, seeds, counts.

Numbers are text fields, empty until typed: an IntText cannot be empty, so it showed (and sent) 0
for a parameter the user never set. A blank seed in the form draws a fresh one per click
(`draw_seed`); code never does.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from .._exceptions import InvalidParams
from ..providers import Param
from ..providers._catalogue import SEED
from ._base import css

__all__ = [
    "MAX_COUNT",
    "UNSET",
    "draw_seed",
    "expand_requests",
    "field_for",
    "parse_extra",
    "parse_seed",
]

#: at most this many tasks per click
MAX_COUNT = 64
#: fields given their own widget above the generated ones
_OWN_FIELDS = ("prompt", "seed")
#: a blank seed draws from [0, this): short enough to read off a card and type back in
SEED_SPAN = 1_000_000_000
_INT = re.compile(r"[+-]?\d+")
_SEED_PLACEHOLDER = "random at each click"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class _Unset:
    """The "(provider default)" choice of a Dropdown: send nothing for this parameter."""

    def __repr__(self) -> str:
        return "<provider default>"


UNSET: Any = _Unset()


def _decode(raw: str) -> Any:
    """JSON when it parses (numbers, booleans, lists), else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_extra(text: str) -> dict[str, Any]:
    """`key=value` lines (blank lines and `#` comments skipped); values are JSON when they parse."""
    params: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, raw = line.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key):
            raise InvalidParams(
                f"Extra parameters, line {number}: expected key=value, got {line!r}"
            )
        if key in params:
            raise InvalidParams(f"Extra parameters: {key!r} is given twice")
        params[key] = _decode(raw.strip())
    return params


def parse_seed(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not re.fullmatch(r"-?\d+", text):
        raise InvalidParams(f"Seed must be a whole number, got {text!r}")
    return int(text)


def expand_requests(
    params: Mapping[str, Any], seed: int | None, count: int
) -> list[dict[str, Any]]:
    """`count` requests: seeds `seed..seed+count-1`, or `count` copies when no seed is given."""
    if count < 1:
        raise InvalidParams(f"Count must be at least 1, got {count}")
    if count > MAX_COUNT:
        raise InvalidParams(f"Count must be at most {MAX_COUNT}, got {count}")
    if seed is None:
        return [dict(params) for _ in range(count)]
    return [{**params, "seed": seed + index} for index in range(count)]


def draw_seed(spec: Param | None = None, count: int = 1, rng: random.Random | None = None) -> int:
    """A fresh random first seed for `count` tasks (seed..seed+count-1 stay within `spec`).

    What a blank Seed means in the form: each Generate explores something new, and the seed is
    written into the request, so the card shows it, the journal records it and the click is never
    answered by replaying the previous one. Code (`show`, `%gen`, `explore`) never draws a seed:
    the same cell sends the same request, so re-running a notebook replays it."""
    spec = spec or SEED
    low = int(spec.minimum) if spec.minimum is not None else 0
    high = low + SEED_SPAN
    if spec.maximum is not None:
        high = min(high, int(spec.maximum) + 1)
    high = max(low + 1, high - (count - 1))
    return (rng or random.SystemRandom()).randrange(low, high)


def _types(spec: Param) -> tuple[type, ...]:
    return spec.type if isinstance(spec.type, tuple) else (spec.type,)


def _tooltip(name: str, spec: Param) -> str:
    bits = [spec.help or name]
    if spec.minimum is not None or spec.maximum is not None:
        low = "" if spec.minimum is None else f"{spec.minimum:g}"
        high = "" if spec.maximum is None else f"{spec.maximum:g}"
        bits.append(f"range {low}..{high}")
    if spec.default is not None:
        bits.append(f"default {spec.default!r}")
    elif spec.implied is not None:
        bits.append(f"when not sent: {spec.implied!r}")
    if spec.required:
        bits.append("required")
    return " · ".join(bits)


@dataclass
class _Field:
    """One generated parameter field and how to read it back."""

    name: str
    spec: Param
    widget: widgets.ValueWidget
    touched: bool = False

    def read(self) -> tuple[bool, Any]:
        """(is set, value). Untouched number/checkbox fields without a default send nothing."""
        value = self.widget.value
        if isinstance(self.widget, widgets.Dropdown):
            return value is not UNSET, value
        if isinstance(self.widget, (widgets.Text, widgets.Textarea)):
            text = value.strip()
            if not text:
                return False, None
            if _is_number(self.spec):
                return True, _number(self.name, self.spec, text)
            return True, text if str in _types(self.spec) else _decode(text)
        return self.spec.default is not None or self.touched, value


def _is_number(spec: Param) -> bool:
    types = _types(spec)
    return bool(types) and all(t in (int, float) for t in types) and bool not in types


def _number(name: str, spec: Param, text: str) -> int | float:
    """The number typed in a numeric field (range checks are `validate`'s, at submit)."""
    if _INT.fullmatch(text):
        return int(text)
    if float in _types(spec):
        try:
            return float(text)
        except ValueError:
            pass
    whole = "a whole number" if float not in _types(spec) else "a number"
    raise InvalidParams(f"{name} must be {whole}, got {text!r}")


def _placeholder(name: str, spec: Param) -> str:
    """What an empty field means: the provider's default, within which range."""
    low = "" if spec.minimum is None else f"{spec.minimum:g}"
    high = "" if spec.maximum is None else f"{spec.maximum:g}"
    span = f" {low}–{high}" if low or high else ""
    blank = "default" if spec.implied is None else f"{spec.implied:g}"
    return f"{spec.help or name}{span} (blank: {blank})"[:60]


def field_for(name: str, spec: Param) -> _Field:
    """The widget for one `Param`: Dropdown for choices, Checkbox, IntText, FloatText or Text."""
    types = _types(spec)
    common: dict[str, Any] = {
        **css("genwidgets-param"),
        "description": f"{name} *" if spec.required else name,
        "tooltip": _tooltip(name, spec),
        "style": {"description_width": "initial"},
    }
    widget: widgets.ValueWidget
    if spec.choices:
        options: list[tuple[str, Any]] = [(str(choice), choice) for choice in spec.choices]
        value = spec.default if spec.default in spec.choices else UNSET
        if value is UNSET:
            options.insert(0, ("(provider default)", UNSET))
        widget = widgets.Dropdown(options=options, value=value, **common)
    elif types == (bool,):
        # shows what the model does when nothing is sent; untouched, it sends nothing
        shown = spec.default if spec.default is not None else spec.implied
        widget = widgets.Checkbox(value=bool(shown), indent=False, **common)
    elif _is_number(spec):
        # Text, not IntText/FloatText: those cannot be empty and would show (and send) 0 for a
        # parameter the user never set. Empty means "the provider's default".
        text = "" if spec.default is None else f"{spec.default:g}"
        number = {**common, **css("genwidgets-param", "genwidgets-number")}
        widget = widgets.Text(value=text, placeholder=_placeholder(name, spec), **number)
    else:
        default = spec.default
        if default is None:
            text = ""
        else:
            text = default if isinstance(default, str) else json.dumps(default)
        widget = widgets.Text(value=text, placeholder=(spec.help or name)[:60], **common)
    field = _Field(name, spec, widget)

    def touched(_change: Any) -> None:
        field.touched = True

    widget.observe(touched, "value")
    return field
