"""A real kernel, interrupted by a test as Jupyter's Stop button does: `run()` cancels its job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from genwidgets.journal import Journal


def execute(client: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    return reply_to(client, client.execute(code), timeout)


def reply_to(client: Any, msg_id: str, timeout: float = 60) -> dict[str, Any]:
    """The shell reply to request `msg_id` (a late reply to an earlier request, such as the
    kernel_info start_new_kernel sent, is skipped)."""
    while True:
        reply: dict[str, Any] = client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def wait_idle(client: Any, msg_id: str, timeout: float = 30) -> None:
    """Read the kernel's broadcasts until it says it is idle after request `msg_id`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=timeout)
        if (
            msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id
        ):
            return
    raise AssertionError("the kernel never went idle after the interrupt")


@pytest.mark.parametrize("model", ["local:video", "oxen:flux-image"])
def test_interrupting_run_cancels_the_task(sb: Any, tmp_path: Path, model: str) -> None:
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        setup = (
            "import genwidgets\n"
            f"genwidgets.configure(base_urls={dict(sb.urls)!r},"
            " api_keys={'oxen': 'test-key-oxen'},"
            f" journal={str(tmp_path / 'j.sqlite')!r}, cache_dir={str(tmp_path / 'c')!r},"
            " poll_interval=(0.05, 0.3))\n"
        )
        assert execute(client, setup)["content"]["status"] == "ok"
        params = "duration=60" if model == "local:video" else ""
        msg_id = client.execute(
            f"genwidgets.run({model!r}, prompt='stop me [slow]', {params})", silent=False
        )
        journal = Journal(tmp_path / "j.sqlite")
        deadline = time.monotonic() + 30
        while not journal.tasks() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        manager.interrupt_kernel()
        reply = reply_to(client, msg_id, timeout=30)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        (task,) = journal.tasks()
        deadline = time.monotonic() + 10
        while task.status.value != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.1)
            task = journal.get(task.provider, task.id)
        assert task.status.value == "cancelled"
        if model.startswith("oxen"):
            assert sb.stats()["cancels"] == 1
        # The kernel is still usable, and nothing keeps polling behind the user. (A request that
        # reaches the kernel before it is idle after the error is aborted by ipykernel's
        # stop-on-error, whatever genwidgets does: wait for idle first.)
        wait_idle(client, msg_id)
        assert execute(client, "1 + 1")["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
