"""`Client`, the blocking twin of `AsyncClient`: the same methods, running the same coroutines.

Nothing is decided here: each method runs the async client's coroutine to completion (`_runner`),
or calls its plain method, so the twins cannot drift apart (fal_client's hand-mirrored twins
have: different retry delays sync vs async).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._models import Task
from ._runner import LoopRunner

if TYPE_CHECKING:
    from ._budget import Budget
    from ._client import TaskObserver
    from ._cost import CostGuard, CostPlan
    from .journal import Journal
    from .providers import ModelInfo, Provider

__all__ = ["Client"]


class Client:
    """The blocking twin of `AsyncClient`: the same methods, running the same coroutines.

    Outside a running event loop it keeps a private loop; inside Jupyter (the kernel's loop is
    running) it runs on that loop re-entrantly, so live cards keep updating while a cell waits.
    """

    def __init__(self, **kwargs: Any) -> None:
        from ._client import AsyncClient

        self._runner = LoopRunner()
        self.aclient = self._runner.call(lambda: AsyncClient(**kwargs))

    # ------------------------------------------------------------------ the task lifecycle
    def submit(self, model: str, **params: Any) -> Task:
        return self._runner.run(self.aclient.submit(model, **params))

    def get(self, task: Task) -> Task:
        return self._runner.run(self.aclient.get(task))

    def wait(self, task: Task, timeout: float | timedelta | None = None) -> Task:
        return self._runner.run(self.aclient.wait(task, timeout))

    def updates(self, task: Task) -> Iterator[Task]:
        return self._runner.iterate(self.aclient.updates(task))

    def cancel(self, task: Task) -> Task:
        return self._runner.run(self.aclient.cancel(task))

    def cancel_all(self) -> builtins.list[Task]:
        return self._runner.run(self.aclient.cancel_all())

    def download(self, task: Task, dest: str | os.PathLike[str] | None = None) -> Task:
        return self._runner.run(self.aclient.download(task, dest))

    def run(
        self,
        model: str,
        *,
        timeout: float | timedelta | None = None,
        dest: str | os.PathLike[str] | None = None,
        **params: Any,
    ) -> Task:
        return self._runner.run(self.aclient.run(model, timeout=timeout, dest=dest, **params))

    def list(self, provider: str, **filters: str) -> builtins.list[Task]:
        return self._runner.run(self.aclient.list(provider, **filters))

    def delete(self, task: Task) -> None:
        self._runner.run(self.aclient.delete(task))

    # ------------------------------------------------------------------ no waiting involved
    def resume(self) -> builtins.list[Task]:
        return self.aclient.resume()

    def live_tasks(self) -> builtins.list[Task]:
        return self.aclient.live_tasks()

    def plan(self, requests: Iterable[tuple[str, Mapping[str, Any]]]) -> CostPlan:
        return self.aclient.plan(requests)

    def validate(self, model: str, **params: Any) -> dict[str, Any]:
        return self.aclient.validate(model, **params)

    def can_cancel(self, task: Task | str) -> bool:
        return self.aclient.can_cancel(task)

    def model_info(self, model: str) -> ModelInfo | None:
        return self.aclient.model_info(model)

    def available_models(self) -> dict[str, builtins.list[ModelInfo]]:
        return self.aclient.available_models()

    def configured_providers(self) -> builtins.list[str]:
        return self.aclient.configured_providers()

    def provider(self, name: str) -> Provider:
        return self.aclient.provider(name)

    def budget(self, provider: str) -> Budget | None:
        """The provider account's budget on this client's loop (None: unlimited)."""

        async def on_the_loop() -> Budget | None:  # budgets belong to the loop they run on
            return self.aclient.budget(provider)

        return self._runner.run(on_the_loop())

    def add_observer(self, callback: TaskObserver) -> None:
        self.aclient.add_observer(callback)

    @property
    def journal(self) -> Journal | None:
        return self.aclient.journal

    @property
    def cost_guard(self) -> CostGuard:
        return self.aclient.cost_guard

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self._runner.run(self.aclient.aclose())
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self.aclient).replace("<AsyncClient", "<Client", 1)
