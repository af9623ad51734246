"""The sandbox over real loopback HTTP with raw httpx: every protocol, every fault, the CLI.

These tests speak each provider's documented wire format directly (no genwidgets client), so a
wrong shape here is a wrong sandbox, not a client bug.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from genwidgets.sandbox import DEFAULT_PORTS, FaultConfig, MediaSizes, Sandbox
from genwidgets.sandbox import PROVIDERS as SERVED  # every protocol found (plugins' too)
from genwidgets.sandbox.__main__ import main as cli_main
from genwidgets.sandbox._result_files import MAX_MEDIA_SECONDS, requested_seconds
from genwidgets.sandbox._state import kind_for
from tests.conftest import SEED_MODELS

PROVIDERS = ["onerouter", "rixapi", "segmind", "netmind", "oxen"]
KEY = "test-key"
MODELS = SEED_MODELS
TERMINAL = {"succeeded", "failed", "cancelled"}


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(task_seconds=0.2, queue_seconds=0.05, sse_keepalive=0.2) as sandbox:
        yield sandbox


@pytest.fixture
def sb(box: Sandbox) -> Iterator[Sandbox]:
    box.reset()
    yield box
    box.reset()


# ----------------------------------------------------------------------------------- protocol
def auth(provider: str, key: str = KEY) -> dict[str, str]:
    if not key:
        return {}
    if provider == "segmind":
        return {"x-api-key": key}
    if provider == "onerouter":
        return {"Authorization": key}  # the documented raw form
    return {"Authorization": f"Bearer {key}"}


def submit(
    sb: Sandbox,
    http: httpx.Client,
    provider: str,
    model: str,
    prompt: str,
    key: str = KEY,
    **extra: Any,
) -> httpx.Response:
    base, headers = sb.urls[provider], auth(provider, key)
    if provider == "onerouter":
        body = {"model": model, "content": [{"type": "text", "text": prompt}], **extra}
        return http.post(f"{base}/v1/images/generations", json=body, headers=headers)
    if provider == "rixapi":
        body = {"model": model, "input": {"prompt": prompt, **extra}}
        return http.post(f"{base}/v1/task/submit", json=body, headers=headers)
    if provider == "segmind":
        return http.post(f"{base}/v2/{model}", json={"prompt": prompt, **extra}, headers=headers)
    if provider == "netmind":
        body = {"model": model, "config": {"prompt": prompt, **extra}}
        return http.post(f"{base}/v1/generation", json=body, headers=headers)
    return http.post(
        f"{base}/api/ai/queue", json={"model": model, "prompt": prompt, **extra}, headers=headers
    )


def handle(sb: Sandbox, provider: str, body: dict[str, Any]) -> str:
    """What to poll: a URL for OneRouter (data.urls.get), an id elsewhere."""
    if provider == "onerouter":
        return body["data"]["urls"]["get"]
    if provider == "segmind":
        return body["request_id"]
    if provider == "oxen":
        return body["generations"][0]["generation_id"]
    return body["id"]


def poll_url(sb: Sandbox, provider: str, ref: str) -> str:
    base = sb.urls[provider]
    return {
        "onerouter": ref,
        "rixapi": f"{base}/v1/task/{ref}",
        "segmind": f"{base}/v2/requests/{ref}/status",
        "netmind": f"{base}/v1/generation/{ref}",
        "oxen": f"{base}/api/ai/queue/{ref}",
    }[provider]


NORMAL = {
    "created": "queued",
    "in_progress": "running",
    "processing": "running",
    "completed": "succeeded",
    "queued": "queued",
    "QUEUED": "queued",
    "PROCESSING": "running",
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "failed": "failed",
    "pending": "queued",
    "initializing": "running",
    "succeeded": "succeeded",
    "cancelled": "cancelled",
}


def status_of(provider: str, body: dict[str, Any]) -> str:
    raw = body["data"]["status"] if provider == "onerouter" else body["status"]
    return NORMAL[raw]


def wait_done(
    sb: Sandbox, http: httpx.Client, provider: str, ref: str, key: str = KEY, timeout: float = 10.0
) -> tuple[httpx.Response, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(poll_url(sb, provider, ref), headers=auth(provider, key))
        status = status_of(provider, response.json())
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            return response, seen
        time.sleep(0.03)
    raise AssertionError(f"{provider} task {ref} never finished; saw {seen}")


def result_urls(
    sb: Sandbox, http: httpx.Client, provider: str, ref: str, body: dict[str, Any]
) -> list[str]:
    if provider == "onerouter":
        return body["data"]["outputs"]
    if provider == "rixapi":
        return body["outputs"]
    if provider == "segmind":
        full = http.get(f"{sb.urls['segmind']}/v2/requests/{ref}", headers=auth("segmind")).json()
        return [full["output"]]
    if provider == "netmind":
        return [item["url"] for item in body["result"]["data"]]
    return [body["result_url"]]


def check_media(kind: str, response: httpx.Response) -> None:
    data = response.content
    assert response.headers["content-length"] == str(len(data))
    if kind == "image":
        assert response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == "PNG" and image.size[0] > 0
    elif kind == "audio":
        assert response.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(data)) as sound:
            assert sound.getnframes() > 0
    else:
        assert response.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert sum(1 for _ in container.decode(stream)) > 0


# ----------------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("kind", ["image", "video", "audio"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_poll_download(sb: Sandbox, http: httpx.Client, provider: str, kind: str) -> None:
    response = submit(
        sb, http, provider, MODELS[provider, kind], f"a {kind} of a lighthouse", seed=7
    )
    assert response.status_code == 200, response.text
    ref = handle(sb, provider, response.json())
    done, seen = wait_done(sb, http, provider, ref)
    assert seen[-1] == "succeeded" and seen[0] in ("queued", "running")
    urls = result_urls(sb, http, provider, ref, done.json())
    assert len(urls) == 1 and "/files/" in urls[0]
    download = http.get(urls[0])
    assert download.status_code == 200
    check_media(kind, download)


def video_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


#: Video models whose names do not say "video" (the catalogues' own; they used to come back as
#: PNGs), and one unknown model that is a video because the request asks for a length.
NAMELESS_VIDEOS = [
    ("onerouter", "bytedance/seedance", 2),
    ("rixapi", "veo-3", "2"),  # RixAPI's video durations are text
    ("rixapi", "runway-gen4", 2),
    ("segmind", "seedance-v1-lite", 2),
    ("netmind", "acme/wan-2.1-t2v", 2),
]


@pytest.mark.parametrize(("provider", "model", "duration"), NAMELESS_VIDEOS)
def test_video_models_answer_an_mp4_as_long_as_asked(
    sb: Sandbox, http: httpx.Client, provider: str, model: str, duration: Any
) -> None:
    fps = MediaSizes().video_fps
    ref = handle(sb, provider, submit(sb, http, provider, model, "a drone shot", duration=duration)
                 .json())
    done, _ = wait_done(sb, http, provider, ref)
    (url,) = result_urls(sb, http, provider, ref, done.json())
    assert url.endswith(".mp4")
    download = http.get(url)
    check_media("video", download)
    assert video_frames(download.content) == int(duration) * fps


def test_video_without_a_length_has_the_default_one(sb: Sandbox, http: httpx.Client) -> None:
    sizes = MediaSizes()
    ref = handle(sb, "oxen", submit(sb, http, "oxen", "kling-video-v2-6", "a drone shot").json())
    done, _ = wait_done(sb, http, "oxen", ref)
    (url,) = result_urls(sb, http, "oxen", ref, done.json())
    download = http.get(url)
    check_media("video", download)
    assert video_frames(download.content) == round(sizes.video_seconds * sizes.video_fps)


def test_audio_length_is_honoured(sb: Sandbox, http: httpx.Client) -> None:
    ref = handle(
        sb, "netmind", submit(sb, http, "netmind", "hkchengrex/MMAudio", "rain", duration=3).json()
    )
    done, _ = wait_done(sb, http, "netmind", ref)
    (url,) = result_urls(sb, http, "netmind", ref, done.json())
    download = http.get(url)
    check_media("audio", download)
    with wave.open(io.BytesIO(download.content)) as sound:
        assert sound.getnframes() / sound.getframerate() == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(
    ("params", "seconds"),
    [
        ({"duration": 5}, 5.0),
        ({"duration": "10"}, 10.0),
        ({"seconds": 1.5}, 1.5),
        ({"duration": 3600}, MAX_MEDIA_SECONDS),  # capped: a typo cannot pin the sandbox
        ({"duration": 0}, None),
        ({"duration": -2}, None),
        ({"duration": "five"}, None),
        ({"duration": True}, None),
        ({"duration": float("nan")}, None),
        ({}, None),
        (None, None),
    ],
)
def test_requested_seconds(params: Any, seconds: float | None) -> None:
    assert requested_seconds(params) == seconds


@pytest.mark.parametrize(
    ("provider", "model", "params", "kind"),
    [
        ("onerouter", "bytedance/seedance", {}, "video"),
        ("rixapi", "luma-ray-2", {}, "video"),
        ("rixapi", "vidu-2.0", {}, "video"),
        ("rixapi", "kling-v2-image", {}, "image"),  # the image word wins over the family
        ("rixapi", "luma-photon", {}, "image"),
        ("segmind", "seedream-4.5", {}, "image"),
        ("netmind", "acme/new-model", {"duration": 5}, "video"),
        ("netmind", "hkchengrex/MMAudio", {"duration": 5}, "audio"),
        ("segmind", "llm-chat", {}, "text"),
        ("oxen", "flux-image", {"duration": 5}, "image"),
    ],
)
def test_kind_for(provider: str, model: str, params: dict[str, Any], kind: str) -> None:
    assert kind_for(provider, model, params) == kind


def test_submit_shapes_match_the_docs(sb: Sandbox, http: httpx.Client) -> None:
    one = submit(sb, http, "onerouter", "bytedance/seedance-video", "kitten").json()
    assert one["code"] == 200 and one["message"] == "success"
    data = one["data"]
    assert data["status"] == "created" and data["object"] == "video"
    assert data["task_id"].startswith("cgt-")
    assert len(data["created_at"]) == len("2024-01-01 12:00:00.00")
    assert data["urls"]["get"] == f"{sb.onerouter_poll_url}/v1/videos/tasks/{data['task_id']}"

    rix = submit(sb, http, "rixapi", "flux-pro", "x").json()
    assert set(rix) == {"id", "status", "created_at"} and rix["status"] == "queued"
    assert isinstance(rix["created_at"], int)

    seg = submit(sb, http, "segmind", "seedream-4.5", "x").json()
    rid = seg["request_id"]
    assert seg["status"] == "QUEUED"
    assert seg["poll_url"] == f"{sb.urls['segmind']}/v1/requests/{rid}"
    assert seg["status_url"] == f"{sb.urls['segmind']}/v2/requests/{rid}/status"
    assert seg["response_url"] == f"{sb.urls['segmind']}/v2/requests/{rid}"

    net = submit(sb, http, "netmind", "Qwen/Qwen-Image", "x").json()
    assert net["status"] == "pending" and net["result"] == {}
    assert net["deleted_at"] is None and net["is_deleted"] is False
    time.strptime(net["created_at"], "%Y-%m-%d %H:%M:%S")
    time.strptime(net["updated_at"], "%Y-%m-%d %H:%M:%S")

    ox = submit(sb, http, "oxen", "flux-image", "x", num_generations=3).json()
    assert [g["status"] for g in ox["generations"]] == ["queued"] * 3
    assert len({g["generation_id"] for g in ox["generations"]}) == 3


def test_onerouter_polls_only_on_the_poll_host(sb: Sandbox, http: httpx.Client) -> None:
    data = submit(sb, http, "onerouter", "acme/x", "cat").json()["data"]
    on_submit_host = f"{sb.urls['onerouter']}/v1/videos/tasks/{data['task_id']}"
    assert http.get(on_submit_host, headers=auth("onerouter")).status_code == 404
    image_path = f"{sb.onerouter_poll_url}/v1/images/tasks/{data['task_id']}"
    polled = http.get(image_path, headers={"Authorization": f"Bearer {KEY}"})  # Bearer works too
    assert polled.status_code == 200 and polled.json()["data"]["task_id"] == data["task_id"]
    done, seen = wait_done(sb, http, "onerouter", data["urls"]["get"])
    body = done.json()["data"]
    assert "running" in seen
    assert body["submit_time"] <= body["start_time"] <= body["finish_time"]
    assert body["cost"]["total_cost"] > 0
    assert body["outputs"][0].startswith(sb.onerouter_poll_url + "/files/")


def test_timelines_and_timestamps(sb: Sandbox, http: httpx.Client) -> None:
    rix = submit(sb, http, "rixapi", "flux-pro", "x").json()
    done = wait_done(sb, http, "rixapi", rix["id"])[0].json()
    assert done["completed_at"] >= done["created_at"]
    assert done["usage"]["type"] == "tokens" and done["usage"]["total_tokens"] > 0

    gid = handle(sb, "oxen", submit(sb, http, "oxen", "flux-image", "x").json())
    first = http.get(poll_url(sb, "oxen", gid), headers=auth("oxen")).json()
    assert (
        first["status"] == "queued" and first["started_at"] is None and first["result_url"] is None
    )
    done = wait_done(sb, http, "oxen", gid)[0].json()
    assert done["enqueued_at"] <= done["started_at"] <= done["completed_at"]
    assert done["model_name"] == "flux-image" and done["media_type"] == "image"

    slow = handle(sb, "segmind", submit(sb, http, "segmind", "seedream-4.5", "x [slow]").json())
    time.sleep(0.4)  # twice task_seconds: a [slow] task (10x) is still running
    status = http.get(poll_url(sb, "segmind", slow), headers=auth("segmind")).json()
    assert status["status"] == "PROCESSING" and status["metrics"] == {}


def test_finished_at_is_when_the_status_turns(sb: Sandbox, http: httpx.Client) -> None:
    ref = handle(sb, "segmind", submit(sb, http, "segmind", "seedream-4.5", "clock").json())
    finished = sb.finished_at("segmind", ref)
    assert finished is not None and finished > time.time()
    assert sb.finished_at("oxen", ref) is None and sb.finished_at("segmind", "nope") is None
    _, seen = wait_done(sb, http, "segmind", ref)
    assert seen[-1] == "succeeded" and time.time() >= finished


def test_finished_over_http_is_when_the_status_turns(sb: Sandbox, http: httpx.Client) -> None:
    """`GET /_sandbox/finished`: each task's terminal moment (a cancel's if earlier), for a
    benchmark's other process; fal's status says COMPLETED from then on, not before."""
    fal, key = sb.urls["fal"], {"Authorization": f"Key {KEY}"}
    done = http.post(f"{fal}/fal-ai/flux/dev", json={"prompt": "a"}, headers=key).json()
    stopped = http.post(f"{fal}/fal-ai/flux/dev", json={"prompt": "b [slow]"}, headers=key).json()
    assert http.put(stopped["cancel_url"], headers=key).status_code in (200, 202)
    made = http.post(
        f"{sb.urls['replicate']}/v1/models/acme/bench-image/predictions",
        json={"input": {"prompt": "c"}},
        headers=auth("replicate"),
    ).json()
    ends = http.get(f"{fal}/_sandbox/finished", params={"provider": "fal"}).json()
    assert set(ends) == {"fal"} and set(ends["fal"]) == {done["request_id"], stopped["request_id"]}
    finish = ends["fal"][done["request_id"]]
    assert finish == sb.finished_at("fal", done["request_id"]) and finish > time.time()
    assert ends["fal"][stopped["request_id"]] < sb.finished_at("fal", stopped["request_id"])
    every = http.get(f"{sb.urls['segmind']}/_sandbox/finished").json()  # any port, every provider
    assert every["replicate"] == {made["id"]: sb.finished_at("replicate", made["id"])}
    asked_before_done = []  # stamped before each GET: a request the server read before the end
    while True:
        asked = time.time()
        if http.get(done["status_url"], headers=key).json()["status"] == "COMPLETED":
            break
        asked_before_done.append(asked)
        time.sleep(0.01)
    assert asked_before_done and max(asked_before_done) < finish <= time.time()


def test_segmind_result_by_modality(sb: Sandbox, http: httpx.Client) -> None:
    refs = {
        kind: handle(
            sb, "segmind", submit(sb, http, "segmind", model, f"{kind} please", seed=3).json()
        )
        for kind, model in [
            ("image", "seedream-4.5"),
            ("video", "kling-video"),
            ("audio", "tts-audio"),
            ("text", "llm-chat"),
        ]
    }
    for ref in refs.values():
        wait_done(sb, http, "segmind", ref)
    base = sb.urls["segmind"]
    bodies = {
        k: http.get(f"{base}/v2/requests/{r}", headers=auth("segmind")).json()
        for k, r in refs.items()
    }
    image = bodies["image"]
    assert image["images"][0]["content_type"] == "image/png"
    assert image["images"][0]["file_size"] == str(len(http.get(image["output"]).content))
    assert image["seed"] == "3" and image["prompt"] == "image please"
    assert image["metrics"]["inference_time"] == image["timings"]["inference"]
    assert bodies["video"]["video"]["file_name"] == "output.mp4"
    assert isinstance(bodies["video"]["video"]["file_size"], int)
    assert bodies["audio"]["audio"]["content_type"] == "audio/wav"
    assert "text please" in bodies["text"]["output"] and bodies["text"]["partial"] is False
    legacy = http.get(f"{base}/v1/requests/{refs['image']}", headers=auth("segmind")).json()
    assert legacy["status"] == "COMPLETED" and legacy["output"] == image["output"]


# ----------------------------------------------------------------------------------- failures
def test_failure_shapes(sb: Sandbox, http: httpx.Client) -> None:
    prompt = "<script>alert(1)</script> <img src=x> [fail]"
    refs = {
        provider: handle(
            sb, provider, submit(sb, http, provider, MODELS[provider, "image"], prompt).json()
        )
        for provider in PROVIDERS
    }
    bodies = {p: (ref, wait_done(sb, http, p, ref)[0]) for p, ref in refs.items()}
    one = bodies["onerouter"][1]
    assert one.status_code == 200 and one.json()["code"] == 200
    assert one.json()["data"]["status"] == "failed" and prompt in one.json()["data"]["fail_reason"]
    rix = bodies["rixapi"][1].json()
    assert rix["status"] == "failed" and isinstance(rix["error"], str) and prompt in rix["error"]
    assert "outputs" not in rix and "completed_at" in rix
    seg_ref, seg = bodies["segmind"]
    assert (
        seg.status_code == 422
        and seg.json()["status"] == "FAILED"
        and prompt in seg.json()["error"]
    )
    full = http.get(f"{sb.urls['segmind']}/v2/requests/{seg_ref}", headers=auth("segmind"))
    assert full.status_code == 422 and full.json()["status"] == "FAILED"
    legacy = http.get(f"{sb.urls['segmind']}/v1/requests/{seg_ref}", headers=auth("segmind"))
    assert legacy.status_code == 200 and legacy.json()["status"] == "FAILED"
    net = bodies["netmind"][1].json()
    assert net["status"] == "failed" and prompt in net["logs"][0]["text"]
    ox = bodies["oxen"][1].json()
    assert ox["status"] == "failed" and prompt in ox["error_message"] and ox["prompt"] == prompt


def test_segmind_missing_prompt_fails_in_the_worker(sb: Sandbox, http: httpx.Client) -> None:
    response = http.post(
        f"{sb.urls['segmind']}/v2/seedream-4.5", json={"seed": 1}, headers=auth("segmind")
    )
    assert response.status_code == 200
    done, _ = wait_done(sb, http, "segmind", response.json()["request_id"])
    assert (
        done.status_code == 422 and done.json()["error"] == "Prompt is Mandatory and must be string"
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_and_bad_keys_are_401(sb: Sandbox, http: httpx.Client, provider: str) -> None:
    model = MODELS[provider, "image"]
    bare = submit(sb, http, provider, model, "x", key="")
    bad = submit(sb, http, provider, model, "x", key="bad-key")
    assert bare.status_code == bad.status_code == 401
    for response in (bare, bad):
        body = response.json()
        if provider == "segmind":
            assert isinstance(body["error"], str)
        elif provider == "netmind":
            assert isinstance(body["detail"], str)
        elif provider == "oxen":
            assert body["error"]["type"] == "unauthenticated" and body["status"] == "error"
        else:
            assert isinstance(body["error"]["message"], str)
        assert "bad-key" not in response.text
    assert sb.stats()["submits"] == {}
    assert sb.stats()["statuses"] == {"401": 2}


def test_auth_header_forms(sb: Sandbox, http: httpx.Client) -> None:
    # Segmind takes x-api-key only; RixAPI and Oxen Bearer only; NetMind both forms.
    bearer = {"Authorization": f"Bearer {KEY}"}
    raw = {"Authorization": KEY}
    assert (
        http.post(f"{sb.urls['segmind']}/v2/m", json={"prompt": "x"}, headers=bearer).status_code
        == 401
    )
    assert (
        http.post(
            f"{sb.urls['rixapi']}/v1/task/submit",
            json={"model": "m", "input": {"prompt": "x"}},
            headers=raw,
        ).status_code
        == 401
    )
    assert (
        http.post(
            f"{sb.urls['oxen']}/api/ai/queue", json={"model": "m", "prompt": "x"}, headers=raw
        ).status_code
        == 401
    )
    for headers in (bearer, raw):
        body = {"model": "a/b", "config": {"prompt": "x"}}
        assert (
            http.post(f"{sb.urls['netmind']}/v1/generation", json=body, headers=headers).status_code
            == 200
        )


def test_quota_and_model_errors(sb: Sandbox, http: httpx.Client) -> None:
    rix = submit(sb, http, "rixapi", "flux-pro", "x", key="no-quota-key")
    assert rix.status_code == 403
    assert rix.json()["error"]["code"] == "insufficient_user_quota"
    assert rix.json()["error"]["type"] == "rix_api_error" and rix.json()["error"]["param"] == ""
    net = submit(sb, http, "netmind", "no-such-model", "x")
    assert net.status_code == 400 and net.json()["detail"] == "Model name: no-such-model not exists"
    seg = http.post(f"{sb.urls['segmind']}/v2/m", content=b"prompt=x", headers=auth("segmind"))
    assert seg.status_code == 406
    assert sb.stats()["submits"] == {}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_ids_are_404_in_the_provider_shape(
    sb: Sandbox, http: httpx.Client, provider: str
) -> None:
    ref = f"{sb.onerouter_poll_url}/v1/videos/tasks/cgt-nope" if provider == "onerouter" else "nope"
    response = http.get(poll_url(sb, provider, ref), headers=auth(provider))
    assert response.status_code == 404
    body = response.json()
    if provider == "segmind":
        assert body == {"error": "Request nope not found"}
    elif provider == "oxen":
        assert body["error"]["type"] == "resource_not_found"
    elif provider == "netmind":
        assert "not found" in body["detail"]
    else:
        assert "not found" in body["error"]["message"]


def test_tasks_belong_to_their_key(sb: Sandbox, http: httpx.Client) -> None:
    gid = handle(sb, "oxen", submit(sb, http, "oxen", "flux-image", "mine").json())
    assert http.get(poll_url(sb, "oxen", gid), headers=auth("oxen", "other-key")).status_code == 404
    assert http.get(poll_url(sb, "oxen", gid), headers=auth("oxen")).status_code == 200


# ----------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("retry_after", [0.2, None])
@pytest.mark.parametrize("provider", ["rixapi", "segmind"])
def test_burst_429(
    sb: Sandbox, http: httpx.Client, provider: str, retry_after: float | None
) -> None:
    ref = handle(sb, provider, submit(sb, http, provider, MODELS[provider, "image"], "x").json())
    sb.set_faults(burst_429=3, retry_after=retry_after)
    answers = [http.get(poll_url(sb, provider, ref), headers=auth(provider)) for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    limited = answers[0]
    if provider == "segmind":
        assert "retry-after" not in limited.headers
        if retry_after is None:
            assert "x-rate-limit-reset-at-utc" not in limited.headers
        else:
            reset = limited.headers["x-rate-limit-reset-at-utc"]
            from datetime import datetime

            delta = datetime.fromisoformat(reset).timestamp() - time.time()
            assert -1 < delta <= retry_after + 0.05
    elif retry_after is None:
        assert "retry-after" not in limited.headers
    else:
        assert float(limited.headers["retry-after"]) == retry_after
    assert sb.faults.burst_429 == 0
    assert sb.stats()["statuses"]["429"] == 3


def test_poll_errors_leave_submits_alone(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_faults(error_rate=1.0)
    response = submit(sb, http, "netmind", "Qwen/Qwen-Image", "x")
    assert response.status_code == 200
    polled = http.get(poll_url(sb, "netmind", response.json()["id"]), headers=auth("netmind"))
    assert polled.status_code in (500, 502, 503)
    assert polled.json() == {"detail": "Service is unavailable"}


def test_reset_drops_the_connection(sb: Sandbox, http: httpx.Client) -> None:
    ref = handle(sb, "oxen", submit(sb, http, "oxen", "flux-image", "x").json())
    sb.set_faults(reset_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(poll_url(sb, "oxen", ref), headers=auth("oxen"))
    sb.set_faults(reset_rate=0.0)
    assert http.get(poll_url(sb, "oxen", ref), headers=auth("oxen")).status_code == 200
    assert sb.stats()["resets"] == 1


def test_malformed_json(sb: Sandbox, http: httpx.Client) -> None:
    ref = handle(sb, "rixapi", submit(sb, http, "rixapi", "flux-pro", "x").json())
    sb.set_faults(malformed_rate=1.0)
    response = http.get(poll_url(sb, "rixapi", ref), headers=auth("rixapi"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert sb.stats()["malformed"] == 1


def test_submit_429_creates_nothing(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_faults(submit_rate_limit_rate=1.0, retry_after=1)
    response = submit(sb, http, "oxen", "flux-image", "x")
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    stats = sb.stats()
    assert stats["submits"] == {} and stats["tasks"] == 0


def test_submit_5xx_after_creating_the_task(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_faults(submit_error_rate=1.0)
    response = submit(sb, http, "netmind", "Qwen/Qwen-Image", "bill me once")
    assert response.status_code >= 500
    listed = http.get(f"{sb.urls['netmind']}/v1/generation", headers=auth("netmind")).json()
    assert len(listed["generation_list"]) == 1  # it exists although the client saw an error
    assert list(sb.stats()["submit_fingerprints"].values()) == [1]


def test_fail_rate_and_seeded_dice(sb: Sandbox, http: httpx.Client) -> None:
    def run() -> list[int]:
        sb.reset()
        sb.set_faults(error_rate=0.5, seed=42)
        ref = handle(sb, "rixapi", submit(sb, http, "rixapi", "flux-pro", "x").json())
        return [
            http.get(poll_url(sb, "rixapi", ref), headers=auth("rixapi")).status_code
            for _ in range(12)
        ]

    first, second = run(), run()
    assert first == second and 200 in first and any(code >= 500 for code in first)
    sb.set_faults(fail_rate=1.0, error_rate=0.0)
    ref = handle(sb, "rixapi", submit(sb, http, "rixapi", "flux-pro", "plain").json())
    assert wait_done(sb, http, "rixapi", ref)[0].json()["status"] == "failed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expire_after(sb: Sandbox, http: httpx.Client, provider: str) -> None:
    sb.set_faults(expire_after=0.05)
    ref = handle(sb, provider, submit(sb, http, provider, MODELS[provider, "image"], "x").json())
    time.sleep(0.08)
    assert http.get(poll_url(sb, provider, ref), headers=auth(provider)).status_code == 404


def test_expire_marker_404s_once_done(sb: Sandbox, http: httpx.Client) -> None:
    ref = handle(sb, "segmind", submit(sb, http, "segmind", "seedream-4.5", "x [expire]").json())
    assert http.get(poll_url(sb, "segmind", ref), headers=auth("segmind")).status_code == 200
    time.sleep(0.3)
    gone = http.get(poll_url(sb, "segmind", ref), headers=auth("segmind"))
    assert gone.status_code == 404 and gone.json() == {"error": f"Request {ref} not found"}


def test_one_shot_urls(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_faults(one_shot_urls=True)
    ref = handle(sb, "rixapi", submit(sb, http, "rixapi", "flux-pro", "x").json())
    url = wait_done(sb, http, "rixapi", ref)[0].json()["outputs"][0]
    assert http.get(url).status_code == 200
    second = http.get(url)
    assert second.status_code == 403 and b"AccessDenied" in second.content
    assert http.get(url.replace("/files/", "/files/x")).status_code == 404


def test_hostile_names(sb: Sandbox, http: httpx.Client) -> None:
    ref = submit(sb, http, "netmind", "Qwen/Qwen-Image", "x").json()["id"]
    plain = wait_done(sb, http, "netmind", ref)[0].json()["result"]["data"][0]
    assert plain["file_name"] == "" and plain["file_type"] == "image"
    assert plain["file_id"].startswith("file-")
    sb.set_faults(hostile_names=True)
    hostile = http.get(poll_url(sb, "netmind", ref), headers=auth("netmind")).json()
    assert hostile["result"]["data"][0]["file_name"] == "../../x.sh"


def test_latency(sb: Sandbox, http: httpx.Client) -> None:
    sb.set_faults(latency=0.3)
    start = time.monotonic()
    http.get(poll_url(sb, "rixapi", "nope"), headers=auth("rixapi"))
    assert time.monotonic() - start >= 0.3


# ----------------------------------------------------------------------------------- oxen
async def read_events(response: httpx.Response, into: list[tuple[str, str]]) -> None:
    """Collect (kind, text) for SSE messages and comments until the stream ends or is cancelled."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith(":"):
                into.append(("comment", block[1:].strip()))
                continue
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            into.append((fields["event"], fields["data"]))


async def test_sse_delivers_to_early_subscribers_of_that_key_only(sb: Sandbox) -> None:
    base = sb.urls["oxen"]
    mine: list[tuple[str, str]] = []
    theirs: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(timeout=10.0, trust_env=False) as client,
        client.stream("GET", f"{base}/api/events", headers=auth("oxen")) as stream,
        client.stream("GET", f"{base}/api/events", headers=auth("oxen", "other-key")) as other,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        readers = [
            asyncio.create_task(read_events(stream, mine)),
            asyncio.create_task(read_events(other, theirs)),
        ]
        ok = await client.post(
            f"{base}/api/ai/queue",
            json={"model": "flux-image", "prompt": "a"},
            headers=auth("oxen"),
        )
        bad = await client.post(
            f"{base}/api/ai/queue",
            json={"model": "flux-image", "prompt": "b [fail]"},
            headers=auth("oxen"),
        )
        slow = await client.post(
            f"{base}/api/ai/queue",
            json={"model": "flux-image", "prompt": "c [slow]"},
            headers=auth("oxen"),
        )
        slow_id = slow.json()["generations"][0]["generation_id"]
        await client.delete(f"{base}/api/ai/queue/{slow_id}", headers=auth("oxen"))
        await asyncio.sleep(0.6)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    events = [json.loads(data) for kind, data in mine if kind == "media_generation_completed"]
    by_id = {event["generation_id"]: event for event in events}
    ok_id = ok.json()["generations"][0]["generation_id"]
    bad_id = bad.json()["generations"][0]["generation_id"]
    assert set(by_id) == {ok_id, bad_id}  # nothing for the cancelled one
    assert by_id[ok_id]["status"] == "succeeded" and by_id[ok_id]["model"] == "flux-image"
    assert by_id[ok_id]["media_type"] == "image" and "/files/" in by_id[ok_id]["url"]
    assert by_id[bad_id]["status"] == "failed" and "b [fail]" in by_id[bad_id]["error"]
    assert ("comment", "keep-alive") in mine
    assert [kind for kind, _ in theirs if kind != "comment"] == []
    assert sb.stats()["sse_connections"] == 2


async def test_sse_has_no_replay(sb: Sandbox) -> None:
    base = sb.urls["oxen"]
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        await client.post(
            f"{base}/api/ai/queue", json={"model": "m", "prompt": "early"}, headers=auth("oxen")
        )
        await asyncio.sleep(0.4)  # finished before anyone listened
        got: list[tuple[str, str]] = []
        async with client.stream("GET", f"{base}/api/events", headers=auth("oxen")) as stream:
            reader = asyncio.create_task(read_events(stream, got))
            await asyncio.sleep(0.3)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert got and all(kind == "comment" for kind, _ in got)


def test_oxen_cancel_and_list(sb: Sandbox, http: httpx.Client) -> None:
    base, headers = sb.urls["oxen"], auth("oxen")
    slow = handle(sb, "oxen", submit(sb, http, "oxen", "kling-video", "long [slow]").json())
    quick = handle(sb, "oxen", submit(sb, http, "oxen", "flux-image", "quick").json())
    active = http.get(f"{base}/api/ai/queue", headers=headers).json()
    assert active["count"] == 2
    only_video = http.get(
        f"{base}/api/ai/queue", params={"media_type": "video"}, headers=headers
    ).json()
    assert [g["generation_id"] for g in only_video["generations"]] == [slow]
    cancelled = http.delete(f"{base}/api/ai/queue/{slow}", headers=headers)
    assert cancelled.json() == {"status": "success", "generation_id": slow}
    assert http.get(f"{base}/api/ai/queue/{slow}", headers=headers).json()["status"] == "cancelled"
    wait_done(sb, http, "oxen", quick)
    again = http.delete(f"{base}/api/ai/queue/{quick}", headers=headers)  # terminal: no effect
    assert again.status_code == 200
    assert http.get(f"{base}/api/ai/queue/{quick}", headers=headers).json()["status"] == "succeeded"
    assert http.delete(f"{base}/api/ai/queue/nope", headers=headers).status_code == 404
    assert http.get(f"{base}/api/ai/queue", headers=headers).json()["count"] == 0
    done = http.get(f"{base}/api/ai/queue", params={"status": "succeeded"}, headers=headers).json()
    assert [g["generation_id"] for g in done["generations"]] == [quick]
    assert sb.stats()["cancels"] == 3


# ------------------------------------------------------------------------------ netmind, rixapi
def test_netmind_list_and_delete(sb: Sandbox, http: httpx.Client) -> None:
    base, headers = sb.urls["netmind"], auth("netmind")
    first = submit(sb, http, "netmind", "Qwen/Qwen-Image", "one").json()["id"]
    second = submit(sb, http, "netmind", "Qwen/Qwen-Image", "two").json()["id"]
    listed = http.get(f"{base}/v1/generation", headers=headers).json()["generation_list"]
    assert [g["id"] for g in listed] == [second, first]
    assert http.delete(f"{base}/v1/generation/{first}", headers=headers).json() == {
        "message": "Generation deleted"
    }
    assert http.get(f"{base}/v1/generation/{first}", headers=headers).status_code == 404
    assert http.delete(f"{base}/v1/generation/{first}", headers=headers).status_code == 404
    listed = http.get(f"{base}/v1/generation", headers=headers).json()["generation_list"]
    assert [g["id"] for g in listed] == [second]
    assert sb.stats()["deletes"] == 2


class _Catcher(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # http.server's naming
        length = int(self.headers["content-length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_rixapi_callbacks(sb: Sandbox, http: httpx.Client) -> None:
    _Catcher.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        body = {"model": "flux-pro", "input": {"prompt": "call me"}, "callback_url": url}
        task = http.post(
            f"{sb.urls['rixapi']}/v1/task/submit", json=body, headers=auth("rixapi")
        ).json()
        remote = dict(body, callback_url="http://example.com/hook")
        http.post(f"{sb.urls['rixapi']}/v1/task/submit", json=remote, headers=auth("rixapi"))
        deadline = time.monotonic() + 5
        while len(_Catcher.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
    assert [b["status"] for b in _Catcher.bodies] == ["in_progress", "completed"]
    assert all(b["id"] == task["id"] for b in _Catcher.bodies)
    assert _Catcher.bodies[-1]["outputs"]
    stats = sb.stats()
    assert stats["callbacks"] == 2 and stats["callback_errors"] == 1  # the non-loopback one


# ----------------------------------------------------------------------------------- stats, admin
def test_stats_count_requests_and_duplicate_submits(sb: Sandbox, http: httpx.Client) -> None:
    for _ in range(2):
        submit(sb, http, "segmind", "seedream-4.5", "same body", seed=1)
    submit(sb, http, "segmind", "seedream-4.5", "other body", seed=1)
    http.get(poll_url(sb, "segmind", "nope"), headers=auth("segmind"))
    stats = sb.stats()
    assert stats["requests"]["segmind"] == {"submit": 3, "status": 1}
    assert stats["submits"] == {"segmind": 3}
    assert sorted(stats["submit_fingerprints"].values()) == [1, 2]
    assert all(fp.startswith("segmind:seedream-4.5:") for fp in stats["submit_fingerprints"])
    assert stats["statuses"] == {"200": 3, "404": 1}
    assert stats["tasks"] == 3
    json.dumps(stats)  # plain data


def test_admin_endpoints(sb: Sandbox, http: httpx.Client) -> None:
    base = sb.urls["netmind"]
    assert http.get(f"{base}/_sandbox/faults").json() == FaultConfig().as_dict()
    changed = http.post(f"{base}/_sandbox/faults", json={"error_rate": 0.25, "one_shot_urls": True})
    assert changed.json()["error_rate"] == 0.25 and sb.faults.one_shot_urls is True
    assert http.post(f"{base}/_sandbox/faults", json={"eror_rate": 1}).status_code == 400
    assert http.post(f"{base}/_sandbox/faults", json={"error_rate": "lots"}).status_code == 400
    submit(sb, http, "oxen", "m", "x")
    stats = http.get(f"{sb.urls['segmind']}/_sandbox/stats").json()  # any port sees everything
    assert stats["submits"] == {"oxen": 1}
    assert http.post(f"{base}/_sandbox/reset").json()["status"] == "reset"
    assert sb.stats()["submits"] == {} and sb.faults.error_rate == 0.0


def test_faults_object_is_live(sb: Sandbox, http: httpx.Client) -> None:
    sb.faults.error_rate = 1.0
    ref = submit(sb, http, "rixapi", "flux-pro", "x").json()["id"]
    assert http.get(poll_url(sb, "rixapi", ref), headers=auth("rixapi")).status_code >= 500
    sb.faults = FaultConfig()
    assert http.get(poll_url(sb, "rixapi", ref), headers=auth("rixapi")).status_code == 200
    with pytest.raises(TypeError):
        sb.set_faults(no_such_fault=1)


def test_big_files_stream_exactly_n_bytes(sb: Sandbox, http: httpx.Client) -> None:
    n = 3 * 2**20 + 5
    with http.stream("GET", f"{sb.urls['segmind']}/files/big", params={"bytes": n}) as response:
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["content-length"] == str(n)
        assert sum(len(chunk) for chunk in response.iter_bytes()) == n
    assert http.get(f"{sb.urls['segmind']}/files/big", params={"bytes": "-1"}).status_code == 400
    ref = handle(sb, "segmind", submit(sb, http, "segmind", "big-video", "huge", bytes=4096).json())
    wait_done(sb, http, "segmind", ref)
    result = http.get(f"{sb.urls['segmind']}/v2/requests/{ref}", headers=auth("segmind")).json()
    assert result["video"]["file_size"] == 4096
    assert len(http.get(result["output"]).content) == 4096


def test_options_retention_models_and_ports() -> None:
    with Sandbox(
        task_seconds=0.05, queue_seconds=0.0, segmind_retention=0.1, netmind_models=["a/b"]
    ) as sb:
        assert set(sb.urls) == set(SERVED) and set(PROVIDERS) <= set(SERVED)
        assert sb.env["GENWIDGETS_OXEN_URL"] == sb.urls["oxen"]
        assert len(set(sb.ports.values())) == len(DEFAULT_PORTS)  # the seeds' 6, and any other
        with httpx.Client(trust_env=False) as http:
            ref = submit(sb, http, "segmind", "m", "x").json()["request_id"]
            time.sleep(0.15)
            assert (
                http.get(poll_url(sb, "segmind", ref), headers=auth("segmind")).status_code == 404
            )
            assert submit(sb, http, "netmind", "c/d", "x").status_code == 400
            assert submit(sb, http, "netmind", "a/b", "x").status_code == 200
        port = sb.ports["oxen"]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # stopped: nothing listens any more


# ----------------------------------------------------------------------------------- CLI
def test_cli_prints_exports_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genwidgets.sandbox",
            "--port-base",
            "0",
            "--task-seconds",
            "0.1",
            "--error-rate",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        exports: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(exports) < len(SERVED) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("export "):
                key, _, value = line[len("export ") :].strip().partition("=")
                exports[key] = value
        assert set(exports) == {f"GENWIDGETS_{p.upper()}_URL" for p in SERVED}
        segmind = exports["GENWIDGETS_SEGMIND_URL"]
        response = httpx.post(
            f"{segmind}/v2/m", json={"prompt": "x"}, headers={"x-api-key": KEY}, trust_env=False
        )
        assert response.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert cli_main(["--port-base", str(busy.getsockname()[1])]) == 1
    assert "cannot bind" in capsys.readouterr().err
