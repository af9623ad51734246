"""The client against the sandbox's fal queue over real loopback HTTP.

Every outcome the fal digest describes: success for each media kind, a failure that ends
COMPLETED (the result's 4xx, a model's 5xx), expiry, 429s, each of the four cancel answers, bad and
missing keys, bad parameters (refused locally, or by the model when it runs), and the status SSE
stream the sandbox serves beside the polled protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

import genwidgets
import genwidgets.providers
from genwidgets import AsyncClient, Status
from genwidgets._transport import to_response
from genwidgets.providers.fal import FalProvider
from genwidgets.sandbox import Sandbox
from tests.conftest import KEYS, SessionSandboxSuite, assert_real_media, requests_to

KEY = KEYS["fal"]
HEADERS = {"Authorization": f"Key {KEY}"}
MODELS = {
    "image": "fal:fal-ai/flux/dev",
    "video": "fal:fal-ai/kling-video/v2.6/pro/text-to-video",
    "audio": "fal:fal-ai/stable-audio",
}
IMAGE = MODELS["image"]


def fal_requests(sb: Any) -> dict[str, int]:
    return requests_to(sb, "fal")


# ------------------------------------------------------------------------------ success
@pytest.mark.parametrize("kind", ["image", "video", "audio"])
async def test_success_for_each_media_kind(client: AsyncClient, sb: Any, kind: str) -> None:
    task = await client.run(MODELS[kind], prompt=f"a {kind} of a lighthouse", seed=7)
    assert task.status is Status.SUCCEEDED and task.provider_status == "COMPLETED"
    assert task.usage is not None and task.usage["metrics"]["inference_time"] > 0
    (output,) = task.outputs
    assert output.kind == kind and output.size and output.path is not None
    assert_real_media(kind, output.path.read_bytes())
    requests = fal_requests(sb)
    assert requests["submit"] == 1 and requests["result"] == 1  # the result is fetched once


async def test_updates_walk_the_lifecycle_with_logs(
    sandbox_client: Callable[..., AsyncClient],
) -> None:
    async with sandbox_client(poll_interval=(0.02, 0.05)) as client:
        first = await client.submit(IMAGE, prompt="step by step [slow]")
        snapshots = [task async for task in client.updates(first)]
    statuses = [task.status for task in snapshots]
    assert statuses[0] is Status.QUEUED and statuses[-1] is Status.SUCCEEDED
    running = [task for task in snapshots if task.status is Status.RUNNING]
    assert running and any(task.logs and task.logs[0] == "step 1/10" for task in running)
    assert snapshots[-1].outputs and snapshots[-1].started_at is not None


# ------------------------------------------------------------------------------ failures
async def test_a_failure_ends_completed_and_the_result_says_422(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="please [fail]"), timeout=30)
    assert task.status is Status.FAILED and task.provider_status == "COMPLETED"
    assert "flagged by the content checker" in (task.error or "") and "422" in (task.error or "")
    with pytest.raises(genwidgets.TaskFailed) as info:
        await client.run(IMAGE, prompt="again [fail]")
    assert info.value.task.status is Status.FAILED


async def test_a_model_crash_fails_once_and_is_not_fetched_forever(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="boom [crash]"), timeout=30)
    assert task.status is Status.FAILED and "HTTP 500" in (task.error or "")
    assert fal_requests(sb)["result"] == 1
    assert sb.stats()["statuses_by_provider"]["fal"]["500"] == 1


async def test_bad_params_refused_locally_send_nothing(client: AsyncClient, sb: Any) -> None:
    bad = ({"prompt": ""}, {"prompt": "x", "seed": "abc"}, {"prompt": "x", "num_images": 9})
    for params in bad:
        with pytest.raises(genwidgets.InvalidParams):
            await client.submit(IMAGE, **params)
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("fal:flux", prompt="x")  # not owner/app
    assert fal_requests(sb).get("submit", 0) == 0


async def test_bad_params_only_the_model_knows_fail_the_task(client: AsyncClient) -> None:
    task = await client.submit("fal:fal-ai/flux/schnell", prompt="x", num_images=9)
    task = await client.wait(task, timeout=30)
    assert task.status is Status.FAILED
    assert "less than or equal to 4" in (task.error or "")


# ------------------------------------------------------------------------------ expiry
async def test_a_request_gone_before_its_result_is_expired(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=0.05)
    task = await client.wait(await client.submit(IMAGE, prompt="soon gone [slow]"), timeout=30)
    assert task.status is Status.EXPIRED and "kept 1 h" in (task.error or "")
    sb.set_faults(expire_after=None)
    with pytest.raises(genwidgets.TaskExpired):
        await client.run(IMAGE, prompt="gone at success [expire]")


# ------------------------------------------------------------------------------ 429 and faults
@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
async def test_429_bursts_on_polls_and_results(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=4, retry_after=retry_after)
    task = await client.run(IMAGE, prompt="patience")
    assert task.status is Status.SUCCEEDED
    assert sb.stats()["statuses_by_provider"]["fal"]["429"] == 4


async def test_429_on_submit_is_retried_and_creates_one_task(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_rate_limit_rate=0.5, retry_after=0.05, seed=3)
    for i in range(4):
        assert (await client.submit(IMAGE, prompt=f"busy {i}")).status is Status.QUEUED
    prints = sb.stats()["submit_fingerprints"]
    assert len(prints) == 4 and set(prints.values()) == {1}
    assert sb.stats()["statuses_by_provider"]["fal"]["429"] >= 1


@pytest.mark.usefixtures("instant_retries")
async def test_5xx_resets_and_malformed_bodies_on_polls_and_results(
    client: AsyncClient, sb: Any
) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    tasks = [await client.submit(IMAGE, prompt=f"flaky {i}") for i in range(4)]
    for task in tasks:
        done = await client.wait(task, timeout=60)
        assert done.status is Status.SUCCEEDED, done
        assert (await client.download(done)).outputs[0].path.exists()
    stats = sb.stats()
    assert sum(stats["submit_fingerprints"].values()) == 4
    assert stats["resets"] + stats["malformed"] > 0


async def test_a_5xx_after_submit_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain):
        await client.submit(IMAGE, prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


# ------------------------------------------------------------------------------ cancel
async def test_queued_requests_know_their_position(
    long_queue: Sandbox, sandbox_client: Callable[..., AsyncClient]
) -> None:
    async with sandbox_client(sandbox=long_queue) as client:
        first = await client.submit(IMAGE, prompt="first in line")
        second = await client.submit(IMAGE, prompt="behind it")
        assert (first.queue_position, second.queue_position) == (0, 1)
        assert (await client.get(second)).queue_position == 1
        await client.cancel(first)
        assert (await client.get(second)).queue_position == 0


async def test_the_start_deadline_ends_a_request_that_never_started(long_queue: Sandbox) -> None:
    """The sandbox honours ``X-Fal-Request-Timeout``: past it, COMPLETED and a 504 result."""
    url = long_queue.urls["fal"] + "/fal-ai/flux/dev"
    async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
        start_within = {"X-Fal-Request-Timeout": "0.3"}
        submit = await http.post(url, json={"prompt": "x"}, headers=start_within)
        await asyncio.sleep(0.5)
        status = await http.get(submit.json()["status_url"])
        result = await http.get(submit.json()["response_url"])
    assert status.status_code == 200 and status.json()["error_type"] == "request_timeout"
    assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"
    fal = genwidgets.providers.get_provider_class("fal")(api_key=KEY)
    task = genwidgets.Task(id="r", provider="fal", model="fal-ai/flux/dev", status=Status.SUCCEEDED)
    ended = fal.parse_result(task, to_response(result))  # the client's own conversion
    assert ended.status is Status.FAILED and "request_timeout" in (ended.error or "")


async def test_the_tasks_deadline_is_fals_start_deadline(
    long_queue: Sandbox, sandbox_client: Callable[..., AsyncClient]
) -> None:
    """With fal's queue busy (5 s), a 2 s deadline ends the request at fal itself, client or no
    client: COMPLETED with a 504 ``request_timeout`` result."""
    async with sandbox_client(sandbox=long_queue) as client:
        task = await client.submit(IMAGE, prompt="in a hurry", deadline=2.0)
        await asyncio.sleep(2.4)
        ended = await client.get(task)  # one look, no deadline enforcement on this side
    assert ended.status is Status.FAILED, ended
    assert "request_timeout" in (ended.error or "") and "HTTP 504" in (ended.error or "")


async def test_cancel_ok_removes_a_queued_request(
    long_queue: Sandbox, sandbox_client: Callable[..., AsyncClient]
) -> None:
    async with sandbox_client(sandbox=long_queue) as client:
        task = await client.submit(IMAGE, prompt="never mind")
        cancelled = await client.cancel(task)
        assert cancelled.status is Status.CANCELLED and cancelled.provider_status == "OK"
        polled = await client.get(task.evolve(status=Status.QUEUED))
    assert polled.status is Status.CANCELLED  # COMPLETED, then the result's 499
    assert any(entry[1] == task.id for entry in long_queue.stats()["cancel_times"])


async def test_cancellation_requested_then_the_result_says_499(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.submit(IMAGE, prompt="long [slow]")
    while (task := await client.get(task)).status is not Status.RUNNING:
        await asyncio.sleep(0.02)
    asked = await client.cancel(task)
    assert asked.status is Status.RUNNING and asked.provider_status == "CANCELLATION_REQUESTED"
    done = await client.wait(asked, timeout=10)
    assert done.status is Status.CANCELLED and "client_cancelled" in (done.error or "")


async def test_an_app_that_ignores_the_cancellation_still_succeeds(
    client: AsyncClient, sb: Any
) -> None:
    task = await client.submit(IMAGE, prompt="stubborn [slow] [ignore-cancel]")
    while (task := await client.get(task)).status is not Status.RUNNING:
        await asyncio.sleep(0.02)
    assert (await client.cancel(task)).provider_status == "CANCELLATION_REQUESTED"
    done = await client.wait(task, timeout=10)
    assert done.status is Status.SUCCEEDED and done.outputs


async def test_cancel_already_completed_leaves_it_to_the_next_poll(
    client: AsyncClient, sb: Any
) -> None:
    stale = await client.submit(IMAGE, prompt="quick")
    await asyncio.sleep(0.6)  # done at the server; this snapshot does not know it
    answered = await client.cancel(stale)
    assert answered.status is Status.QUEUED and answered.provider_status == "ALREADY_COMPLETED"
    assert (await client.wait(answered, timeout=10)).status is Status.SUCCEEDED


async def test_cancel_not_found_is_expired(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(expire_after=0.05)
    stale = await client.submit(IMAGE, prompt="gone")
    await asyncio.sleep(0.1)
    answered = await client.cancel(stale)
    assert answered.status is Status.EXPIRED


async def test_a_passed_deadline_cancels_at_fal(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.DeadlineExceeded):
        await client.run(IMAGE, prompt="too slow [slow]", timeout=0.4)
    assert fal_requests(sb)["cancel"] == 1 and sb.stats()["cancel_times"]


# ------------------------------------------------------------------------------ keys
async def test_bad_key_is_an_auth_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"fal": "bad-key"}) as bad:
        with pytest.raises(genwidgets.AuthError) as info:
            await bad.submit(IMAGE, prompt="let me in")
    assert "bad-key" not in str(info.value) and "No user found" in str(info.value)


async def test_empty_balance_is_a_quota_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"fal": "no-quota-key"}) as broke:
        with pytest.raises(genwidgets.QuotaError, match="Exhausted balance"):
            await broke.submit(IMAGE, prompt="on credit")


async def test_missing_key_names_fal_key(
    sb: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    async with AsyncClient(base_urls=sb.urls, cache_dir=tmp_path) as keyless:
        with pytest.raises(genwidgets.MissingKey, match="FAL_KEY"):
            await keyless.submit(IMAGE, prompt="who am I")
    assert fal_requests(sb).get("submit", 0) == 0


async def test_a_key_from_id_and_secret(
    sb: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.setenv("FAL_KEY_ID", "key-id")
    monkeypatch.setenv("FAL_KEY_SECRET", "key-secret")
    async with AsyncClient(base_urls=sb.urls, cache_dir=tmp_path) as from_env:
        task = await from_env.submit(IMAGE, prompt="who am I")
        assert from_env.provider("fal").account == FalProvider(api_key=KEY).account
    assert task.status is Status.QUEUED


async def test_the_key_travels_as_key_scheme(sb: Any, tmp_path: Any) -> None:
    url = sb.urls["fal"] + "/fal-ai/flux/dev"
    async with httpx.AsyncClient() as http:
        bearer = {"Authorization": f"Bearer {KEY}"}
        refused = await http.post(url, json={"prompt": "x"}, headers=bearer)
        keyed = await http.post(url, json={"prompt": "x"}, headers=HEADERS)
    assert refused.status_code == 401 and keyed.status_code == 200
    assert keyed.json()["status"] == "IN_QUEUE" and keyed.json()["queue_position"] == 0


# ------------------------------------------------------------------------------ status stream
async def test_status_stream_pushes_each_change_and_closes(sb: Any) -> None:
    async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
        submit = await http.post(sb.urls["fal"] + "/fal-ai/flux/dev", json={"prompt": "x"})
        stream_url = submit.json()["status_url"] + "/stream"
        async with aconnect_sse(http, "GET", stream_url, params={"logs": "1"}) as sse:
            assert sse.response.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(event.data) async for event in sse.aiter_sse()]
    statuses = [event["status"] for event in events]
    assert statuses[0] == "IN_QUEUE" and statuses[-1] == "COMPLETED"
    assert "IN_PROGRESS" in statuses and statuses.count("COMPLETED") == 1
    assert events[-1]["metrics"]["inference_time"] > 0
    assert sb.stats()["sse_connections"] == 1
    lines = [line["message"] for event in events for line in event["logs"] or []]
    assert lines == [f"step {k}/10" for k in range(1, 11)]  # each event: only its new lines


async def test_status_stream_keeps_alive_while_queued() -> None:
    with Sandbox(task_seconds=0.1, queue_seconds=0.5, sse_keepalive=0.1) as sb:
        async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
            submit = await http.post(sb.urls["fal"] + "/fal-ai/x", json={"prompt": "x"})
            stream_url = submit.json()["status_url"] + "/stream"
            async with http.stream("GET", stream_url) as response:
                lines = [line async for line in response.aiter_lines()]
    assert ": keep-alive" in lines
    assert lines[-2].startswith("data: ") and json.loads(lines[-2][6:])["status"] == "COMPLETED"


# ------------------------------------------------------------------------------ the test kit
class TestFalProtocol(SessionSandboxSuite):
    """The plugin test kit's round trips (what every adapter passes), on fal's protocol."""

    # the digest's documented shapes are tested in tests/providers/test_fal.py, in its format
    test_documented_shapes = None  # type: ignore[assignment]
    provider = "fal"
    models = {kind: model.removeprefix("fal:") for kind, model in MODELS.items()}
    api_key = KEY
