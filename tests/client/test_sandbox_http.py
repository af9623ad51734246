"""The client against the sandbox over real loopback HTTP, for every provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import KEYS, SEED_MODELS, assert_real_media

REMOTE = ["onerouter", "rixapi", "segmind", "netmind", "oxen"]

MODELS = SEED_MODELS


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
@pytest.mark.parametrize("provider", REMOTE)
async def test_success_for_each_media_kind(client: AsyncClient, provider: str, kind: str) -> None:
    model = f"{provider}:{MODELS[provider, kind]}"
    task = await client.run(model, prompt=f"a {kind} of a lighthouse", seed=7)
    assert task.status is Status.SUCCEEDED
    assert task.created_at is not None and task.finished_at is not None
    assert task.outputs, task
    output = task.outputs[0]
    assert output.kind == kind
    assert output.path is not None and output.path.exists()
    assert output.sha256 and output.path.name.startswith(output.sha256)
    assert_real_media(kind, output.path.read_bytes(), codec="h264")


async def test_updates_walk_the_lifecycle(client: AsyncClient) -> None:
    task = await client.submit("segmind:seedream-4.5", prompt="a cat [slow]")
    seen = [snapshot.status async for snapshot in client.updates(task)]
    assert seen[0] is Status.QUEUED and seen[-1] is Status.SUCCEEDED
    assert Status.RUNNING in seen
    assert seen.index(Status.RUNNING) < seen.index(Status.SUCCEEDED)


@pytest.mark.parametrize("provider", REMOTE)
async def test_failed_task_carries_the_provider_error(client: AsyncClient, provider: str) -> None:
    task = await client.submit(f"{provider}:{MODELS[provider, 'image']}", prompt="please [fail]")
    task = await client.wait(task, timeout=30)
    assert task.status is Status.FAILED
    assert task.error
    with pytest.raises(genwidgets.TaskFailed) as info:
        await client.run(f"{provider}:{MODELS[provider, 'image']}", prompt="again [fail]")
    assert info.value.task.id and info.value.task_id == info.value.task.id


@pytest.mark.parametrize("provider", REMOTE)
async def test_404_after_retention_is_expired(client: AsyncClient, sb: Any, provider: str) -> None:
    sb.set_faults(expire_after=0.05)
    task = await client.submit(f"{provider}:{MODELS[provider, 'image']}", prompt="soon gone [slow]")
    task = await client.wait(task, timeout=30)
    assert task.status is Status.EXPIRED
    with pytest.raises(genwidgets.TaskExpired):
        await client.run(f"{provider}:{MODELS[provider, 'image']}", prompt="gone again [slow]")


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
@pytest.mark.parametrize("provider", REMOTE)
async def test_429_burst_on_polls_is_ridden_out(
    client: AsyncClient, sb: Any, provider: str, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=4, retry_after=retry_after)
    task = await client.run(f"{provider}:{MODELS[provider, 'image']}", prompt="patience")
    assert task.status is Status.SUCCEEDED
    assert sb.stats()["statuses"].get("429", 0) >= 1


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("provider", REMOTE)
async def test_5xx_resets_and_malformed_bodies_on_polls(
    client: AsyncClient, sb: Any, provider: str
) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    tasks = [
        await client.submit(f"{provider}:{MODELS[provider, 'image']}", prompt=f"flaky {i}")
        for i in range(4)
    ]
    for task in tasks:
        done = await client.wait(task, timeout=60)
        assert done.status is Status.SUCCEEDED, done
        downloaded = await client.download(done)
        assert downloaded.outputs[0].path.exists()
    assert sum(sb.stats()["submit_fingerprints"].values()) == 4  # nothing submitted twice


async def test_submit_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain, match="not retried"):
        await client.submit("segmind:seedream-4.5", prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


async def test_submit_429_is_retried_and_creates_one_task(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_rate_limit_rate=0.5, retry_after=0.05, seed=3)
    for i in range(4):
        task = await client.submit("netmind:Qwen/Qwen-Image", prompt=f"busy {i}")
        assert task.status is Status.QUEUED
    stats = sb.stats()
    assert all(count == 1 for count in stats["submit_fingerprints"].values())
    assert len(stats["submit_fingerprints"]) == 4


async def test_oxen_cancel_reaches_the_server(client: AsyncClient, sb: Any) -> None:
    task = await client.submit("oxen:kling-video-v2-6-pro-text-to-video", prompt="long [slow]")
    cancelled = await client.cancel(task)
    assert cancelled.status is Status.CANCELLED
    polled = await client.get(task)
    assert polled.status is Status.CANCELLED
    assert sb.stats()["cancels"] >= 1


async def test_cancel_is_refused_where_the_provider_has_none(client: AsyncClient) -> None:
    task = await client.submit("segmind:seedream-4.5", prompt="no way back")
    assert not client.can_cancel(task)
    with pytest.raises(genwidgets.NotSupported):
        await client.cancel(task)


async def test_oxen_completion_arrives_over_sse(
    sb: Any, sandbox_client: Callable[..., AsyncClient]
) -> None:
    # Polls so slow that only the pushed event can finish this in time.
    async with sandbox_client(poll_interval=(60.0, 60.0)) as slow_poller:
        task = await slow_poller.submit("oxen:flux-image", prompt="pushed to me")
        done = await slow_poller.wait(task, timeout=15)
    assert done.status is Status.SUCCEEDED
    assert done.outputs[0].url
    assert sb.stats()["sse_connections"] >= 1


@pytest.mark.parametrize("provider", REMOTE)
async def test_bad_key_is_an_auth_error(
    sandbox_client: Callable[..., AsyncClient], provider: str
) -> None:
    async with sandbox_client({provider: "bad-key"}) as bad:
        with pytest.raises(genwidgets.AuthError) as info:
            await bad.submit(f"{provider}:{MODELS[provider, 'image']}", prompt="let me in")
    assert "bad-key" not in str(info.value)


@pytest.mark.parametrize("provider", REMOTE)
async def test_bad_params_fail_before_any_request(
    client: AsyncClient, sb: Any, provider: str
) -> None:
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit(f"{provider}:{MODELS[provider, 'image']}", prompt="")
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit(f"{provider}:{MODELS[provider, 'image']}", prompt="x", seed="abc")
    assert sb.stats()["submits"].get(provider, 0) == 0


async def test_missing_key_names_the_variable(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    async with AsyncClient(cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="SEGMIND_API_KEY"):
            await bare.submit("segmind:seedream-4.5", prompt="x")
        assert "segmind" not in bare.configured_providers()
        assert "local" in bare.configured_providers()


async def test_unknown_model_at_the_provider(client: AsyncClient) -> None:
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("netmind:no-such-model", prompt="x")


async def test_netmind_list_and_delete(client: AsyncClient, sb: Any) -> None:
    task = await client.run("netmind:Qwen/Qwen-Image", prompt="listed")
    listed = await client.list("netmind")
    assert task.id in {t.id for t in listed}
    await client.delete(task)
    assert sb.stats()["deletes"] >= 1


async def test_hostile_server_file_names_stay_in_the_cache(
    client: AsyncClient, sb: Any, tmp_path: Any
) -> None:
    sb.set_faults(hostile_names=True)
    task = await client.run("netmind:Qwen/Qwen-Image", prompt="x", dest=tmp_path / "out")
    for output in task.outputs:
        assert output.path.resolve().is_relative_to((tmp_path / "out").resolve())
        assert ".." not in output.path.name and not output.path.name.endswith(".sh")


async def test_download_bound_stops_large_outputs(sb: Any, tmp_path: Any) -> None:
    async with AsyncClient(
        api_keys=KEYS,
        base_urls=sb.urls,
        cache_dir=tmp_path,
        poll_interval=(0.05, 0.3),
        max_download_bytes=1000,
    ) as small:
        with pytest.raises(genwidgets.DownloadError, match="download bound"):
            await small.run("segmind:kling-video", prompt="too big for the bound")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_download_with_dest_names_files_after_the_task(
    client: AsyncClient, tmp_path: Any
) -> None:
    task = await client.run("rixapi:flux-pro", prompt="named", dest=tmp_path / "out")
    assert task.outputs[0].path.parent == tmp_path / "out"
    assert task.outputs[0].path.name.startswith(task.id.replace("/", "_"))


def test_sync_client_twin(sb: Any, tmp_path: Any) -> None:
    with genwidgets.Client(
        api_keys=KEYS, base_urls=sb.urls, cache_dir=tmp_path, poll_interval=(0.05, 0.3)
    ) as sync:
        task = sync.submit("rixapi:flux-pro", prompt="blocking is fine here")
        statuses = [snapshot.status for snapshot in sync.updates(task)]
        assert statuses[-1] is Status.SUCCEEDED
        done = sync.download(sync.wait(task))
        assert done.outputs[0].path.exists()
