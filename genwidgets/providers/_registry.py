"""Where adapters come from: genwidgets' own modules first, then third-party plugins.

Built-ins need no table: every public module of `genwidgets.providers` (``segmind.py``) holds one
`Provider` subclass whose ``name`` is the module's name. Plugins are packages that declare an
entry point in the ``genwidgets.providers`` group, named after the provider and pointing at the
adapter class::

    [project.entry-points."genwidgets.providers"]
    example = "genwidgets_example.adapter:ExampleProvider"

Both are read lazily: the names on the first lookup (module names and installed metadata, nothing
imported), a class on the first use of its name. A plugin that cannot be loaded is reported when
its name is used, as a `BrokenPlugin` naming the plugin, its package and the cause; every other
provider keeps working. A plugin never shadows a built-in of the same name.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .._exceptions import ConfigError
from ._base import Provider

__all__ = ["GROUP", "BrokenPlugin", "Entry", "entries", "load", "refresh", "refused"]

#: The entry point group a provider plugin declares its adapter in.
GROUP = "genwidgets.providers"
_PACKAGE = __name__.rpartition(".")[0]
#: A provider name: what comes before the ':' of `provider:model`, also in env var names.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class BrokenPlugin(ConfigError):
    """A provider plugin is installed but cannot be used (import error, not an adapter, ...)."""


@dataclass(frozen=True)
class Entry:
    """One provider the registry knows, before anything of it is imported."""

    name: str
    #: "module:Class" for a plugin, the module for a built-in
    target: str
    #: the distribution that provides it ("genwidgets" for the built-ins), with its version
    origin: str
    builtin: bool
    loader: Callable[[], Any]

    def describe(self) -> str:
        return f"{self.name} = {self.target} (from {self.origin})"


_lock = threading.RLock()
_entries: dict[str, Entry] | None = None
_loaded: dict[str, type[Provider] | BrokenPlugin] = {}
#: plugins refused before loading (a bad name, a name taken), by their description
_refused: dict[str, str] = {}


def refresh() -> None:
    """Forget what was found and loaded, so newly installed plugins are seen (tests, notebooks
    that ``pip install`` a plugin). Adapters already built by a client are not affected."""
    global _entries
    with _lock:
        _entries = None
        _loaded.clear()
        _refused.clear()


def entries() -> dict[str, Entry]:
    """Every provider by name: built-ins (`local` first, then by name), then plugins by name."""
    global _entries
    with _lock:
        if _entries is None:
            found = {entry.name: entry for entry in _builtins()}
            for entry in sorted(_plugins(), key=lambda e: e.name):
                taken = found.get(entry.name)
                if taken is not None:
                    why = "a built-in" if taken.builtin else f"already taken by {taken.origin}"
                    _refused[entry.describe()] = f"{entry.describe()} is ignored: {why}"
                elif not _NAME.fullmatch(entry.name):
                    _refused[entry.describe()] = (
                        f"{entry.describe()} is ignored: a provider name is lower-case letters, "
                        "digits and '_', starting with a letter"
                    )
                else:
                    found[entry.name] = entry
            _entries = found
        return _entries


def refused() -> list[str]:
    """Plugins that were found but ignored, each with why (shown by ``genwidgets models``)."""
    entries()
    return list(_refused.values())


def load(name: str) -> type[Provider]:
    """The adapter class registered as `name` (imported once); `KeyError` if none is."""
    with _lock:
        known = _loaded.get(name)
        if known is None:
            entry = entries()[name]
            try:
                known = _check(entry, entry.loader())
            except BrokenPlugin as exc:
                known = exc
            except Exception as exc:  # whatever a plugin's import raises is its own bug
                known = _broken(entry, f"{type(exc).__name__}: {exc}")
                known.__cause__ = exc
            _loaded[name] = known
    if isinstance(known, BrokenPlugin):
        raise known.with_traceback(None)  # the same error each time, not a growing traceback
    return known


def _check(entry: Entry, found: Any) -> type[Provider]:
    if entry.builtin:  # the module: its one Provider subclass named after it
        found = next(
            (
                value
                for value in vars(found).values()
                if isinstance(value, type)
                and issubclass(value, Provider)
                and value.__module__ == found.__name__
                and getattr(value, "name", None) == entry.name
            ),
            None,
        )
        if found is None:
            raise _broken(entry, f"it defines no Provider subclass with name = {entry.name!r}")
    if not (isinstance(found, type) and issubclass(found, Provider)):
        raise _broken(entry, f"it points at {found!r}, not a genwidgets Provider subclass")
    if getattr(found, "name", None) != entry.name:
        said = getattr(found, "name", None)
        raise _broken(entry, f"its adapter's name is {said!r}, not {entry.name!r}")
    return found


def _broken(entry: Entry, why: str) -> BrokenPlugin:
    kind = "built-in provider" if entry.builtin else "provider plugin"
    fix = "" if entry.builtin else f"; fix or uninstall {entry.origin.split()[0]!r}"
    return BrokenPlugin(f"The {kind} {entry.describe()} cannot be loaded: {why}{fix}")


def _builtins() -> list[Entry]:
    package = importlib.import_module(_PACKAGE)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_") and not info.ispkg
    )
    names.sort(key=lambda name: name != "local")  # the one that needs no key comes first
    return [
        Entry(
            name=name,
            target=f"{_PACKAGE}.{name}",
            origin="genwidgets",
            builtin=True,
            loader=lambda module=f"{_PACKAGE}.{name}": importlib.import_module(module),
        )
        for name in names
    ]


def _plugins() -> list[Entry]:
    found = []
    for point in metadata.entry_points(group=GROUP):
        dist = getattr(point, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown package"
        found.append(Entry(point.name, point.value, origin, False, point.load))
    return found
