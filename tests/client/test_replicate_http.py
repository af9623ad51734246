"""The client against the sandbox's Replicate protocol over real loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from genwidgets.providers import Response
from genwidgets.providers.replicate import ReplicateProvider
from tests.conftest import KEYS, SessionSandboxSuite, assert_real_media, requests_to

KEY = KEYS["replicate"]
FLUX = "replicate:black-forest-labs/flux-schnell"  # in the catalogue: a short job (Prefer: wait)
IMAGE = "replicate:acme/sdxl-image"  # not in the catalogue: plain create, then polls
VIDEO = "replicate:bytedance/seedance-1-pro"
AUDIO = "replicate:minimax/speech-02-turbo"
TEXT = "replicate:meta/meta-llama-3-8b-instruct"
VERSION = "a" * 64


def requests(sb: Any) -> dict[str, int]:
    return requests_to(sb, "replicate")


# ----------------------------------------------------------------------------------- success
@pytest.mark.parametrize(
    ("model", "kind", "shape"),
    [
        (FLUX, "image", list),
        (IMAGE, "image", list),
        (f"replicate:acme/sdxl:{VERSION}", "image", list),
        (VIDEO, "video", str),
        (AUDIO, "audio", dict),
    ],
)
async def test_success_for_each_media_kind(
    client: AsyncClient, sb: Any, model: str, kind: str, shape: type
) -> None:
    task = await client.run(model, prompt=f"a {kind} of a lighthouse", seed=7)
    assert task.status is Status.SUCCEEDED and task.provider_status == "succeeded"
    (output,) = task.outputs
    assert output.kind == kind and output.path is not None
    assert_real_media(kind, output.path.read_bytes())
    assert task.usage is not None and task.usage["predict_time"] > 0
    assert task.created_at and task.started_at and task.finished_at
    # the sandbox served `output` in the shape this kind has at Replicate
    provider = ReplicateProvider(api_key=KEY, base_url=sb.urls["replicate"])
    body = httpx.get(provider.build_poll(task).url, headers=provider.auth_headers()).json()
    assert isinstance(body["output"], shape)


async def test_text_output_is_the_text_not_a_download(client: AsyncClient, sb: Any) -> None:
    task = await client.run(TEXT, prompt="why is the sky blue?", seed=2)
    (output,) = task.outputs
    assert output.kind == "text" and output.url is None
    assert output.text == "Sandbox reply (seed 2) to: why is the sky blue?"
    assert requests(sb).get("files", 0) == 0  # nothing was downloaded


async def test_prefer_wait_answers_a_short_job_at_create(client: AsyncClient, sb: Any) -> None:
    task = await client.submit(TEXT, prompt="quick")
    assert task.status is Status.SUCCEEDED and task.outputs  # held until done: no poll needed
    assert requests(sb) == {"submit": 1}


async def test_prefer_wait_trap_processing_with_files_is_polled_on(
    client: AsyncClient, sb: Any
) -> None:
    """A held create comes back when the files exist, still `processing`: not done yet."""
    task = await client.submit(FLUX, prompt="held")
    assert task.status is Status.RUNNING and task.provider_status == "processing"
    assert task.outputs == ()
    done = await client.wait(task, timeout=30)
    assert done.status is Status.SUCCEEDED and len(done.outputs) == 1
    assert requests(sb)["poll"] >= 1
    # the finish the provider reports is the server's (benchmarks measure lateness from it)
    assert done.finished_at is not None
    finished = sb.finished_at("replicate", task.id)
    assert finished is not None and abs(done.finished_at.timestamp() - finished) < 0.001


async def test_updates_walk_the_lifecycle_with_progress(client: AsyncClient) -> None:
    task = await client.submit(VIDEO, prompt="a long one [slow]")
    seen = [snapshot async for snapshot in client.updates(task)]
    assert seen[0].status is Status.QUEUED and seen[0].provider_status == "starting"
    assert seen[-1].status is Status.SUCCEEDED
    running = [s for s in seen if s.status is Status.RUNNING]
    assert running and any(0 < (s.progress or 0) < 1 for s in running)  # from tqdm logs


# ----------------------------------------------------------------------------------- endings
async def test_failure_carries_the_error(client: AsyncClient) -> None:
    task = await client.wait(await client.submit(IMAGE, prompt="please [fail]"), timeout=30)
    assert task.status is Status.FAILED and "CUDA out of memory" in (task.error or "")
    with pytest.raises(genwidgets.TaskFailed):
        await client.run(IMAGE, prompt="again [fail]")


@pytest.mark.parametrize("how", ["fault", "marker"])
async def test_data_removed_is_expired(client: AsyncClient, sb: Any, how: str) -> None:
    """Replicate keeps the prediction and removes its data: never a 404."""
    if how == "fault":
        sb.set_faults(expire_after=0.05)
    task = await client.submit(IMAGE, prompt="soon gone [expire]" if how == "marker" else "gone")
    task = await client.wait(task, timeout=30)
    assert task.status is Status.EXPIRED and task.provider_status == "succeeded"
    assert sb.stats()["statuses_by_provider"]["replicate"].get("404", 0) == 0
    with pytest.raises(genwidgets.TaskExpired):
        await client.run(IMAGE, prompt="gone again [expire]")


async def test_aborted_ends_the_wait(client: AsyncClient, sb: Any) -> None:
    """Cancel-After passed before it started: terminal at once (the official SDKs spin)."""
    task = await client.wait(await client.submit(VIDEO, prompt="too late [abort]"), timeout=15)
    assert task.status is Status.EXPIRED and task.done
    assert task.provider_status == "aborted" and task.started_at is None
    assert "Cancel-After" in (task.error or "")
    assert requests(sb)["poll"] <= 10


async def test_cancel_reaches_the_server(client: AsyncClient, sb: Any) -> None:
    task = await client.submit(VIDEO, prompt="long [slow]")
    assert client.can_cancel(task)
    cancelled = await client.cancel(task)
    assert cancelled.status is Status.CANCELLED and cancelled.provider_status == "canceled"
    assert (await client.get(task)).status is Status.CANCELLED
    assert sb.stats()["cancels"] == 1 and requests(sb)["cancel"] == 1


async def test_a_passed_deadline_cancels_at_the_server(client: AsyncClient, sb: Any) -> None:
    with pytest.raises(genwidgets.DeadlineExceeded, match="cancelled"):
        await client.run(VIDEO, prompt="too long [slow]", timeout=0.6)
    assert sb.stats()["cancels"] == 1


@pytest.mark.parametrize(("deadline", "minutes"), [(90, 2), (None, 60)])
async def test_the_tasks_deadline_is_sent_as_cancel_after(
    client: AsyncClient, sb: Any, deadline: float | None, minutes: int
) -> None:
    """Replicate stops the prediction itself at the deadline (rounded up to whole minutes), even
    if the client is gone by then; without one, the client's default deadline (1 h) is sent."""
    task = await client.submit(VIDEO, prompt="bounded", deadline=deadline)
    provider = ReplicateProvider(api_key=KEY, base_url=sb.urls["replicate"])
    body = httpx.get(provider.build_poll(task).url, headers=provider.auth_headers()).json()
    created, ends = (datetime.fromisoformat(body[k]) for k in ("created_at", "deadline"))
    assert (ends - created).total_seconds() == pytest.approx(60 * minutes, abs=0.01)


def test_a_deadline_before_the_start_aborts(sb: Any) -> None:
    """The sandbox reads Cancel-After as a Go duration; one shorter than the queue aborts the
    prediction before it starts, and the adapter reads that as terminal."""
    provider = ReplicateProvider(api_key=KEY, base_url=sb.urls["replicate"])
    request = provider.build_submit("acme/sdxl-image", {"prompt": "x"})
    answer = httpx.post(request.url, headers=dict(request.headers), json=request.json)
    assert answer.status_code == 201 and answer.headers["location"] == answer.json()["urls"]["get"]
    headers = {**request.headers, "Cancel-After": "10ms"}
    answer = httpx.post(request.url, headers=headers, json=request.json)
    task = provider.parse_submit("acme/sdxl-image", {"prompt": "x"}, _response(answer))
    time.sleep(0.05)
    polled = httpx.get(provider.build_poll(task).url, headers=provider.auth_headers())
    aborted = provider.parse_poll(task, _response(polled))
    assert (aborted.status, aborted.provider_status) == (Status.EXPIRED, "aborted")


def _response(answer: httpx.Response) -> Response:
    headers = {k.lower(): v for k, v in answer.headers.items()}
    return Response(answer.status_code, headers, answer.content, str(answer.url))


# ----------------------------------------------------------------------------------- faults
@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("retry_after", [0.2, None])
async def test_429_burst_on_polls_is_ridden_out(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(burst_429=4, retry_after=retry_after)
    task = await client.run(IMAGE, prompt="patience")
    assert task.status is Status.SUCCEEDED
    assert sb.stats()["statuses_by_provider"]["replicate"]["429"] == 4


@pytest.mark.parametrize("retry_after", [0.05, None])
async def test_429_on_create_is_retried_and_creates_one_prediction(
    client: AsyncClient, sb: Any, retry_after: float | None
) -> None:
    sb.set_faults(submit_rate_limit_rate=0.5, retry_after=retry_after, seed=3)
    for i in range(4):
        await client.submit(IMAGE, prompt=f"busy {i}")
    stats = sb.stats()
    assert stats["statuses_by_provider"]["replicate"].get("429", 0) >= 1
    assert sorted(stats["submit_fingerprints"].values()) == [1, 1, 1, 1]


@pytest.mark.usefixtures("instant_retries")
async def test_5xx_resets_and_malformed_bodies_on_polls(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=11)
    tasks = [await client.submit(IMAGE, prompt=f"flaky {i}") for i in range(4)]
    for task in tasks:
        done = await client.download(await client.wait(task, timeout=60))
        assert done.status is Status.SUCCEEDED and done.outputs[0].path.exists()
    stats = sb.stats()
    assert stats["resets"] + stats["malformed"] >= 1
    assert sum(stats["submit_fingerprints"].values()) == 4  # nothing created twice


async def test_create_5xx_is_not_retried(client: AsyncClient, sb: Any) -> None:
    sb.set_faults(submit_error_rate=1.0)
    with pytest.raises(genwidgets.SubmitUncertain, match="not retried"):
        await client.submit(IMAGE, prompt="bill me once")
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


# ----------------------------------------------------------------------------------- refusals
async def test_bad_key_is_an_auth_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"replicate": "bad-key"}) as bad:
        with pytest.raises(genwidgets.AuthError, match="valid authentication token") as info:
            await bad.submit(IMAGE, prompt="let me in")
    assert "bad-key" not in str(info.value)


async def test_no_credit_is_a_quota_error(sandbox_client: Callable[..., AsyncClient]) -> None:
    async with sandbox_client({"replicate": "no-quota-key"}) as broke:
        with pytest.raises(genwidgets.QuotaError, match="insufficient credit"):
            await broke.submit(IMAGE, prompt="on credit")


async def test_missing_key_names_the_variable(monkeypatch: Any, sb: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    async with AsyncClient(base_urls=sb.urls, cache_dir=tmp_path) as bare:
        with pytest.raises(genwidgets.MissingKey, match="REPLICATE_API_TOKEN"):
            await bare.submit(IMAGE, prompt="x")
        assert "replicate" not in bare.configured_providers()
    assert requests(sb) == {}


async def test_bad_params_fail_before_any_request(client: AsyncClient, sb: Any) -> None:
    bad: list[dict[str, Any]] = [
        {"prompt": ""},
        {"prompt": "x", "seed": "abc"},
        {"prompt": "x", "num_outputs": 9},
    ]
    for params in bad:
        with pytest.raises(genwidgets.InvalidParams):
            await client.submit(FLUX, **params)
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit("replicate:acme/../x", prompt="x")
    assert requests(sb) == {}


async def test_params_the_server_refuses_are_invalid_params(client: AsyncClient, sb: Any) -> None:
    """A model outside the catalogue is checked by Replicate: its 422 is InvalidParams."""
    with pytest.raises(genwidgets.InvalidParams, match="num_outputs"):
        await client.submit(IMAGE, prompt="x", num_outputs=9)
    assert sb.stats()["tasks"] == 0


@pytest.mark.parametrize(
    "model", ["replicate:acme/no-such-model", f"replicate:acme/thing:{'z' * 10}"]
)
async def test_unknown_model_or_version_at_the_provider(
    client: AsyncClient, sb: Any, model: str
) -> None:
    with pytest.raises(genwidgets.UnknownModel):
        await client.submit(model, prompt="x")
    assert sb.stats()["tasks"] == 0


# ----------------------------------------------------------------------------------- test kit
class TestReplicateProtocol(SessionSandboxSuite):
    """The adapter contract and the kit's round trips (genwidgets.testing), on the session's
    sandbox; outside the catalogue first, so the kit's cancel meets a plain create."""

    provider = "replicate"
    models: ClassVar[Mapping[str, str]] = {
        "image": IMAGE.partition(":")[2],
        "video": VIDEO.partition(":")[2],
        "audio": AUDIO.partition(":")[2],
    }
