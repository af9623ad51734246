"""The public surface is exactly what `genwidgets.__all__` says, and nothing private leaks into it.

Pinned the way httpx pins its own (tests/test_exported_members.py): the list is written out here,
so adding, removing or renaming a public name is a deliberate change to this file, not an accident
of an import.
"""

from __future__ import annotations

import importlib
import inspect
import types

import genwidgets

#: Every public name, sorted. Changing this list changes the public API: say so in the commit.
EXPECTED_ALL = [
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

#: Public-looking names the package has on purpose outside `__all__`: IPython's extension hook
#: (`%load_ext genwidgets` looks it up by this name; it is not API to call).
NOT_EXPORTED = {"load_ipython_extension"}


def _resolve_all() -> dict[str, object]:
    """Every exported object (the lazy ones are imported, so they appear in `vars()` too)."""
    return {name: getattr(genwidgets, name) for name in genwidgets.__all__}


def test_all_is_pinned() -> None:
    assert genwidgets.__all__ == EXPECTED_ALL


def test_all_names_resolve() -> None:
    for name, value in _resolve_all().items():
        assert value is not None, name


def test_every_public_attribute_is_exported() -> None:
    """httpx's rule: what the package namespace defines publicly is in `__all__`.

    Submodules (`genwidgets.journal`, `.providers`, `.sandbox`...) are namespaces, not names, and
    what the package merely imports for itself (`typing.Any`, `logging`) is not genwidgets'.
    """
    _resolve_all()
    own = {
        name
        for name, value in vars(genwidgets).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and (getattr(value, "__module__", "") or "").startswith("genwidgets")
    }
    assert own - set(genwidgets.__all__) == NOT_EXPORTED
    assert sorted(dir(genwidgets)) == sorted(genwidgets.__all__)  # what tab completion offers


def test_nothing_private_is_exported() -> None:
    assert [n for n in genwidgets.__all__ if n.startswith("_") and n != "__version__"] == []
    for name, value in _resolve_all().items():
        module = getattr(value, "__module__", None)
        if module is not None:  # the home of an exported object is importable
            importlib.import_module(module)
        assert not (inspect.isclass(value) and value.__name__.startswith("_")), name


def _exported_exceptions() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in _resolve_all().items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }


def test_every_exported_exception_is_a_gen_error() -> None:
    exceptions = _exported_exceptions()
    # No name filter: every exception class in `__all__` is checked. The count guards against
    # this test checking nothing if the exports change shape.
    assert len(exceptions) == 26, sorted(exceptions)
    assert {n for n, cls in exceptions.items() if not issubclass(cls, genwidgets.GenError)} == set()


def test_status_values_are_lower_case_strings() -> None:
    assert [s.value for s in genwidgets.Status] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    ]
    assert str(genwidgets.Status.RUNNING) == "running"
    assert genwidgets.Status.EXPIRED.is_terminal and not genwidgets.Status.QUEUED.is_terminal
