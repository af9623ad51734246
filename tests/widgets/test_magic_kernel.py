"""`%gen` in a real kernel: it returns the live cards, each shown once, never a stale `Out[n]`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("magic")
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


def messages(client: Any, code: str) -> list[dict[str, Any]]:
    """The iopub messages of one execution (until idle), after checking it succeeded."""
    msg_id = client.execute(code)
    seen = []
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        seen.append(msg)
    reply = client.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:  # skip start_new_kernel's late reply
        reply = client.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "ok", [m["content"] for m in seen]
    return seen


def test_gen_count_shows_each_card_once_and_returns_them_live(kernel: Any) -> None:
    messages(kernel, "%load_ext genwidgets")
    shown = messages(kernel, "cards = %gen local:image boats at dawn --count 2 --seed 4\ncards")
    kinds = [m["msg_type"] for m in shown]
    assert kinds.count("display_data") == 2 and "execute_result" not in kinds, kinds
    displays = [m["content"] for m in shown if m["msg_type"] == "display_data"]
    ids = {content["transient"]["display_id"] for content in displays}
    assert len(ids) == 2  # two cards, each under its own display id
    check = (
        "finals = [await card for card in cards]\n"
        "assert type(cards).__name__ == 'CardList', type(cards)\n"
        "assert [c.status.value for c in cards] == ['succeeded'] * 2, cards\n"
        "assert [t.params['seed'] for t in finals] == [4, 5]\n"
        "assert all(c.outputs[0].path.exists() for c in cards)"
    )
    messages(kernel, check)
