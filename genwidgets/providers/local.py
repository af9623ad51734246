"""The embedded `local` provider: no key, no network.

Its work is done in-process by `genwidgets._local.LocalEngine` (the client hands local tasks to
it), so this adapter only owns the catalogue and the validation, which see models registered at
run time with `genwidgets.register_local_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ._base import ModelInfo, Provider

__all__ = ["LocalProvider"]


class LocalProvider(Provider):
    name: ClassVar[str] = "local"
    env_var: ClassVar[str | None] = None
    default_base_url: ClassVar[str] = ""
    open_catalogue: ClassVar[bool] = False
    can_cancel: ClassVar[bool] = True
    poll_interval: ClassVar[tuple[float, float]] = (0.1, 1.0)

    @property  # type: ignore[override]
    def models(self) -> Mapping[str, ModelInfo]:  # live: registered models appear at once
        from .._local import local_models

        return local_models()

    def model_info(self, model: str) -> ModelInfo | None:
        return self.models.get(model)

    def check_model(self, model: str) -> None:
        if model not in self.models:
            raise self.unknown_model(model)

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        clean = super().validate(model, params)
        ratio = clean.get("aspect_ratio")
        if ratio is not None and any(int(side) == 0 for side in str(ratio).split(":")):
            from .._exceptions import InvalidParams

            raise InvalidParams(
                "aspect_ratio sides must be positive", provider="local", model=model
            )
        clean.setdefault("seed", 0)
        return clean
