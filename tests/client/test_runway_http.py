"""The client against the sandbox's Runway protocol, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import SessionSandboxSuite, assert_real_media

MODELS = {
    "image": ("text_to_image/gen4_image", {}),
    "video": ("image_to_video/gen4_turbo", {"promptImage": "https://example.com/b.jpg"}),
    "audio": ("sound_effect/eleven_text_to_sound_v2", {"duration": 1.0}),
}
IMAGE = "runway:text_to_image/gen4_image"


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
async def test_success_for_each_media_kind(client: AsyncClient, kind: str) -> None:
    model, extra = MODELS[kind]
    task = await client.run(f"runway:{model}", prompt=f"a {kind} of a lighthouse", seed=7, **extra)
    assert task.status is Status.SUCCEEDED and task.provider_status == "SUCCEEDED"
    assert task.created_at is not None and task.finished_at is not None
    output = task.outputs[0]
    assert output.kind == kind and output.path is not None
    assert_real_media(kind, output.path.read_bytes())


async def test_over_the_concurrency_tasks_are_throttled_then_run(
    client: AsyncClient, sb: Any
) -> None:
    """THROTTLED is Runway queueing past the account's concurrency: queued, never an error."""
    tasks = [await client.submit(IMAGE, prompt=f"crowd {i} [slow]") for i in range(3)]
    third = await client.get(tasks[2])
    assert (third.status, third.provider_status) == (Status.QUEUED, "THROTTLED")
    for task in tasks:
        assert (await client.wait(task, timeout=60)).status is Status.SUCCEEDED
    assert sb.stats()["statuses"].get("429", 0) == 0


async def test_failure_carries_reason_and_code(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="please [fail]"), timeout=30)
    assert task.status is Status.FAILED and "SAFETY." in (task.error or "")
    with pytest.raises(genwidgets.TaskFailed):
        await client.run(IMAGE, prompt="again [fail]")


async def test_expired_task(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=0.05)
    task = await client.wait(await client.submit(IMAGE, prompt="soon gone [slow]"), timeout=30)
    assert task.status is Status.EXPIRED


async def test_an_expired_output_url_is_refreshed_by_asking_the_task_again(
    client: AsyncClient, sb: Any
) -> None:
    """Runway's URLs die in 24-48 h and a fresh GET of the task signs new ones: a download
    that meets a dead URL asks the task again (one signed URL works once here)."""
    sb.set_faults(one_shot_urls=True)
    task = await client.wait(await client.submit(IMAGE, prompt="fetch me twice"), timeout=30)
    first = await client.download(task)
    first.outputs[0].path.unlink()  # gone from the cache: the same URL must be fetched again
    polls = sb.stats()["requests"]["runway"]["poll"]
    again = await client.download(task)
    assert again.outputs[0].path.exists()
    assert sb.stats()["requests"]["runway"]["poll"] == polls + 1  # asked once more, for new URLs
    assert sb.stats()["statuses_by_provider"]["runway"].get("403") == 1


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
async def test_429_on_polls_is_ridden_out(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=4, retry_after=retry_after)
    assert (await client.run(IMAGE, prompt="patience")).status is Status.SUCCEEDED
    assert sb.stats()["statuses"].get("429", 0) >= 4


async def test_429_on_submit_is_retried_and_creates_one_task(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_rate_limit_rate=0.5, retry_after=0.05, seed=3)
    for i in range(4):
        assert (await client.submit(IMAGE, prompt=f"busy {i}")).status is Status.QUEUED
    prints = sb.stats()["submit_fingerprints"]
    assert len(prints) == 4 and set(prints.values()) == {1}
    assert sb.stats()["statuses"].get("429", 0) >= 1


@pytest.mark.usefixtures("instant_retries")
async def test_5xx_resets_and_malformed_bodies_on_polls(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    for i in range(3):
        done = await client.wait(await client.submit(IMAGE, prompt=f"flaky {i}"), timeout=60)
        assert done.status is Status.SUCCEEDED, done
    assert sum(sb.stats()["submit_fingerprints"].values()) == 3


async def test_submit_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain):
        await client.submit(IMAGE, prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


async def test_cancel_stops_a_live_task(client: AsyncClient, sb: Any) -> None:
    task = await client.submit(IMAGE, prompt="long [slow]")
    cancelled = await client.cancel(task)
    assert cancelled.status is Status.CANCELLED
    polled = await client.get(task.evolve(status=Status.RUNNING))
    assert polled.status is Status.CANCELLED and polled.provider_status == "CANCELLED"
    assert (sb.stats()["cancels"], sb.stats()["deletes"]) == (1, 0)


async def test_a_finished_task_is_never_deleted_by_a_cancel(client: AsyncClient, sb: Any) -> None:
    task = await client.run(IMAGE, prompt="keep me")
    assert (await client.cancel(task)).status is Status.SUCCEEDED
    with pytest.raises(genwidgets.NotSupported, match="delete"):
        client.provider("runway").build_cancel(task)  # the adapter refuses it too
    assert (sb.stats()["cancels"], sb.stats()["deletes"]) == (0, 0)
    assert (await client.get(task.evolve(outputs=()))).outputs  # the outputs are still there


async def test_a_cancel_on_a_stale_snapshot_never_deletes_a_finished_task(
    client: AsyncClient, sb: Any
) -> None:
    """The client's snapshot still says queued; Runway finished it since: the client asks again
    before the DELETE and keeps the result instead of deleting it."""
    task = await client.submit(IMAGE, prompt="done before the cancel")
    await asyncio.sleep(1.0)  # the sandbox finishes it in 0.4 s; nobody polled
    assert task.status is Status.QUEUED
    kept = await client.cancel(task)
    assert kept.status is Status.SUCCEEDED and kept.outputs
    assert (sb.stats()["cancels"], sb.stats()["deletes"]) == (0, 0)


async def test_a_passed_deadline_cancels_at_runway(client: AsyncClient, sb: Any) -> None:
    task = await client.submit(IMAGE, prompt="too slow [slow]", deadline=0.5)
    with pytest.raises(genwidgets.DeadlineExceeded, match="cancelled"):
        await client.wait(task, timeout=30)
    assert sb.stats()["cancels"] == 1 and sb.stats()["deletes"] == 0


async def test_bad_key_is_an_auth_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"runway": "bad-key"}) as bad:
        with pytest.raises(genwidgets.AuthError) as info:
            await bad.submit(IMAGE, prompt="let me in")
    assert "bad-key" not in str(info.value)


async def test_missing_key_names_the_variable(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    async with AsyncClient(cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="RUNWAYML_API_SECRET"):
            await bare.submit(IMAGE, prompt="x")
        assert "runway" not in bare.configured_providers()


async def test_bad_params(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit(IMAGE, prompt="")
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit("runway:image_to_video/gen4_turbo", prompt="no first frame")
    assert sb.stats()["submits"].get("runway", 0) == 0
    # A model outside the catalogue is checked by Runway: its 400 names the parameter.
    with pytest.raises(genwidgets.ProviderError, match="promptImage"):
        await client.submit("runway:image_to_video/gen4_newer", prompt="no first frame")
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("runway:text_to_image/no-such-model", prompt="x")
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("runway:text_to_nothing/gen4", prompt="x")


async def test_the_key_leaks_nowhere(
    sb: Any, tmp_path: Any, caplog: Any, sandbox_client: Callable[..., AsyncClient]
) -> None:
    secret = "SENTINEL-runway-7f3a9c1e"
    caplog.set_level("DEBUG")
    sb.set_faults(error_rate=0.3, seed=5)
    seen: list[str] = []
    async with sandbox_client({"runway": secret}, journal=tmp_path / "journal.sqlite") as client:
        seen.append(repr(client.provider("runway")))
        done = await client.run(IMAGE, prompt="keep it secret")
        failed = await client.wait(await client.submit(IMAGE, prompt="x [fail]"))
        cancelled = await client.cancel(await client.submit(IMAGE, prompt="y [slow]"))
        seen += [t.model_dump_json() + repr(t) for t in (done, failed, cancelled)]
    seen += [r.getMessage() for r in caplog.records]
    assert not [s for s in seen if secret in s]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


class TestRunwayProtocol(SessionSandboxSuite):
    """The test kit's round trips (what every protocol must survive), on the session sandbox."""

    provider = "runway"
    models = {kind: model for kind, (model, _) in MODELS.items()}
    params = {model: extra for model, extra in MODELS.values()}
