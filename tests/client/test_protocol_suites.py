"""The test kit's protocol round trips (genwidgets.testing.ProtocolSuite) on every seed protocol:
what a new adapter's or a plugin's tests run, checked to hold for the built-ins too (the
sandbox's own fault pipeline, the real client, real HTTP)."""

from __future__ import annotations

from tests.conftest import SessionSandboxSuite


class _Seed(SessionSandboxSuite):
    # their documented shapes are tested in tests/providers/test_<name>.py, in their own format
    test_documented_shapes = None  # type: ignore[assignment]


class TestOneRouter(_Seed):
    provider = "onerouter"
    models = {"image": "acme/text-to-image", "video": "bytedance/seedance-video"}


class TestRixAPI(_Seed):
    provider = "rixapi"
    models = {"image": "flux-pro", "video": "kling-v3/text-to-video", "audio": "suno-music"}


class TestSegmind(_Seed):
    provider = "segmind"
    models = {"image": "seedream-4.5", "video": "kling-video", "audio": "tts-audio"}


class TestNetMind(_Seed):
    provider = "netmind"
    models = {"image": "Qwen/Qwen-Image", "audio": "hkchengrex/MMAudio"}


class TestOxen(_Seed):
    provider = "oxen"
    models = {"image": "flux-image", "video": "kling-video-v2-6-pro-text-to-video"}
