"""The client against the sandbox's Luma (Dream Machine v1) protocol, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import SessionSandboxSuite, assert_real_media

MODELS = {"image": "photon-flash-1", "video": "ray-2"}
IMAGE = "luma:photon-1"


@pytest.mark.parametrize("kind", ["image", "video"])
async def test_success_for_each_media_kind(client: AsyncClient, kind: str) -> None:
    task = await client.run(f"luma:{MODELS[kind]}", prompt=f"a {kind} of a lighthouse", seed=7)
    assert task.status is Status.SUCCEEDED and task.provider_status == "completed"
    assert task.created_at is not None and task.finished_at is not None
    output = task.outputs[0]
    assert output.kind == kind and output.path is not None
    assert_real_media(kind, output.path.read_bytes())


async def test_a_video_walks_queued_dreaming_completed(client: AsyncClient) -> None:
    task = await client.submit("luma:ray-2", prompt="a lake [slow]", duration="5s")
    seen = [snapshot.provider_status async for snapshot in client.updates(task)]
    assert seen[0] == "queued" and seen[-1] == "completed" and "dreaming" in seen


async def test_failure_carries_the_reason(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="please [fail]"), timeout=30)
    assert task.status is Status.FAILED and "moderation" in (task.error or "")
    with pytest.raises(genwidgets.TaskFailed):
        await client.run("luma:ray-2", prompt="again [fail]")


async def test_expired_generation(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=0.05)
    task = await client.wait(await client.submit(IMAGE, prompt="soon gone [slow]"), timeout=30)
    assert task.status is Status.EXPIRED
    with pytest.raises(genwidgets.TaskExpired):
        await client.run(IMAGE, prompt="gone again [slow]")


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
        assert (await client.download(done)).outputs[0].path.exists()
    assert sum(sb.stats()["submit_fingerprints"].values()) == 3


async def test_submit_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain):
        await client.submit(IMAGE, prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


async def test_no_cancel_only_delete(client: AsyncClient, sb: Any) -> None:
    task = await client.submit("luma:ray-2", prompt="long [slow]")
    assert not client.can_cancel(task)
    with pytest.raises(genwidgets.NotSupported):
        await client.cancel(task)
    listed = await client.list("luma", limit=10)
    assert task.id in {t.id for t in listed}
    await client.delete(task)
    assert sb.stats()["deletes"] == 1
    assert (await client.get(task)).status is Status.EXPIRED  # gone from Luma


async def test_a_passed_deadline_stops_following_and_says_it_may_still_bill(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.submit("luma:ray-2", prompt="too slow [slow]", deadline=0.3)
    with pytest.raises(genwidgets.DeadlineExceeded, match="cannot cancel"):
        await client.wait(task, timeout=30)
    assert sb.stats()["deletes"] == 0  # never "cancelled" by deleting it


async def test_no_quota_key_is_a_quota_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"luma": "no-quota-key"}) as broke:
        with pytest.raises(genwidgets.QuotaError):
            await broke.submit(IMAGE, prompt="on credit")


async def test_bad_key_is_an_auth_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"luma": "bad-key"}) as bad:
        with pytest.raises(genwidgets.AuthError) as info:
            await bad.submit(IMAGE, prompt="let me in")
    assert "bad-key" not in str(info.value)


async def test_missing_key_names_the_variable(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("LUMAAI_API_KEY", raising=False)
    async with AsyncClient(cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="LUMAAI_API_KEY"):
            await bare.submit(IMAGE, prompt="x")
        assert "luma" not in bare.configured_providers()


async def test_bad_params(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit(IMAGE, prompt="")
    with pytest.raises(genwidgets.InvalidParams):
        await client.submit("luma:ray-2", prompt="x", duration="7s")
    assert sb.stats()["submits"].get("luma", 0) == 0
    # A model outside the catalogue is checked by Luma: its 400 says what is wrong.
    with pytest.raises(genwidgets.ProviderError, match="duration"):
        await client.submit("luma:ray-3", prompt="x", duration="7s")
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("luma:no-such-model", prompt="x")


async def test_the_key_leaks_nowhere(
    sb: Any, tmp_path: Any, caplog: Any, sandbox_client: Callable[..., AsyncClient]
) -> None:
    secret = "SENTINEL-luma-7f3a9c1e"
    caplog.set_level("DEBUG")
    sb.set_faults(error_rate=0.3, seed=5)
    seen: list[str] = []
    async with sandbox_client({"luma": secret}, journal=tmp_path / "journal.sqlite") as client:
        seen.append(repr(client.provider("luma")))
        done = await client.run(IMAGE, prompt="keep it secret")
        failed = await client.wait(await client.submit(IMAGE, prompt="x [fail]"))
        seen += [t.model_dump_json() + repr(t) for t in (done, failed)]
        await client.delete(done)
    seen += [r.getMessage() for r in caplog.records]
    assert not [s for s in seen if secret in s]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


class TestLumaProtocol(SessionSandboxSuite):
    """The test kit's round trips (what every protocol must survive), on the session sandbox."""

    provider = "luma"
    models = {"image": "photon-1", "video": "ray-2"}
    params = {}
