"""The embedded `local` provider: real media, the real lifecycle, cancel, user models."""

from __future__ import annotations

import io
import threading
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

import genwidgets
from genwidgets import AsyncClient, Status
from genwidgets._media import render_audio, render_image, render_video, video_poster


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GENWIDGETS_LOCAL_DURATION", "0.2")
    async with AsyncClient(cache_dir=tmp_path / "cache", journal=False) as c:
        yield c


def test_media_is_real_and_deterministic() -> None:
    png = render_image("a red rose", 3, 64, 48)
    assert png == render_image("a red rose", 3, 64, 48)
    assert png != render_image("a red rose", 4, 64, 48)
    assert Image.open(io.BytesIO(png)).size == (64, 48)
    melody = render_audio("a tune", 1, seconds=0.5, speech=False)
    assert melody == render_audio("a tune", 1, seconds=0.5, speech=False)
    with wave.open(io.BytesIO(melody)) as sound:
        assert sound.getnframes() > 0
    mp4 = render_video("waves", 1, seconds=0.5, fps=8, width=64, height=64)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 4
    assert Image.open(io.BytesIO(video_poster(mp4))).size == (64, 64)


@pytest.mark.parametrize("kind", ["image", "audio", "video"])
async def test_builtins_run_the_whole_lifecycle(client: AsyncClient, kind: str) -> None:
    task = await client.submit(f"local:{kind}", prompt="a lighthouse", seed=2)
    seen = [snapshot async for snapshot in client.updates(task)]
    statuses = [s.status for s in seen]
    assert statuses[0] is Status.QUEUED and statuses[-1] is Status.SUCCEEDED
    assert Status.RUNNING in statuses
    progress = [s.progress for s in seen if s.progress is not None]
    assert progress == sorted(progress) and progress[-1] == 1.0
    done = seen[-1]
    assert done.outputs[0].kind == kind and done.outputs[0].path.exists()
    assert done.started_at and done.finished_at and done.created_at <= done.started_at


async def test_queue_positions_when_workers_are_busy(client: AsyncClient) -> None:
    tasks = [await client.submit("local:image", prompt=f"p{i}", duration=0.3) for i in range(4)]
    snapshots = [client._local_engine().get(t) for t in tasks]
    positions = [s.queue_position for s in snapshots if s.status is Status.QUEUED]
    assert positions and positions == sorted(positions) and positions[0] >= 1
    finals = [await client.wait(t, timeout=30) for t in tasks]
    assert all(t.status is Status.SUCCEEDED for t in finals)


async def test_cancel_while_running_and_while_queued(client: AsyncClient) -> None:
    long = [await client.submit("local:video", prompt=f"long {i}", duration=30) for i in range(3)]
    async for snapshot in client.updates(long[0]):
        if snapshot.status is Status.RUNNING:
            break
    queued = await client.cancel(long[2])  # two workers: the third is still waiting
    assert queued.status is Status.CANCELLED and queued.started_at is None
    stopped = await client.cancel(long[0])
    assert stopped.status is Status.CANCELLED and stopped.started_at is not None
    assert (await client.cancel(long[1])).status is Status.CANCELLED


async def test_user_models_every_return_type(client: AsyncClient, tmp_path: Path) -> None:
    source = tmp_path / "made.png"
    source.write_bytes(render_image("file", 0, 32, 32))
    seen_cancel: list[bool] = []

    def pil(prompt: str, seed: int = 0) -> Image.Image:
        return Image.new("RGB", (8, 8), (seed, 0, 0))

    def array(prompt: str, progress: Any, cancelled: threading.Event) -> np.ndarray:
        progress(0.5)
        seen_cancel.append(isinstance(cancelled, threading.Event))
        return np.zeros((4, 4, 3), dtype=np.uint8)

    returns = {
        "t-bytes": (lambda prompt: render_image(prompt, 0, 16, 16), "image"),
        "t-pil": (pil, "image"),
        "t-array": (array, "image"),
        "t-path": (lambda prompt: source, "image"),
        "t-text": (lambda prompt: prompt.upper(), "text"),
    }
    try:
        for name, (fn, kind) in returns.items():
            genwidgets.register_local_model(name, fn, kind=kind)
            task = await client.run(f"local:{name}", prompt="hello")
            assert task.status is Status.SUCCEEDED, task
            assert task.outputs[0].path.exists()
        assert seen_cancel == [True]
        assert task.outputs[0].text == "HELLO"
        with pytest.raises(ValueError, match="exists"):
            genwidgets.register_local_model("image", pil)
    finally:
        for name in returns:
            genwidgets.unregister_local_model(name)


async def test_user_model_failure_is_a_failed_task(client: AsyncClient) -> None:
    def broken(prompt: str) -> bytes:
        raise RuntimeError("out of GPU memory")

    genwidgets.register_local_model("t-broken", broken)
    try:
        task = await client.submit("local:t-broken", prompt="x")
        done = await client.wait(task, timeout=10)
        assert done.status is Status.FAILED
        assert done.error == "RuntimeError: out of GPU memory"
        with pytest.raises(genwidgets.TaskFailed):
            await client.run("local:t-broken", prompt="y")
    finally:
        genwidgets.unregister_local_model("t-broken")


async def test_validation_before_any_work(client: AsyncClient) -> None:
    with pytest.raises(genwidgets.UnknownModel, match="Did you mean 'video'"):
        await client.submit("local:vidoe", prompt="x")
    with pytest.raises(genwidgets.InvalidParams, match="Unknown parameter"):
        await client.submit("local:image", prompt="x", steps=3)
    with pytest.raises(genwidgets.InvalidParams, match="prompt"):
        await client.submit("local:image", prompt="")
    assert client._local is None or not client._local._jobs


def test_sync_run_outside_a_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENWIDGETS_LOCAL_DURATION", "0")
    with genwidgets.Client(cache_dir=tmp_path, journal=False) as client:
        task = client.run("local:image", prompt="sync", width=32, height=32)
    assert Image.open(task.outputs[0].path).size == (32, 32)
