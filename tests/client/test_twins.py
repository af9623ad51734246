"""The blocking `Client` offers what `AsyncClient` offers, by running the same coroutines."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from genwidgets import AsyncClient, Client, Status
from tests.conftest import KEYS

#: AsyncClient members with no blocking twin of the same name: `close` is `aclose`'s twin, and
#: these are attributes rather than operations.
NOT_TWINNED = {"aclose", "closed", "cache", "replay", "max_download_bytes"}


def test_every_public_method_has_a_blocking_twin() -> None:
    public = {name for name in dir(AsyncClient) if not name.startswith("_")}
    missing = sorted(public - NOT_TWINNED - set(dir(Client)))
    assert not missing, f"Client lacks {missing}"
    for name in public - NOT_TWINNED:
        ours = getattr(AsyncClient, name)
        if inspect.iscoroutinefunction(ours):  # a twin blocks: it returns no coroutine
            assert not inspect.iscoroutinefunction(getattr(Client, name)), name


def test_the_twin_plans_resumes_and_cancels(sb: Any, tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    options: dict[str, Any] = {"api_keys": KEYS, "base_urls": sb.urls, "journal": journal}
    with Client(cache_dir=tmp_path / "cache", poll_interval=(0.05, 0.3), **options) as client:
        task = client.submit("oxen:flux-image", prompt="slow [slow]")
        assert [t.id for t in client.live_tasks()] == [task.id]
        assert client.can_cancel(task) and client.model_info("local:image") is not None
    with Client(cache_dir=tmp_path / "cache", poll_interval=(0.05, 0.3), **options) as again:
        plan = again.plan([("oxen:flux-image", {"prompt": "slow [slow]"})])
        assert plan.free == 1  # a new process would re-attach it from the journal, not send it
        (resumed,) = again.resume()  # a new process finds it still running
        assert resumed.id == task.id
        (stopped,) = again.cancel_all()
        assert stopped.status is Status.CANCELLED
