"""In a real kernel: a `GenError` raised into a cell reads as one message with the fix and the
line that raised it; the full traceback (asyncio, nest_asyncio frames and all) is one `%tb` away."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("kernel")
    env = {
        **os.environ,
        "GENWIDGETS_JOURNAL": "off",
        "GENWIDGETS_CACHE_DIR": str(folder / "cache"),
        "GENWIDGETS_LOCAL_DURATION": "0.2",
    }
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(folder), env=env)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client: Any, code: str, timeout: float = 60) -> tuple[str, list[str], str]:
    """Execute `code`; returns (status, the error's traceback lines, the printed text)."""
    msg_id = client.execute(code)
    lines: list[str] = []
    printed = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "error":
            lines = [ANSI.sub("", line) for line in "\n".join(content["traceback"]).splitlines()]
        elif kind == "stream":
            printed.append(ANSI.sub("", content["text"]))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:  # skip start_new_kernel's late reply
        reply = client.get_shell_msg(timeout=timeout)
    return reply["content"]["status"], lines, "".join(printed)


def test_an_invalid_request_is_one_message_with_the_fix(kernel: Any) -> None:
    code = "import genwidgets\ncard = genwidgets.show('local:image', prompt='')"
    status, lines, _ = run(kernel, code)
    assert status == "error"
    text = "\n".join(lines)
    assert len(lines) <= 7, text
    assert lines[0].startswith("InvalidParams: A non-empty prompt is required")
    assert "To fix: correct the parameters" in text and "nothing was sent" in text
    assert re.search(r"In Cell In\[\d+\], line 2: card = genwidgets.show\(", text), text
    assert "%tb" in text and "File " not in text


def test_a_deadline_reads_as_one_message_and_tb_has_the_rest(kernel: Any) -> None:
    code = "genwidgets.run('local:video', prompt='slow', duration=30, timeout=0.5)"
    status, lines, _ = run(kernel, code)
    assert status == "error"
    text = "\n".join(lines)
    assert len(lines) <= 7, text
    assert lines[0].startswith("DeadlineExceeded: Task cancelled: deadline of 0.5 s passed")
    assert "timeout=SECONDS" in text and "asyncio" not in text
    status, full, printed = run(kernel, "%tb")
    everything = "\n".join(full) + printed
    assert "DeadlineExceeded" in everything and "nest_asyncio" in everything
    assert len(everything.splitlines()) > 40  # the frames are all there, one %tb away
