"""The public surface is what `genwidgets.__all__` says, and nothing private leaks into it."""

import genwidgets


def test_all_names_resolve() -> None:
    for name in genwidgets.__all__:
        assert getattr(genwidgets, name) is not None, name


def test_all_is_pinned() -> None:
    exported = set(genwidgets.__all__)
    assert {"AsyncClient", "Client", "run", "Task", "Status", "Output", "GenError"} <= exported
    assert all(not name.startswith("_") or name == "__version__" for name in exported)


def test_every_error_derives_from_gen_error() -> None:
    errors = [getattr(genwidgets, n) for n in genwidgets.__all__ if n.endswith(("Error", "Key"))]
    errors += [genwidgets.UnknownModel, genwidgets.UnknownProvider, genwidgets.TaskFailed]
    for cls in errors:
        assert issubclass(cls, genwidgets.GenError), cls


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
