"""Luma (Dream Machine v1) adapter, dict in, Task out (no network).

Shapes from /work/shared/providers/beyond/luma.md part A, copied into fixtures/luma/ (its README
says which bodies are verbatim).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from genwidgets import (
    AuthError,
    InvalidParams,
    MalformedResponse,
    NotSupported,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets._limits import SUBMITS
from genwidgets.providers import Response, get_provider_class
from genwidgets.providers.luma import LumaProvider
from tests.conftest import answered_at, doc_fixtures

GID = "123e4567-e89b-12d3-a456-426614174000"
BASE = "https://api.lumalabs.ai/dream-machine/v1"
THEN = datetime(2023, 6, 1, 12, 1, 0, tzinfo=timezone.utc)
fixture = doc_fixtures("luma")
answer = answered_at(THEN)


@pytest.fixture
def provider() -> LumaProvider:
    return LumaProvider(api_key="test-key")


def submitted(provider: LumaProvider, model: str = "ray-2") -> Task:
    clean = provider.validate(model, {"prompt": "A serene lake"})
    return provider.parse_submit(model, clean, answer(201, fixture("submit.json")))


def poll_body(provider: LumaProvider, body: Any, code: int = 200, model: str = "ray-2") -> Task:
    return provider.parse_poll(submitted(provider, model), answer(code, body))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("luma") is LumaProvider
    assert LumaProvider.env_var == "LUMAAI_API_KEY"
    assert LumaProvider.default_base_url == "https://api.lumalabs.ai"
    assert not LumaProvider.can_cancel  # DELETE is a delete, not a cancel
    assert LumaProvider.can_delete and LumaProvider.can_list and not LumaProvider.has_events
    assert {i.kind for i in LumaProvider.models.values()} == {"image", "video"}
    assert "UNVERIFIED" in (sys.modules[LumaProvider.__module__].__doc__ or "")


def test_budget_row_is_invented_and_says_so() -> None:
    row = LumaProvider.limits
    assert row is not None and row.evidence.startswith("invented: ")
    assert row.counts == SUBMITS
    assert row.limits.requests_per_minute and row.limits.max_in_flight


def test_cancel_is_not_offered(provider: LumaProvider) -> None:
    with pytest.raises(NotSupported):
        provider.build_cancel(submitted(provider))


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(LumaProvider(api_key="test-key"))


# ----------------------------------------------------------------------------------- submit
def test_video_request_matches_the_documented_body(provider: LumaProvider) -> None:
    doc = fixture("submit_request_video.json")
    clean = provider.validate("ray-2", {k: v for k, v in doc.items() if k != "model"})
    request = provider.build_submit("ray-2", clean)
    assert (request.method, request.url) == ("POST", f"{BASE}/generations/video")
    assert dict(request.headers) == {
        "Authorization": "Bearer test-key",
        "Content-Type": "application/json",
    }
    assert request.json == doc


def test_image_models_post_to_the_image_endpoint(provider: LumaProvider) -> None:
    clean = provider.validate("photon-1", {"prompt": "a teddy bear", "aspect_ratio": "3:4"})
    request = provider.build_submit("photon-1", clean)
    assert request.url == f"{BASE}/generations/image"
    assert request.json == {"model": "photon-1", "prompt": "a teddy bear", "aspect_ratio": "3:4"}
    assert provider.build_submit("photon-2", {"prompt": "x"}).url.endswith("/generations/image")
    assert provider.build_submit("ray-3", {"prompt": "x"}).url.endswith("/generations/video")


def test_a_seed_is_kept_in_params_but_not_sent(provider: LumaProvider) -> None:
    clean = provider.validate("ray-2", {"prompt": "x", "seed": "7"})
    assert clean["seed"] == 7  # the journal tells seeds apart
    assert "seed" not in provider.build_submit("ray-2", clean).json


def test_bad_params_fail_before_any_request(provider: LumaProvider) -> None:
    with pytest.raises(InvalidParams):
        provider.validate("ray-2", {"prompt": ""})
    with pytest.raises(InvalidParams):
        provider.validate("ray-2", {"prompt": "x", "duration": "7s"})
    with pytest.raises(InvalidParams):
        provider.validate("photon-1", {"prompt": "x", "aspect_ratio": "2:1"})
    with pytest.raises(InvalidParams, match="model"):
        provider.validate("ray-2", {"prompt": "x", "model": "ray-1-6"})


def test_parse_submit_reads_the_record(provider: LumaProvider) -> None:
    task = submitted(provider)
    assert task.id == GID and task.status is Status.QUEUED
    assert task.provider_status == "queued"
    assert task.created_at == datetime(2023, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("body", [{}, {"id": ""}, [], {"state": "queued"}])
def test_parse_submit_without_an_id_is_malformed(provider: LumaProvider, body: Any) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit("ray-2", {}, answer(201, body))


def submit_error(provider: LumaProvider, code: int, body: Any, **headers: str) -> Exception:
    with pytest.raises(Exception) as info:
        provider.parse_submit("ray-2", {}, answer(code, body, headers))
    return info.value


def test_submit_errors(provider: LumaProvider) -> None:
    auth = submit_error(provider, 401, fixture("error_401.json"))
    assert isinstance(auth, AuthError) and "Invalid API key" in str(auth)
    assert isinstance(submit_error(provider, 402, {"detail": "x"}), QuotaError)
    assert isinstance(submit_error(provider, 400, {"detail": "Insufficient credits"}), QuotaError)
    model = submit_error(provider, 400, {"detail": "400: model ray-9 is not supported"})
    assert isinstance(model, UnknownModel)
    said = "400: concepts are not supported for this model"
    other = submit_error(provider, 400, {"detail": said})
    assert type(other) is ProviderError and "concepts" in str(other)
    limited = submit_error(provider, 429, {"detail": "slow"}, **{"Retry-After": "3"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0
    assert isinstance(submit_error(provider, 502, {"detail": "x"}), ServerError)


# ----------------------------------------------------------------------------------- poll
def test_poll_request_quotes_the_id(provider: LumaProvider) -> None:
    request = provider.build_poll(submitted(provider).evolve(id="a/b"))
    assert (request.method, request.url) == ("GET", f"{BASE}/generations/a%2Fb")


def test_dreaming_is_running(provider: LumaProvider) -> None:
    task = poll_body(provider, fixture("poll_dreaming.json"))
    assert task.status is Status.RUNNING and task.provider_status == "dreaming"
    assert task.started_at == THEN and task.progress is None


def test_completed_video_is_the_specs_example(provider: LumaProvider) -> None:
    task = poll_body(provider, fixture("poll_completed.json"))
    assert task.status is Status.SUCCEEDED and task.finished_at == THEN
    assert [(o.kind, o.url) for o in task.outputs] == [("video", "https://example.com/video.mp4")]


def test_completed_image(provider: LumaProvider) -> None:
    task = poll_body(provider, fixture("poll_image_completed.json"), model="photon-1")
    assert [o.kind for o in task.outputs] == ["image"]


def test_progress_video_and_non_urls_are_not_outputs(provider: LumaProvider) -> None:
    assets = {"progress_video": "https://x/p.mp4", "image": "javascript:alert(1)"}
    body = {**fixture("poll_completed.json"), "assets": assets}
    assert poll_body(provider, body).outputs == ()


def test_failed_carries_the_reason(provider: LumaProvider) -> None:
    task = poll_body(provider, fixture("poll_failed.json"))
    assert task.status is Status.FAILED and "moderation" in (task.error or "")
    bare = poll_body(provider, {"state": "failed", "failure_reason": None})
    assert bare.error == "luma reported 'failed' with no reason"


def test_undocumented_state_is_running(provider: LumaProvider) -> None:
    assert poll_body(provider, {"state": "upscaling"}).status is Status.RUNNING


def test_404_on_poll_is_expired(provider: LumaProvider) -> None:
    task = poll_body(provider, {"detail": "Generation not found"}, 404)
    assert task.status is Status.EXPIRED and "Generation not found" in (task.error or "")


@pytest.mark.parametrize(
    "response",
    [answer(200, {"id": GID}), Response(200, {}, b"<html>oops</html>"), answer(200, [])],
)
def test_malformed_poll_bodies(provider: LumaProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


def test_poll_errors(provider: LumaProvider) -> None:
    with pytest.raises(AuthError):
        poll_body(provider, fixture("error_401.json"), 401)
    with pytest.raises(ServerError):
        poll_body(provider, {"detail": "x"}, 500)


# ----------------------------------------------------------------------------------- list, delete
def test_list(provider: LumaProvider) -> None:
    request = provider.build_list(limit=10, offset=0)
    assert (request.url, dict(request.params or {})) == (
        f"{BASE}/generations",
        {"limit": "10", "offset": "0"},
    )
    with pytest.raises(InvalidParams):
        provider.build_list(state="completed")
    [task] = provider.parse_list(answer(200, fixture("list.json")))
    assert (task.id, task.model, task.status) == (GID, "ray-1-6", Status.SUCCEEDED)
    assert task.params["aspect_ratio"] == "16:9" and task.outputs


def test_delete(provider: LumaProvider) -> None:
    task = submitted(provider)
    request = provider.build_delete(task)
    assert (request.method, request.url) == ("DELETE", f"{BASE}/generations/{GID}")
    provider.parse_delete(task, Response(204, {}, b""))
    provider.parse_delete(task, answer(404, {"detail": "gone"}))  # already gone: done
    with pytest.raises(AuthError):
        provider.parse_delete(task, answer(401, {"detail": "x"}))


def test_adapter_stays_small() -> None:
    """Issue 12: at most 150 lines of code, protocol docstrings and catalogue aside."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    script = root / "scripts" / "adapter_lines.py"
    spec = importlib.util.spec_from_file_location("adapter_lines", script)
    assert spec is not None and spec.loader is not None
    lines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lines)
    assert lines.count(root / "genwidgets" / "providers" / "luma.py")[1] <= 150
