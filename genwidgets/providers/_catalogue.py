"""The catalogue: what a model produces and which parameters it takes, checked before sending.

A `ModelInfo` names a model and its `Param`s; `check_params` turns what a user typed (the magic
and the CLI hand over text) into JSON-ready values, or refuses with `InvalidParams`. An adapter's
budget row (`ProviderLimits`, defined in `genwidgets._limits`) is declared beside its catalogue,
so both are imported from here.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import InvalidParams
from .._limits import SUBMITS, Limits, ProviderLimits
from .._models import OutputKind

__all__ = [
    "PROMPT",
    "SEED",
    "SUBMITS",
    "Limits",
    "ModelInfo",
    "Param",
    "ProviderLimits",
    "catalogue",
    "check_filters",
    "check_params",
]


@dataclass(frozen=True)
class Param:
    """One known parameter of a model: checked locally before anything is sent.

    `default` is filled into every request by `validate` (so it is part of the request's
    fingerprint); `implied` is what the model does when the parameter is not sent: forms show it,
    nothing sends it, and fingerprints stay as they are."""

    type: type | tuple[type, ...] = str
    help: str = ""
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    required: bool = False
    implied: Any = None


@dataclass(frozen=True)
class ModelInfo:
    """A model in a provider's catalogue: what it produces and which parameters it knows."""

    name: str
    kind: OutputKind
    description: str = ""
    params: Mapping[str, Param] = field(default_factory=dict)
    closed: bool = False  # True: parameters outside `params` are refused


def catalogue(*infos: ModelInfo) -> dict[str, ModelInfo]:
    """A provider's `models` table, by name."""
    return {info.name: info for info in infos}


PROMPT = Param(str, "what to generate", required=True)
SEED = Param(int, "random seed, for reproducible results", minimum=0, maximum=2**32 - 1)

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_Refusal = Callable[[str], InvalidParams]


def check_params(
    info: ModelInfo | None, params: Mapping[str, Any], *, provider: str, model: str
) -> dict[str, Any]:
    """Checked, JSON-ready parameters (defaults filled in), or `InvalidParams`.

    Every model knows `prompt` and `seed`; a model in the catalogue adds its own. Parameters the
    catalogue does not know pass through (they need only be JSON) unless the model is `closed`.
    """

    def bad(why: str) -> InvalidParams:
        return InvalidParams(why, provider=provider, model=model)

    specs: Mapping[str, Param] = {"prompt": PROMPT, "seed": SEED}
    if info is not None:
        specs = {**specs, **info.params}
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        spec = specs.get(key)
        if spec is not None:
            clean[key] = _check(key, value, spec, bad)
        elif info is not None and info.closed:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise bad(f"Unknown parameter {key!r}.{hint} Known: {', '.join(sorted(specs))}")
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                why = f"must be JSON-serializable, got {type(value).__name__}"
                raise bad(f"Parameter {key!r} {why}") from None
            clean[key] = value
    for key, spec in specs.items():
        if key not in clean and spec.default is not None:
            clean[key] = spec.default
    prompt = clean.get("prompt")
    if specs["prompt"].required and (not isinstance(prompt, str) or not prompt.strip()):
        raise bad("A non-empty prompt is required")
    return clean


def check_filters(
    filters: Mapping[str, Any],
    known: Sequence[str] | None,
    statuses: Mapping[str, str],
    *,
    provider: str,
) -> dict[str, str]:
    """A list endpoint's query: only the `known` filters (any, when None), blanks dropped, and a
    ``status`` filter in the provider's words (`statuses` maps ours and theirs to theirs)."""
    unknown = sorted(set(filters) - set(known)) if known is not None else []
    if known is not None and unknown:
        names = ", ".join(map(repr, unknown))
        why = f"Unknown list filter {names}. {provider} filters by: {', '.join(known)}"
        raise InvalidParams(why, provider=provider)
    query = {k: str(v) for k, v in filters.items() if v is not None and str(v) != ""}
    if statuses and "status" in query:
        asked = query["status"]
        if asked.lower() not in statuses:
            words = ", ".join(statuses)
            why = f"{provider} cannot list by status {asked[:20]!r}; use one of {words}"
            raise InvalidParams(why, provider=provider)
        query["status"] = statuses[asked.lower()]
    return query


def _check(key: str, value: Any, spec: Param, bad: _Refusal) -> Any:
    """One value against its `Param`: coerced from text where the type says, then bounded."""
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    value = _coerce(key, value, types, bad)
    if isinstance(value, bool) and bool not in types:
        raise bad(f"Parameter {key!r} must be {_names(types)}, got a bool")
    if not isinstance(value, types):
        what = f"{type(value).__name__} {value!r}"
        raise bad(f"Parameter {key!r} must be {_names(types)}, got {what}")
    if spec.choices is not None and value not in spec.choices:
        choices = ", ".join(map(repr, spec.choices))
        raise bad(f"Parameter {key!r} must be one of {choices}; got {value!r}")
    number = isinstance(value, (int, float))
    if spec.minimum is not None and number and value < spec.minimum:
        raise bad(f"Parameter {key!r} must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and number and value > spec.maximum:
        raise bad(f"Parameter {key!r} must be <= {spec.maximum}, got {value!r}")
    text = isinstance(value, str)
    if spec.pattern is not None and text and not re.fullmatch(spec.pattern, value):
        raise bad(f"Parameter {key!r} must match {spec.pattern!r}, got {value!r}")
    return value


def _coerce(key: str, value: Any, types: tuple[type, ...], bad: _Refusal) -> Any:
    """Text and numbers into the declared type, as the magic and the CLI deliver them."""
    numeric = int in types or float in types
    whole = isinstance(value, int) and not isinstance(value, bool)
    if float in types and int not in types and whole:
        return float(value)
    if isinstance(value, str) and numeric and str not in types:
        try:  # "--seed 3" arrives as text
            return int(value) if int in types and re.fullmatch(r"-?\d+", value) else float(value)
        except ValueError:
            raise bad(f"Parameter {key!r} must be a number, got {value!r}") from None
    if isinstance(value, str) and bool in types and str not in types:
        lowered = value.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and types == (str,):
        return str(value)  # "--param duration=5" parses as a number; the provider wants "5"
    return value


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)
