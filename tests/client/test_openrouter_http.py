"""The `openrouter:` adapter against the sandbox's OpenRouter videos protocol, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import SessionSandboxSuite, assert_real_media

MODEL = "openrouter:google/veo-3.1"


async def test_a_video_is_made_paid_for_and_downloaded_with_the_key(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.run(MODEL, prompt="a lighthouse at dusk", duration=2, seed=3)
    assert task.status is Status.SUCCEEDED and task.provider_status == "completed"
    assert task.cost == 0.25 and task.usage == {"cost": 0.25, "is_byok": False}
    (output,) = task.outputs
    assert output.kind == "video" and output.url and "/content?index=0" in output.url
    assert output.path is not None
    assert_real_media("video", output.path.read_bytes())
    stats = sb.stats()
    assert stats["requests"]["openrouter"]["content"] == 1
    assert stats["statuses_by_provider"]["openrouter"].get("401", 0) == 0  # key was sent


async def test_the_content_route_refuses_a_download_without_the_key(
    client: AsyncClient, sb: Any
) -> None:
    import httpx

    task = await client.wait(await client.submit(MODEL, prompt="keyed", duration=1))
    assert task.outputs[0].url
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(task.outputs[0].url)).status_code == 401


async def test_a_job_that_jumps_from_pending_to_completed(client: AsyncClient) -> None:
    task = await client.submit(MODEL, prompt="quiet until done [jump]", duration=1)
    seen = [snapshot.provider_status async for snapshot in client.updates(task)]
    assert "in_progress" not in seen and seen[-1] == "completed"


async def test_failed_cancelled_and_expired_jobs(client: AsyncClient) -> None:
    failed = await client.wait(await client.submit(MODEL, prompt="no [fail]", duration=1))
    assert failed.status is Status.FAILED and failed.error == "Content policy violation"
    cancelled = await client.wait(await client.submit(MODEL, prompt="[cancelled]", duration=1))
    assert cancelled.status is Status.CANCELLED and cancelled.error == "Job was cancelled"
    expired = await client.wait(await client.submit(MODEL, prompt="gone [expire]", duration=1))
    assert expired.status is Status.EXPIRED
    assert expired.error == "Job exceeded maximum time to live"
    with pytest.raises(genwidgets.TaskFailed):
        await client.run(MODEL, prompt="again [fail]", duration=1)


async def test_an_unknown_job_answers_404_and_is_expired(client: AsyncClient) -> None:
    task = await client.submit(MODEL, prompt="x", duration=1)
    lost = await client.get(task.evolve(id="job-unknown", provider_data={}))
    assert lost.status is Status.EXPIRED


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
async def test_429s_on_polls_and_submits_are_ridden_out(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=3, submit_rate_limit_rate=0.5, retry_after=retry_after, seed=5)
    task = await client.run(MODEL, prompt="patience", duration=1)
    assert task.status is Status.SUCCEEDED
    stats = sb.stats()
    assert stats["statuses_by_provider"]["openrouter"]["429"] >= 3
    assert list(stats["submit_fingerprints"].values()) == [1]


@pytest.mark.usefixtures("instant_retries")
async def test_5xx_resets_and_malformed_polls(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    task = await client.run(MODEL, prompt="flaky", duration=1)
    assert task.status is Status.SUCCEEDED and task.outputs[0].path
    assert sum(sb.stats()["submit_fingerprints"].values()) == 1


async def test_submit_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain):
        await client.submit(MODEL, prompt="bill me once", duration=1)
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


async def test_bad_key_no_credits_and_missing_key(
    sandbox_client: Callable[..., AsyncClient], tmp_path: Any, monkeypatch: Any
) -> None:
    for key, error in (("bad-key", genwidgets.AuthError), ("no-quota-key", genwidgets.QuotaError)):
        async with sandbox_client({"openrouter": key}) as other:
            with pytest.raises(error) as info:
                await other.submit(MODEL, prompt="let me in", duration=1)
        assert key not in str(info.value)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    async with AsyncClient(cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="OPENROUTER_API_KEY"):
            await bare.submit(MODEL, prompt="x")


async def test_bad_params_and_unknown_models(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit(MODEL, prompt="x", duration=0)  # refused before sending
    assert sb.stats()["submits"].get("openrouter", 0) == 0
    with pytest.raises(genwidgets.InvalidParams, match="duration"):
        await client.submit("openrouter:acme/video", prompt="x", duration="long")  # by the server
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("openrouter:no-such-model", prompt="x")


async def test_no_cancel(client: AsyncClient) -> None:
    task = await client.submit(MODEL, prompt="unstoppable", duration=1)
    assert not client.can_cancel(task)
    with pytest.raises(genwidgets.NotSupported):
        await client.cancel(task)


class TestOpenRouterProtocol(SessionSandboxSuite):
    """The plugin test kit's round trips (genwidgets.testing), over OpenRouter's protocol."""

    provider = "openrouter"
    models = {"video": "google/veo-3.1"}
    params = {"google/veo-3.1": {"duration": 1}}
    # the documented shapes are tested in tests/providers/, in their own format
    test_documented_shapes = None  # type: ignore[assignment]
