"""The display plumbing with a stand-in kernel shell: updates go out as messages of the cell that
runs now, an update sent between cells is sent again when the next cell starts, and a kernel
shutting down leaves static cards behind. (tests/notebooks/test_headless.py checks the same
against a real kernel and nbclient, papermill and nbval.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_card import FakeClient

from genwidgets._media import render_image
from genwidgets.widgets import StatusCard
from genwidgets.widgets import _display as display_module
from genwidgets.widgets._render import WIDGET_VIEW_MIME


class Events:
    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[..., None]]] = {}

    def register(self, name: str, callback: Callable[..., None]) -> None:
        self.callbacks.setdefault(name, []).append(callback)

    def trigger(self, name: str) -> None:
        for callback in self.callbacks.get(name, []):
            callback(None)


class Kernel:
    def __init__(self) -> None:
        self.parent: dict[str, Any] = {"header": {"msg_id": "cell-1"}}
        self.shutdowns: list[bool] = []

    def get_parent(self) -> dict[str, Any]:
        return self.parent

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        self.shutdowns.append(restart)
        return {"status": "ok", "restart": restart}


class Publisher:
    """Records the parent each message would carry (ipykernel's set_thread_parent API)."""

    def __init__(self) -> None:
        self.parent: dict[str, Any] | None = None

    def set_thread_parent(self, parent: dict[str, Any]) -> dict[str, Any] | None:
        previous, self.parent = self.parent, parent
        return previous

    def reset_thread_parent(self, token: dict[str, Any] | None) -> None:
        self.parent = token


class Shell:
    execution_count = 1

    def __init__(self) -> None:
        self.events = Events()
        self.kernel = Kernel()
        self.display_pub = Publisher()


@pytest.fixture
def kernel_shell(monkeypatch: pytest.MonkeyPatch) -> tuple[Shell, list[tuple[str, Any, Any]]]:
    """A stand-in shell; every display call with the parent it went out under."""
    import IPython.display

    shell = Shell()
    sent: list[tuple[str, Any, Any]] = []
    monkeypatch.setattr(display_module, "shell", lambda: shell)
    monkeypatch.setattr(display_module, "_cells", display_module._Cells())
    monkeypatch.setattr(
        IPython.display,
        "display",
        lambda obj, **kw: sent.append(("display", obj, shell.display_pub.parent)),
    )
    monkeypatch.setattr(
        IPython.display,
        "update_display",
        lambda obj, **kw: sent.append(("update", obj, shell.display_pub.parent)),
    )
    return shell, sent


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "image.png"
    path.write_bytes(render_image("a red rose", 3, 64, 64))
    return path


async def test_updates_go_out_as_messages_of_the_running_cell(
    kernel_shell: tuple[Shell, list[tuple[str, Any, Any]]], image_file: Path
) -> None:
    shell, sent = kernel_shell
    client = FakeClient((("image", image_file),), hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    card.display()  # in cell 1
    shell.events.trigger("post_run_cell")
    shell.kernel.parent = {"header": {"msg_id": "cell-2"}}
    shell.events.trigger("pre_run_cell")  # cell 2 starts: nbclient now listens to cell-2 only
    while card.state != "running":
        await asyncio.sleep(0.005)
    client._release["task-1"].set()
    await card
    *_, (kind, final, parent) = sent
    assert kind == "update" and WIDGET_VIEW_MIME not in final
    assert parent == {"header": {"msg_id": "cell-2"}}  # not cell-1, which started the task


async def test_an_update_sent_between_cells_is_sent_again_when_the_next_starts(
    kernel_shell: tuple[Shell, list[tuple[str, Any, Any]]], image_file: Path
) -> None:
    shell, sent = kernel_shell
    card = StatusCard.submit(FakeClient((("image", image_file),)), "fake:image", prompt="rose")
    card.display()
    shell.events.trigger("post_run_cell")  # cell 1 is over; no cell runs while the task ends
    await card
    final = sent[-1][1]
    assert WIDGET_VIEW_MIME not in final
    count = len(sent)
    shell.kernel.parent = {"header": {"msg_id": "cell-2"}}
    shell.events.trigger("pre_run_cell")
    assert len(sent) == count + 1
    assert sent[-1] == ("update", final, {"header": {"msg_id": "cell-2"}})
    shell.events.trigger("pre_run_cell")
    assert len(sent) == count + 1  # once


async def test_a_kernel_shutting_down_leaves_static_cards(
    kernel_shell: tuple[Shell, list[tuple[str, Any, Any]]],
) -> None:
    shell, sent = kernel_shell
    client = FakeClient(hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="a very long video")
    card.display()
    while card.state != "running":
        await asyncio.sleep(0.005)
    assert WIDGET_VIEW_MIME in sent[-1][1]
    reply = shell.kernel.do_shutdown(False)
    assert reply == {"status": "ok", "restart": False} and shell.kernel.shutdowns == [False]
    kind, bundle, _ = sent[-1]
    assert kind == "update" and WIDGET_VIEW_MIME not in bundle
    assert 'data-state="running"' in bundle["text/html"] and "task-1" in bundle["text/plain"]
    assert "genwidgets.resume()" in bundle["text/html"]
    card.close()
