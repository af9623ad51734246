"""Provider adapters, one small sans-IO module each, found through a lazy registry.

Adding a provider means adding one module here (``<name>.py`` with a `Provider` subclass named
``<name>``), or installing a plugin package that declares one in the ``genwidgets.providers``
entry point group; see ``docs/adapters.md`` and `_registry`.
"""

from __future__ import annotations

import difflib

from .._exceptions import UnknownProvider
from .._limits import SUBMITS, Limits, ProviderLimits
from ._base import Provider
from ._catalogue import ModelInfo, Param
from ._registry import BrokenPlugin, entries, load
from ._wire import Event, Request, Response

__all__ = [
    "SUBMITS",
    "BrokenPlugin",
    "Event",
    "Limits",
    "ModelInfo",
    "Param",
    "Provider",
    "ProviderLimits",
    "Request",
    "Response",
    "get_provider_class",
    "parse_model_id",
    "provider_names",
]


def provider_names(*, plugins: bool = True) -> list[str]:
    """Every provider's name: the built-ins (`local` first), then installed plugins'
    (`plugins=False`: the built-ins alone, e.g. for output that must not depend on the machine)."""
    return [name for name, entry in entries().items() if plugins or entry.builtin]


def get_provider_class(name: str) -> type[Provider]:
    """The adapter class for `name`, imported on first use (`BrokenPlugin` if it cannot be)."""
    if name not in entries():
        raise _unknown(name)
    return load(name)


def _unknown(name: str, shown: str | None = None) -> UnknownProvider:
    close = difflib.get_close_matches(name, provider_names(), n=1)
    return UnknownProvider(shown or name, provider_names(), close[0] if close else None)


def parse_model_id(model_id: str) -> tuple[str, str]:
    """Split `provider:model` once (model names may contain ':' or '/' themselves)."""
    provider, sep, model = model_id.partition(":")
    provider = provider.strip().lower()
    known = entries()
    if not sep:
        if provider in known:
            missing = f"{model_id} (a model name is missing: write '{provider}:<model>')"
            raise UnknownProvider(missing, provider_names())
        raise _unknown(provider, model_id)
    if provider not in known:
        raise _unknown(provider)
    return provider, model.strip()
