"""A real kernel, interrupted by a test as Jupyter's Stop button does: `run()` cancels its job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from genwidgets.journal import Journal


def execute(client: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    msg_id = client.execute(code)
    return client.get_shell_msg(timeout=timeout) if msg_id else {}


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
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
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
        # The kernel is still usable, and nothing keeps polling behind the user.
        assert execute(client, "1 + 1")["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
