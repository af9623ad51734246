"""One exception tree, rooted in `GenError`.

    GenError
    ├── ConfigError ............ nothing was sent: fix your set-up
    │   ├── MissingKey ......... names the environment variable to set
    │   ├── UnknownProvider .... lists the providers that exist
    │   ├── UnknownModel ....... lists the models that exist
    │   └── ReplayMissing ...... GENWIDGETS_REPLAY=require and the request was never recorded
    ├── InvalidParams .......... nothing was sent: fix the parameters (also a ValueError)
    ├── NotSupported ........... the provider has no such operation (cancel, list)
    ├── ProviderError .......... the provider answered with an error
    │   ├── AuthError .......... 401/403: the key was refused
    │   ├── QuotaError ......... out of credits or over a spend limit
    │   ├── RateLimited ........ 429; `.retry_after` in seconds when the server said
    │   ├── ServerError ........ 5xx
    │   ├── MalformedResponse .. a body that is not what the protocol promises
    │   └── SubmitUncertain .... the submit may or may not have been accepted; not retried
    ├── TransportError ......... the network failed (connect, read, reset, timeout)
    ├── DownloadError .......... an output could not be fetched (expired URL, over the size bound)
    │   └── StoreError ......... the team's object store (GENWIDGETS_STORE) failed or refused
    ├── TaskError .............. a task ended without success (`.task` holds the snapshot)
    │   ├── TaskFailed
    │   ├── TaskCancelled
    │   └── TaskExpired
    ├── WaitTimeout ............ waiting gave up; the task keeps running (also a TimeoutError)
    └── DeadlineExceeded ....... the task's deadline passed: cancelled where the provider can
                                 (also a TimeoutError)

Every error carries `provider`, `model` and `task_id` where they are known, never an API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Task

__all__ = [
    "AuthError",
    "ConfigError",
    "ConfirmationRequired",
    "DeadlineExceeded",
    "DownloadError",
    "GenError",
    "InvalidParams",
    "MalformedResponse",
    "MissingKey",
    "NotSupported",
    "ProviderError",
    "QuotaError",
    "RateLimited",
    "ReplayMissing",
    "ServerError",
    "SpendCapExceeded",
    "StoreError",
    "SubmitUncertain",
    "TaskCancelled",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TransportError",
    "UnknownModel",
    "UnknownProvider",
    "WaitTimeout",
]


class GenError(Exception):
    """Base of every error genwidgets raises."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.task_id = task_id

    def __str__(self) -> str:
        where = ":".join(p for p in (self.provider, self.model) if p)
        context = [where] if where else []
        if self.task_id:
            context.append(f"task {self.task_id}")
        return f"{self.message} [{', '.join(context)}]" if context else self.message

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: in a notebook, the message and the fix, not screens of asyncio frames
        (the full traceback is one `%tb` away; see `genwidgets._ipython_errors`)."""
        from ._ipython_errors import render_traceback

        return render_traceback(self)


class ConfigError(GenError):
    """The set-up is wrong (key, provider or model name); nothing was sent."""


class MissingKey(ConfigError):
    def __init__(self, provider: str, env_var: str) -> None:
        super().__init__(
            f"No API key for {provider!r}: set the environment variable {env_var} "
            f"or pass api_key=... to the client",
            provider=provider,
        )
        self.env_var = env_var


class UnknownProvider(ConfigError):
    def __init__(self, name: str, known: list[str], suggestion: str | None = None) -> None:
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(
            f"Unknown provider {name!r}.{hint} Providers: {', '.join(known)}. "
            "Name a model as 'provider:model', e.g. 'local:image'."
        )
        self.known = known


class UnknownModel(ConfigError):
    """`detail` is what the provider said, when the refusal came from it."""

    def __init__(
        self,
        provider: str,
        model: str,
        known: list[str],
        suggestion: str | None = None,
        *,
        detail: str | None = None,
    ) -> None:
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        listing = ", ".join(f"{provider}:{m}" for m in known) or "(none)"
        said = f" ({detail})" if detail else ""
        super().__init__(
            f"Unknown model {model!r}.{hint} Known models: {listing}{said}",
            provider=provider,
            model=model,
        )
        self.known = known


class ReplayMissing(ConfigError):
    """Replay is required (`GENWIDGETS_REPLAY=require`, e.g. in CI) but the journal has no
    successful task for this request, or its files are gone from the cache."""


class InvalidParams(GenError, ValueError):
    """Parameters failed validation before anything was sent."""


class NotSupported(GenError):
    """The provider does not offer this operation."""


class ProviderError(GenError):
    """The provider answered with an error status or an error body."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, task_id=task_id)
        self.status_code = status_code


class AuthError(ProviderError):
    """The provider refused the key (HTTP 401/403)."""


class QuotaError(ProviderError):
    """Out of credits, over a spend limit or quota (HTTP 402, some 403/406)."""


class RateLimited(ProviderError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(ProviderError):
    """HTTP 5xx from the provider."""


class MalformedResponse(ProviderError):
    """The body does not match the documented protocol."""


class SubmitUncertain(ProviderError):
    """The submit request may have reached the provider; it is not retried (it could bill twice)."""


class TransportError(GenError):
    """The network failed before a complete response arrived."""


class DownloadError(GenError):
    """An output could not be downloaded."""


class StoreError(DownloadError):
    """The team's object store could not be reached, refused, or held a wrong object. The local
    copy of an output is never lost to it: the message says where it is."""


class TaskError(GenError):
    """A task ended without success; `.task` holds its last snapshot."""

    def __init__(self, task: Task) -> None:
        detail = f": {task.error}" if task.error else ""
        super().__init__(
            f"Task {task.status.value}{detail}",
            provider=task.provider,
            model=task.model,
            task_id=task.id,
        )
        self.task = task


class TaskFailed(TaskError):
    pass


class TaskCancelled(TaskError):
    pass


class TaskExpired(TaskError):
    pass


class WaitTimeout(GenError, TimeoutError):
    """Waiting gave up; the task itself keeps running and can be waited on again."""


class DeadlineExceeded(GenError, TimeoutError):
    """The task's deadline passed. Where the provider can cancel, the task was cancelled (its
    journal entry says why); otherwise it may still run, and `task_id` is kept to fetch it."""


class SpendCapExceeded(GenError):
    """A submit would cross the session's cap on paid tasks or estimated spend; nothing was sent.

    Raise the cap (`GENWIDGETS_MAX_PAID_TASKS`, `GENWIDGETS_MAX_SPEND`, `CostGuard`) to go on."""


class ConfirmationRequired(GenError):
    """More paid tasks than `confirm_above` were asked for without confirming; nothing was sent.

    In code, pass `yes=True`; in the CLI, answer the prompt or pass `--yes`."""
