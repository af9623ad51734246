"""The `veo:` adapter against the sandbox's Gemini API protocol (operations, files, storage),
over real HTTP.

Veo on the Gemini API makes videos only (Imagen is a synchronous ``:predict``, not an
operation), so there is no image case here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from tests.conftest import KEYS, SessionSandboxSuite, assert_real_media

MODEL = "veo:veo-3.0-fast-generate-001"
KEY = KEYS["veo"]


async def test_a_video_comes_through_the_keyed_redirecting_file_download(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.run(MODEL, prompt="a lion in the savannah", durationSeconds=4)
    assert task.status is Status.SUCCEEDED and task.id.startswith("models/veo-3.0-fast")
    (output,) = task.outputs
    assert output.kind == "video" and output.url and ":download?alt=media" in output.url
    assert output.path is not None
    assert_real_media("video", output.path.read_bytes())
    requests = sb.stats()["requests"]["veo"]
    # The Files API got the key (else a 403/400 there); storage got the bytes and no key.
    assert requests["download"] == 1 and requests["media"] == 1
    assert "media_with_key" not in requests


async def test_the_file_needs_the_key_and_redirects(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(MODEL, prompt="keyed"))
    url = task.outputs[0].url
    assert url
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(url)).status_code == 403  # no key: unregistered caller
        keyed = await plain.get(url, headers={"x-goog-api-key": KEY})
        assert keyed.status_code == 302 and keyed.headers["location"]
        # httpx forwards a custom header across hosts: this is what the client must not do.
        leaked = await plain.get(url, headers={"x-goog-api-key": KEY}, follow_redirects=True)
        assert leaked.status_code == 400


async def test_the_safety_filter_is_a_failure_with_its_reason(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(MODEL, prompt="something [unsafe]"))
    assert task.status is Status.FAILED and not task.outputs
    assert task.error and "safety filter" in task.error and "violate our policies" in task.error
    with pytest.raises(genwidgets.TaskFailed):
        await client.run(MODEL, prompt="again [unsafe]")


async def test_an_operation_error_is_a_failure(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(MODEL, prompt="please [fail]"))
    assert task.status is Status.FAILED and task.error and "code 13" in task.error


async def test_a_gone_operation_is_expired(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=0.05)
    task = await client.wait(await client.submit(MODEL, prompt="soon gone [slow]"))
    assert task.status is Status.EXPIRED and task.error and "2 days" in task.error


async def test_a_removed_file_is_an_expired_download(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=1.0)
    task = await client.wait(await client.submit(MODEL, prompt="download me later"))
    assert task.status is Status.SUCCEEDED
    await asyncio.sleep(1.1)
    with pytest.raises(genwidgets.DownloadError, match="expired"):
        await client.download(task)


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
async def test_429s_on_polls_and_submits_are_ridden_out(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=3, submit_rate_limit_rate=0.5, retry_after=retry_after, seed=5)
    task = await client.run(MODEL, prompt="patience")
    assert task.status is Status.SUCCEEDED
    stats = sb.stats()
    assert stats["statuses_by_provider"]["veo"]["429"] >= 3
    assert list(stats["submit_fingerprints"].values()) == [1]


@pytest.mark.usefixtures("instant_retries")
async def test_5xx_resets_and_malformed_polls(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    task = await client.run(MODEL, prompt="flaky")
    assert task.status is Status.SUCCEEDED and task.outputs[0].path
    assert sum(sb.stats()["submit_fingerprints"].values()) == 1


async def test_submit_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain):
        await client.submit(MODEL, prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


async def test_a_bad_key_answered_400_is_an_auth_error(
    sandbox_client: Callable[..., AsyncClient],
) -> None:
    for key, error in (("bad-key", genwidgets.AuthError), ("no-quota-key", genwidgets.QuotaError)):
        async with sandbox_client({"veo": key}) as c:
            with pytest.raises(error) as info:
                await c.submit(MODEL, prompt="let me in")
        assert info.value.status_code == 400  # type: ignore[attr-defined]
        assert key not in str(info.value)


async def test_missing_key_names_the_variables(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    async with AsyncClient(cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="GOOGLE_API_KEY"):
            await bare.submit(MODEL, prompt="x")
        assert "veo" not in bare.configured_providers()


async def test_bad_params_and_unknown_models(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.InvalidParams, match="durationSeconds"):
        await client.submit(MODEL, prompt="x", durationSeconds=5)  # refused before sending
    assert sb.stats()["submits"].get("veo", 0) == 0
    with pytest.raises(genwidgets.InvalidParams, match="durationSeconds"):
        await client.submit("veo:veo-4-experimental", prompt="x", durationSeconds=7)  # by Veo
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("veo:imagen-4", prompt="x")


async def test_no_cancel(client: AsyncClient) -> None:
    task = await client.submit(MODEL, prompt="unstoppable")
    assert not client.can_cancel(task)
    with pytest.raises(genwidgets.NotSupported):
        await client.cancel(task)


class TestVeoProtocol(SessionSandboxSuite):
    """The plugin test kit's round trips (genwidgets.testing), over Veo's protocol."""

    provider = "veo"
    models = {"video": "veo-3.0-fast-generate-001"}
    params = {"veo-3.0-fast-generate-001": {"durationSeconds": 4}}
    # the documented shapes are tested in tests/providers/, in their own format
    test_documented_shapes = None  # type: ignore[assignment]


async def test_downloads_through_the_redirect_reuse_their_connections(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The redirect's body is read, so its connection goes back to the pool: five downloads
    through the Files API's redirect open a connection or two per origin, not one each (a
    batch's burst of downloads would otherwise cost the provider a new connection per file)."""
    import httpcore

    tasks = [
        await client.run(MODEL, prompt=f"a reused connection {i}", durationSeconds=4)
        for i in range(5)
    ]
    assert all(task.status is Status.SUCCEEDED and task.outputs[0].path for task in tasks)
    created: list[str] = []
    real_create = httpcore.AsyncConnectionPool.create_connection

    def counting(self: httpcore.AsyncConnectionPool, origin: httpcore.Origin) -> Any:
        created.append(str(origin))
        return real_create(self, origin)

    monkeypatch.setattr(httpcore.AsyncConnectionPool, "create_connection", counting)
    for task in tasks:  # again, from the provider: the cached copies are set aside
        for output in task.outputs:
            assert output.path is not None
            output.path.unlink()
        fetched = await client.download(task.evolve(outputs=tuple(
            o.model_copy(update={"path": None, "sha256": None}) for o in task.outputs
        )))  # fmt: skip
        assert fetched.outputs[0].path is not None and fetched.outputs[0].path.exists()
    assert len(created) <= 4, created  # 10 requests over two origins
