"""The process defaults: one client per loop; `configure` closes the client it replaces."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import genwidgets
from genwidgets import _defaults
from genwidgets._runner import LoopRunner


async def test_configure_closes_the_client_it_replaces(tmp_path: Path) -> None:
    old = genwidgets.configure(cache_dir=tmp_path, journal=False)
    assert genwidgets.get_client() is old
    new = genwidgets.configure(cache_dir=tmp_path, journal=False)
    await asyncio.sleep(0)  # on a running loop the close is scheduled on it
    await asyncio.sleep(0)
    assert old.closed and not new.closed
    assert genwidgets.get_client() is new
    await new.aclose()


def test_a_loop_that_ended_leaves_no_default_client_behind() -> None:
    async def use_the_default() -> weakref.ref[asyncio.AbstractEventLoop]:
        await genwidgets.get_client().aclose()
        assert LoopRunner.shared().loop is asyncio.get_running_loop()  # what blocking calls use
        return weakref.ref(asyncio.get_running_loop())

    before = len(_defaults._clients)
    loop = asyncio.new_event_loop()
    gone = loop.run_until_complete(use_the_default())
    loop.close()
    del loop
    gc.collect()
    assert gone() is None  # neither registry kept the loop alive
    assert len(_defaults._clients) == before
