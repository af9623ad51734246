"""Downloads: an expired URL is asked for again, and says so when no fresh one comes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from genwidgets import AsyncClient, DownloadError, Status
from genwidgets._downloads import ExpiredURL


async def test_an_expired_url_is_asked_for_again_then_reported(
    client: AsyncClient, sb: Any, tmp_path: Path
) -> None:
    sb.set_faults(one_shot_urls=True)  # a URL works once, then answers 403 like an expired one
    task = await client.wait(await client.submit("onerouter:acme/text-to-image", prompt="x"))
    assert task.status is Status.SUCCEEDED
    url = task.outputs[0].url
    assert url is not None and httpx.get(url).status_code == 200  # someone else used it
    polls = sb.stats()["requests"]["onerouter"]["poll"]
    with pytest.raises(ExpiredURL, match="403") as info:
        await client.download(task)
    assert isinstance(info.value, DownloadError) and info.value.task_id == task.id
    # The provider was asked for the task again (the sandbox hands out the same URL: no luck).
    assert sb.stats()["requests"]["onerouter"]["poll"] == polls + 1
