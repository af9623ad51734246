"""Which protocols the sandbox serves: one module per provider, found like the adapters.

A built-in protocol is the module ``genwidgets/sandbox/_<provider>.py`` of a built-in provider;
a plugin's is a module named by an entry point in the ``genwidgets.sandbox`` group (the entry
point's name is the provider's)::

    [project.entry-points."genwidgets.sandbox"]
    example = "genwidgets_example.sandbox"

The module declares its apps and, optionally, the ports the CLI serves them on::

    APPS = {"onerouter": OneRouterSubmit, "onerouter_poll": OneRouterPoll}   # port name -> app
    PORTS = {"onerouter": 8100, "onerouter_poll": 8105}
    LIMITS = ServerLimits(600, 30)   # optional: the published per-key limits (DOCUMENTED_LIMITS)

Each app (a `ProviderApp` subclass whose ``name`` is the provider) gets a port of its own; the
port named after the provider is the origin `Sandbox.urls` gives for it, the others are extra
hosts the protocol points at (`State.origins` has them all). Ports not declared are assigned from
`FIRST_FREE_PORT` up. A protocol that cannot be loaded is skipped with a warning naming it, so one
broken plugin never takes the sandbox down.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import Any

from ._http import ProviderApp
from ._limits import ServerLimits, coerce_limits

__all__ = [
    "FIRST_FREE_PORT",
    "GROUP",
    "Protocol",
    "default_ports",
    "protocol_apps",
    "protocol_names",
    "protocols",
]

GROUP = "genwidgets.sandbox"
#: Where ports no protocol declared are handed out (the seeds use 8100-8105).
FIRST_FREE_PORT = 8120
_PACKAGE = __name__.rpartition(".")[0]


@dataclass(frozen=True)
class Protocol:
    """One provider's protocol: its apps by port name and their default ports."""

    provider: str
    apps: Mapping[str, type[ProviderApp]]
    ports: Mapping[str, int]
    #: "genwidgets", or the plugin's distribution and version
    origin: str
    #: the provider's published per-key limits, enforced with `--enforce-limits` (None: none)
    limits: ServerLimits | None = None


_lock = threading.Lock()
_found: dict[str, Protocol] | None = None


def protocols() -> dict[str, Protocol]:
    """Every protocol that loads: the built-ins (in the registry's order), then plugins'."""
    global _found
    with _lock:
        if _found is None:
            found: dict[str, Protocol] = {}
            for provider, origin, load in [*_builtins(), *_plugins()]:
                if provider in found:
                    _skip(provider, origin, "a protocol of that name is served already")
                    continue
                try:
                    protocol = _declared(provider, origin, load())
                    _check_unique(protocol, found)
                except Exception as exc:  # a plugin's bug must not stop the others
                    _skip(provider, origin, f"{type(exc).__name__}: {exc}")
                    continue
                found[provider] = protocol
            _found = _assign_ports(found)
        return _found


def refresh() -> None:
    """Forget what was found (tests that install a protocol)."""
    global _found
    with _lock:
        _found = None


def protocol_names() -> tuple[str, ...]:
    """The providers the sandbox speaks, in order."""
    return tuple(protocols())


def protocol_apps() -> dict[str, type[ProviderApp]]:
    """Every port name and the app served on it."""
    return {port: app for p in protocols().values() for port, app in p.apps.items()}


def default_ports() -> dict[str, int]:
    """Every port name and its default port (the CLI's, with --port-base 8100)."""
    return {port: number for p in protocols().values() for port, number in p.ports.items()}


def _declared(provider: str, origin: str, module: Any) -> Protocol:
    apps = getattr(module, "APPS", None)
    if not isinstance(apps, Mapping) or provider not in apps:
        raise TypeError(f"its module declares no APPS mapping with a {provider!r} port")
    for port, app in apps.items():
        if not (isinstance(app, type) and issubclass(app, ProviderApp)):
            raise TypeError(f"APPS[{port!r}] is {app!r}, not a ProviderApp subclass")
        if getattr(app, "name", None) != provider:
            raise TypeError(f"APPS[{port!r}].name is {getattr(app, 'name', None)!r}")
    ports = dict(getattr(module, "PORTS", None) or {})
    unknown = set(ports) - set(apps)
    if unknown:
        raise TypeError(f"PORTS names ports it has no app for: {sorted(unknown)}")
    limits = getattr(module, "LIMITS", None)
    limits = None if limits is None else coerce_limits(limits)
    return Protocol(provider, dict(apps), ports, origin, limits)


def _check_unique(protocol: Protocol, found: Mapping[str, Protocol]) -> None:
    for other in found.values():
        ports = set(protocol.apps) & set(other.apps)
        numbers = set(protocol.ports.values()) & set(other.ports.values())
        if ports or numbers:
            clash = sorted(map(str, ports | numbers))
            raise ValueError(f"its ports {clash} are {other.provider!r}'s already")


def _assign_ports(found: dict[str, Protocol]) -> dict[str, Protocol]:
    used = {number for p in found.values() for number in p.ports.values()}
    free = (n for n in range(FIRST_FREE_PORT, 65536) if n not in used)
    return {
        name: replace(p, ports={port: p.ports.get(port) or next(free) for port in p.apps})
        for name, p in found.items()
    }


def _skip(provider: str, origin: str, why: str) -> None:
    warnings.warn(
        f"genwidgets sandbox: the {provider!r} protocol (from {origin}) is not served: {why}",
        RuntimeWarning,
        stacklevel=3,
    )


def _builtins() -> list[tuple[str, str, Callable[[], ModuleType]]]:
    from ..providers import provider_names

    here = importlib.import_module(_PACKAGE)
    modules = {info.name for info in pkgutil.iter_modules(here.__path__)}
    return [
        (name, "genwidgets", lambda m=f"{_PACKAGE}._{name}": importlib.import_module(m))
        for name in provider_names(plugins=False)
        if f"_{name}" in modules
    ]


def _plugins() -> list[tuple[str, str, Callable[[], Any]]]:
    found = []
    for point in sorted(metadata.entry_points(group=GROUP), key=lambda p: p.name):
        dist = getattr(point, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown package"
        found.append((point.name, origin, point.load))
    return found
