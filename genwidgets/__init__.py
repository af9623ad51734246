"""genwidgets: asynchronous media-generation APIs (image, video, audio) in Jupyter.

    import genwidgets
    task = genwidgets.run("local:image", prompt="a red rose on a table", seed=3)

Import everything from here; the underscore modules are private.
"""

from __future__ import annotations

import logging
from typing import Any

from ._budget import Limits
from ._client import AsyncClient, Client, cancel_all, configure, get_client, run
from ._cost import CostGuard, CostPlan
from ._exceptions import (
    AuthError,
    ConfigError,
    ConfirmationRequired,
    DeadlineExceeded,
    DownloadError,
    GenError,
    InvalidParams,
    MalformedResponse,
    MissingKey,
    NotSupported,
    ProviderError,
    QuotaError,
    RateLimited,
    ReplayMissing,
    ServerError,
    SpendCapExceeded,
    StoreError,
    SubmitUncertain,
    TaskCancelled,
    TaskError,
    TaskExpired,
    TaskFailed,
    TransportError,
    UnknownModel,
    UnknownProvider,
    WaitTimeout,
)
from ._models import Output, Status, Task
from .providers import ModelInfo, Param

__version__ = "0.1.0"

# Library logging stays silent unless the application configures logging: without a handler,
# Python would print retry warnings into whichever notebook cell ran last.
for _name in ("genwidgets", "stamina"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

# Imported on first use: widgets pull in ipywidgets, the local engine Pillow and PyAV.
_LAZY = {
    "register_local_model": "genwidgets._local",
    "unregister_local_model": "genwidgets._local",
    "local_models": "genwidgets._local",
    "batch": "genwidgets._batch",
    "abatch": "genwidgets._batch",
    "StatusCard": "genwidgets.widgets",
    "SubmitForm": "genwidgets.widgets",
    "Gallery": "genwidgets.widgets",
    "explore": "genwidgets.widgets",
    "show": "genwidgets.widgets",
    "resume": "genwidgets.widgets",
}

__all__ = [
    "AsyncClient",
    "AuthError",
    "Client",
    "ConfigError",
    "ConfirmationRequired",
    "CostGuard",
    "CostPlan",
    "DeadlineExceeded",
    "DownloadError",
    "Gallery",
    "GenError",
    "InvalidParams",
    "Limits",
    "MalformedResponse",
    "MissingKey",
    "ModelInfo",
    "NotSupported",
    "Output",
    "Param",
    "ProviderError",
    "QuotaError",
    "RateLimited",
    "ReplayMissing",
    "ServerError",
    "SpendCapExceeded",
    "Status",
    "StatusCard",
    "StoreError",
    "SubmitForm",
    "SubmitUncertain",
    "Task",
    "TaskCancelled",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TransportError",
    "UnknownModel",
    "UnknownProvider",
    "WaitTimeout",
    "__version__",
    "abatch",
    "batch",
    "cancel_all",
    "configure",
    "explore",
    "get_client",
    "local_models",
    "register_local_model",
    "resume",
    "run",
    "show",
    "unregister_local_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'genwidgets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext genwidgets` registers the `%gen` / `%%gen` magics."""
    from .magic import load_ipython_extension as load

    load(ipython)
