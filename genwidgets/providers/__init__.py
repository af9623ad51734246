"""Provider adapters, one small sans-IO module each, found through a lazy registry.

Adding a provider means adding one module here and one line to `_REGISTRY`.
"""

from __future__ import annotations

import difflib
import importlib

from .._exceptions import UnknownProvider
from ._base import Provider
from ._catalogue import ModelInfo, Param
from ._wire import Event, Request, Response

__all__ = [
    "Event",
    "ModelInfo",
    "Param",
    "Provider",
    "Request",
    "Response",
    "get_provider_class",
    "parse_model_id",
    "provider_names",
]

_REGISTRY: dict[str, str] = {
    "local": "genwidgets.providers.local:LocalProvider",
    "onerouter": "genwidgets.providers.onerouter:OneRouterProvider",
    "rixapi": "genwidgets.providers.rixapi:RixAPIProvider",
    "segmind": "genwidgets.providers.segmind:SegmindProvider",
    "netmind": "genwidgets.providers.netmind:NetMindProvider",
    "oxen": "genwidgets.providers.oxen:OxenProvider",
}


def provider_names() -> list[str]:
    return list(_REGISTRY)


def get_provider_class(name: str) -> type[Provider]:
    """The adapter class for `name`, imported on first use."""
    target = _REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise UnknownProvider(name, provider_names(), close[0] if close else None)
    module_name, _, attr = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), attr)
    return cls


def parse_model_id(model_id: str) -> tuple[str, str]:
    """Split `provider:model` once (model names may contain ':' or '/' themselves)."""
    provider, sep, model = model_id.partition(":")
    provider = provider.strip().lower()
    if not sep:
        close = difflib.get_close_matches(provider, list(_REGISTRY), n=1)
        if provider in _REGISTRY:
            raise UnknownProvider(
                f"{model_id} (a model name is missing: write '{provider}:<model>')",
                provider_names(),
            )
        raise UnknownProvider(model_id, provider_names(), close[0] if close else None)
    if provider not in _REGISTRY:
        close = difflib.get_close_matches(provider, list(_REGISTRY), n=1)
        raise UnknownProvider(provider, provider_names(), close[0] if close else None)
    return provider, model.strip()
