"""After a kernel restart, `genwidgets.resume()` re-attaches cards and finishes the tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel


def run(kc: Any, code: str) -> dict[str, Any]:
    kc.execute(code)
    reply = kc.get_shell_msg(timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def test_resume_after_kernel_restart(sb: Any, tmp_path: Path) -> None:
    setup = (
        "import genwidgets\n"
        f"client = genwidgets.configure(base_urls={dict(sb.urls)!r},"
        " api_keys={'segmind': 'k', 'netmind': 'k'},"
        f" journal={str(tmp_path / 'j.sqlite')!r}, cache_dir={str(tmp_path / 'c')!r},"
        " poll_interval=(0.05, 0.3))\n"
    )
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        run(kc, setup)
        run(
            kc,
            "cards = [genwidgets.show(m, prompt='long [slow]') for m in "
            "('segmind:seedream-4.5', 'netmind:Qwen/Qwen-Image')]\n"
            "import asyncio\n"
            # Kill the kernel as soon as both submits are answered (a task id on each card):
            # what the provider accepted must survive a hard kill, however loaded the machine.
            "for _ in range(600):\n"
            "    if all(c.task is not None for c in cards): break\n"
            "    await asyncio.sleep(0.01)\n"
            "assert all(c.task is not None for c in cards), cards",
        )
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        run(kc, setup)
        run(
            kc,
            "cards = genwidgets.resume()\n"
            "finals = [await c.wait() for c in cards]\n"
            "assert len(finals) == 2, finals\n"
            "assert all(t.status.value == 'succeeded' and t.outputs[0].path.exists()"
            " for t in finals), finals",
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert all(n == 1 for n in sb.stats()["submit_fingerprints"].values())
    assert len(sb.stats()["submit_fingerprints"]) == 2
