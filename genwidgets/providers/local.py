"""The embedded `local` provider: no key, no network, and the registry of its models.

Its work is done in-process by `genwidgets._local.LocalEngine` (the client hands local tasks to
it), which looks models up here. This module owns the catalogue: the built-in procedural demos
(run by the engine's own generators) and the callables users register at run time with
`genwidgets.register_local_model`; validation sees them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .._exceptions import InvalidParams
from .._models import OutputKind
from ._base import Provider
from ._catalogue import ModelInfo, Param

__all__ = [
    "LocalModel",
    "LocalProvider",
    "local_model",
    "local_models",
    "register_local_model",
    "unregister_local_model",
]


@dataclass(frozen=True)
class LocalModel:
    """A registered local model: its catalogue entry and the callable that makes its output
    (None for a built-in demo, which the engine runs with its own generator)."""

    info: ModelInfo
    fn: Callable[..., Any] | None = None


_DURATION = Param((int, float), "seconds the demo takes, so the UI can be seen working", minimum=0)
_RATIO = Param(
    str, "frame shape such as 16:9 (sets the height from the width)", pattern=r"\d{1,2}:\d{1,2}"
)
BUILTIN_MODELS = (
    ModelInfo(
        "image",
        "image",
        "procedural demo image from prompt and seed (Pillow; no neural network)",
        params={
            "width": Param(int, "pixels", minimum=16, maximum=2048, implied=512),
            "height": Param(int, "pixels", minimum=16, maximum=2048, implied=512),
            "aspect_ratio": _RATIO,
            "duration": _DURATION,
        },
        closed=True,
    ),
    ModelInfo(
        "audio",
        "audio",
        "procedural demo audio: the prompt spoken by espeak-ng, else a melody",
        params={
            "seconds": Param((int, float), "melody length", minimum=0.1, maximum=60, implied=2),
            "speech": Param(bool, "speak the prompt when espeak-ng is installed", implied=True),
            "duration": _DURATION,
        },
        closed=True,
    ),
    ModelInfo(
        "video",
        "video",
        "procedural demo video: an animated H.264 MP4 (PyAV; no neural network)",
        params={
            "seconds": Param((int, float), "clip length", minimum=0.1, maximum=60, implied=2),
            "fps": Param(int, "frames per second", minimum=1, maximum=60, implied=12),
            "width": Param(int, "pixels", minimum=16, maximum=1920, implied=256),
            "height": Param(int, "pixels", minimum=16, maximum=1920, implied=256),
            "aspect_ratio": _RATIO,
            "duration": _DURATION,
        },
        closed=True,
    ),
)
_REGISTRY: dict[str, LocalModel] = {info.name: LocalModel(info) for info in BUILTIN_MODELS}
_registry_lock = threading.Lock()


def register_local_model(
    name: str,
    fn: Callable[..., Any],
    *,
    kind: OutputKind = "image",
    params: Mapping[str, Param] | None = None,
    description: str = "",
    replace: bool = False,
) -> None:
    """Make `fn` available as `local:<name>`.

    `fn` receives the parameters as keyword arguments (`prompt`, `seed`, ...), plus
    `progress(fraction)` (which raises when the task is cancelled) and `cancelled` (a
    `threading.Event`) if its signature accepts them. It may return bytes, a PIL image, a numpy
    HxWx3 uint8 array, a path to a file, or a str for kind "text". Parameters not in `params` are
    passed through unchecked.
    """
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(f"Invalid local model name {name!r}")
    with _registry_lock:
        if name in _REGISTRY and not replace:
            raise ValueError(f"local:{name} exists; pass replace=True to replace it")
        info = ModelInfo(name, kind, description or f"user model {fn!r}", dict(params or {}))
        _REGISTRY[name] = LocalModel(info, fn)


def unregister_local_model(name: str) -> None:
    with _registry_lock:
        _REGISTRY.pop(name, None)


def local_models() -> dict[str, ModelInfo]:
    with _registry_lock:
        return {name: model.info for name, model in _REGISTRY.items()}


def local_model(name: str) -> LocalModel | None:
    """The registered model called `name`, if any."""
    with _registry_lock:
        return _REGISTRY.get(name)


class LocalProvider(Provider):
    name: ClassVar[str] = "local"
    about: ClassVar[str] = "procedural demo models run in this process (no key, no network)"
    env_var: ClassVar[str | None] = None
    default_base_url: ClassVar[str] = ""
    open_catalogue: ClassVar[bool] = False
    can_cancel: ClassVar[bool] = True
    poll_interval: ClassVar[tuple[float, float]] = (0.1, 1.0)

    @property  # type: ignore[override]
    def models(self) -> Mapping[str, ModelInfo]:  # live: registered models appear at once
        return local_models()

    def check_model(self, model: str) -> None:
        if model not in self.models:
            raise self.unknown_model(model)

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        clean = super().validate(model, params)
        ratio = clean.get("aspect_ratio")
        if ratio is not None and any(int(side) == 0 for side in str(ratio).split(":")):
            raise InvalidParams(
                "aspect_ratio sides must be positive", provider="local", model=model
            )
        clean.setdefault("seed", 0)
        return clean
