"""What a user gets from the sandbox through the real client: a video model gives a video.

The issue this guards: `onerouter:bytedance/seedance` (the docs' example model) came back as a
PNG and ignored `duration`, so the card showed a still image for a video model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import pytest

from genwidgets import AsyncClient
from genwidgets.sandbox import MediaSizes


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("onerouter:bytedance/seedance", {"duration": 2}),
        ("rixapi:kling-v3/text-to-video", {"duration": "10"}),
        ("oxen:kling-video-v2-6-pro-text-to-video", {"duration": 5}),
    ],
)
async def test_catalogue_video_models_give_an_mp4_of_the_asked_length(
    sb: Any, tmp_path: Path, model: str, params: dict[str, Any]
) -> None:
    provider = model.split(":", 1)[0]
    async with AsyncClient(
        api_keys={provider: "test-key"},
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=False,
        poll_interval=(0.05, 0.3),
    ) as client:
        task = await client.run(model, prompt="a drone shot over a lighthouse", **params)
    (output,) = task.outputs
    assert output.kind == "video"
    assert output.path is not None and output.path.suffix == ".mp4"
    assert output.content_type in (None, "video/mp4")
    with av.open(io.BytesIO(output.path.read_bytes())) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = sum(1 for _ in container.decode(stream))
    assert frames == int(params["duration"]) * MediaSizes().video_fps
