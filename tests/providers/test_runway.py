"""Runway adapter, dict in, Task out (no network).

Shapes from /work/shared/providers/beyond/runway.md, copied into fixtures/runway/ (its README
says which bodies are verbatim).
"""

from __future__ import annotations

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
from genwidgets.providers.runway import RunwayProvider
from tests.conftest import answered_at, doc_fixtures

TID = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
I2V = "image_to_video/gen4_turbo"
THEN = datetime(2026, 7, 1, 12, 0, 30, tzinfo=timezone.utc)
fixture = doc_fixtures("runway")
answer = answered_at(THEN)


@pytest.fixture
def provider() -> RunwayProvider:
    return RunwayProvider(api_key="test-key")


def submitted(provider: RunwayProvider, model: str = I2V) -> Task:
    params = {"prompt": "a bunny", "promptImage": "https://example.com/b.jpg"}
    clean = provider.validate(model, params if model == I2V else {"prompt": "a bunny"})
    return provider.parse_submit(model, clean, answer(200, fixture("submit.json")))


def poll(provider: RunwayProvider, name: str, task: Task | None = None) -> Task:
    return provider.parse_poll(task or submitted(provider), answer(200, fixture(name)))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("runway") is RunwayProvider
    assert RunwayProvider.env_var == "RUNWAYML_API_SECRET"
    assert RunwayProvider.default_base_url == "https://api.dev.runwayml.com"
    assert RunwayProvider.can_cancel and not RunwayProvider.can_delete
    assert not RunwayProvider.has_events and not RunwayProvider.can_list
    kinds = {info.kind for info in RunwayProvider.models.values()}
    assert kinds == {"image", "video", "audio"}


def test_polls_are_at_least_five_seconds_apart() -> None:
    """"Do not expect updates more often than every five seconds": even with the schedule's
    10% jitter, the first (shortest) gap stays over 5 s."""
    first, cap = RunwayProvider.poll_interval
    assert first * 0.9 >= 5.0 and cap >= first


def test_budget_row_says_throttled_is_not_an_error() -> None:
    row = RunwayProvider.limits
    assert row is not None and row.limits.max_in_flight is None  # Runway queues (THROTTLED)
    assert row.counts == SUBMITS
    assert row.evidence.startswith("documented (") and "THROTTLED" in row.evidence


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(RunwayProvider(api_key="test-key"))


# ----------------------------------------------------------------------------------- submit
def test_submit_request_matches_the_documented_body(provider: RunwayProvider) -> None:
    doc = fixture("submit_request_image_to_video.json")
    params = {("prompt" if k == "promptText" else k): v for k, v in doc.items() if k != "model"}
    request = provider.build_submit(I2V, provider.validate(I2V, params))
    assert request.method == "POST"
    assert request.url == "https://api.dev.runwayml.com/v1/image_to_video"
    assert dict(request.headers) == {
        "Authorization": "Bearer test-key",
        "X-Runway-Version": "2024-11-06",
        "Content-Type": "application/json",
    }
    assert request.json == doc


def test_every_request_carries_the_version(provider: RunwayProvider) -> None:
    task = submitted(provider)
    for request in (provider.build_poll(task), provider.build_cancel(task)):
        assert request.headers["X-Runway-Version"] == "2024-11-06"
        assert request.headers["Authorization"] == "Bearer test-key"
    assert "Authorization" not in RunwayProvider().build_poll(task).headers


def test_open_models_pass_through_by_task_type() -> None:
    provider = RunwayProvider(api_key="k", base_url="http://127.0.0.1:8108/")
    clean = provider.validate("text_to_speech/eleven_multilingual_v2", {"prompt": "hi", "x": 1})
    request = provider.build_submit("text_to_speech/eleven_multilingual_v2", clean)
    assert request.url == "http://127.0.0.1:8108/v1/text_to_speech"
    assert request.json == {"model": "eleven_multilingual_v2", "promptText": "hi", "x": 1}
    assert provider.kind_of("text_to_speech/eleven_multilingual_v2") == "audio"
    assert provider.kind_of("video_upscale/upscale_v1") == "video"
    assert provider.kind_of("text_to_image/gen4_image_turbo") == "image"


@pytest.mark.parametrize(
    "model", ["gen4_turbo", "../v1/tasks/x", "image_to_video/", "Image/x", "a/b/c", "x y/z"]
)
def test_model_must_name_a_task_type(provider: RunwayProvider, model: str) -> None:
    with pytest.raises(UnknownModel, match="task_type"):
        provider.validate(model, {"prompt": "x"})


def test_bad_params_fail_before_any_request(provider: RunwayProvider) -> None:
    with pytest.raises(InvalidParams):
        provider.validate(I2V, {"prompt": "x"})  # promptImage is required
    with pytest.raises(InvalidParams):
        provider.validate(I2V, {"prompt": "x", "promptImage": "u", "duration": 7})
    with pytest.raises(InvalidParams):
        provider.validate("text_to_video/veo3.1_fast", {"prompt": "x", "ratio": "1:1"})
    with pytest.raises(InvalidParams, match="model"):
        provider.validate("text_to_image/gen4_image", {"prompt": "x", "model": "other"})


def test_parse_submit(provider: RunwayProvider) -> None:
    task = submitted(provider)
    assert task.id == TID and task.status is Status.QUEUED
    assert task.created_at == THEN  # accepted then, at least
    assert task.params["promptImage"] == "https://example.com/b.jpg"


@pytest.mark.parametrize("body", [{}, {"id": ""}, [], {"status": "PENDING"}])
def test_parse_submit_without_an_id_is_malformed(provider: RunwayProvider, body: Any) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit(I2V, {}, answer(200, body))


def submit_error(provider: RunwayProvider, code: int, body: Any, **headers: str) -> Exception:
    with pytest.raises(Exception) as info:
        provider.parse_submit(I2V, {}, answer(code, body, headers))
    return info.value


def test_submit_errors(provider: RunwayProvider) -> None:
    bad = submit_error(provider, 400, fixture("error_400.json"))
    assert type(bad) is ProviderError and "Invalid parameter 'promptText'" in str(bad)
    assert isinstance(submit_error(provider, 400, {"error": "Invalid parameter 'model'"}),
                      UnknownModel)  # fmt: skip
    assert isinstance(submit_error(provider, 404, {"error": "Not found"}), UnknownModel)
    assert isinstance(submit_error(provider, 401, {"error": "bad"}), AuthError)
    assert isinstance(submit_error(provider, 402, {"error": "credits"}), QuotaError)
    limited = submit_error(provider, 429, {"error": "limit"}, **{"Retry-After": "7"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    assert "daily generation cap" in str(limited)
    assert isinstance(submit_error(provider, 503, {"error": "load"}), ServerError)


def test_error_text_never_carries_the_key(provider: RunwayProvider) -> None:
    error = submit_error(provider, 400, {"error": "bad key test-key given"})
    assert "test-key" not in str(error)


# ----------------------------------------------------------------------------------- poll
def test_poll_request_quotes_the_id(provider: RunwayProvider) -> None:
    task = submitted(provider).evolve(id="a/b?c")
    request = provider.build_poll(task)
    assert (request.method, request.url) == ("GET", "https://api.dev.runwayml.com/v1/tasks/a%2Fb%3Fc")


@pytest.mark.parametrize("name", ["poll_pending.json", "poll_throttled.json"])
def test_pending_and_throttled_are_queued(provider: RunwayProvider, name: str) -> None:
    task = poll(provider, name)
    assert task.status is Status.QUEUED and task.error is None
    assert task.provider_status == fixture(name)["status"]  # THROTTLED stays visible
    assert task.created_at == datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_running_carries_progress(provider: RunwayProvider) -> None:
    task = poll(provider, "poll_running.json")
    assert task.status is Status.RUNNING and task.progress == 0.42
    assert task.started_at == THEN  # Runway reports no start: first seen running


@pytest.mark.parametrize(("raw", "read"), [(42, 0.42), (1.5, 0.015), (-1, 0.0), (400, 1.0),
                                           ("0.5", 0.5), (None, None), ("x", None)])  # fmt: skip
def test_progress_outside_zero_to_one(provider: RunwayProvider, raw: Any, read: Any) -> None:
    body = {**fixture("poll_running.json"), "progress": raw}
    assert provider.parse_poll(submitted(provider), answer(200, body)).progress == read


def test_succeeded(provider: RunwayProvider) -> None:
    task = poll(provider, "poll_succeeded.json")
    assert task.status is Status.SUCCEEDED and task.progress == 1.0
    assert [(o.kind, o.url) for o in task.outputs] == [
        ("video", fixture("poll_succeeded.json")["output"][0])
    ]
    assert task.finished_at == THEN


def test_output_kind_follows_the_task_type(provider: RunwayProvider) -> None:
    body = {**fixture("poll_succeeded.json"), "output": ["https://cdn.example/abc"]}
    for model, kind in [("text_to_image/gen4_image", "image"), ("sound_effect/x", "audio")]:
        task = provider.parse_poll(submitted(provider, model), answer(200, body))
        assert task.outputs[0].kind == kind


def test_only_http_urls_become_outputs(provider: RunwayProvider) -> None:
    body = {**fixture("poll_succeeded.json"), "output": ["file:///etc/passwd", 3, "https://a.b/c.png"]}
    assert [o.url for o in poll_body(provider, body).outputs] == ["https://a.b/c.png"]


def poll_body(provider: RunwayProvider, body: Any, code: int = 200) -> Task:
    return provider.parse_poll(submitted(provider), answer(code, body))


def test_failed_carries_reason_and_code(provider: RunwayProvider) -> None:
    task = poll(provider, "poll_failed.json")
    assert task.status is Status.FAILED and not task.outputs
    assert task.error == "The input text did not pass moderation. (SAFETY.INPUT.TEXT)"
    code_only = poll_body(provider, {"status": "FAILED", "failureCode": "INTERNAL"})
    assert code_only.error == "INTERNAL"
    bare = poll_body(provider, {"status": "FAILED"})
    assert bare.error == "runway reported 'FAILED' with no reason"


def test_cancelled_is_terminal(provider: RunwayProvider) -> None:
    task = poll(provider, "poll_cancelled.json")
    assert task.status is Status.CANCELLED and task.done and "cancelled" in (task.error or "")


def test_undocumented_status_is_running(provider: RunwayProvider) -> None:
    task = poll_body(provider, {"status": "UPLOADING"})
    assert task.status is Status.RUNNING and task.provider_status == "UPLOADING"


def test_404_on_poll_is_expired(provider: RunwayProvider) -> None:
    task = poll_body(provider, {"error": "Task not found"}, 404)
    assert task.status is Status.EXPIRED and "no longer knows" in (task.error or "")


@pytest.mark.parametrize(
    "response",
    [answer(200, {"id": TID}), Response(200, {}, b"<html>oops</html>"), answer(200, [])],
)
def test_malformed_poll_bodies(provider: RunwayProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


def test_poll_errors(provider: RunwayProvider) -> None:
    with pytest.raises(AuthError):
        poll_body(provider, {"error": "The provided API key is not valid."}, 401)
    with pytest.raises(RateLimited) as info:
        poll_body(provider, {"error": "slow"}, 429)
    assert "daily" not in str(info.value)  # the daily cap concerns submits
    with pytest.raises(ServerError):
        poll_body(provider, {"error": "load"}, 502)


def test_a_fresh_poll_refreshes_expired_urls(provider: RunwayProvider) -> None:
    """The client's download asks the task again (outputs cleared) when a URL died: the new
    answer's URLs replace the old ones."""
    old = poll(provider, "poll_succeeded.json")
    fresh = {**fixture("poll_succeeded.json"), "output": ["https://cdn.example/new.mp4"]}
    new = provider.parse_poll(old.evolve(outputs=()), answer(200, fresh))
    assert [o.url for o in new.outputs] == ["https://cdn.example/new.mp4"]


# ----------------------------------------------------------------------------------- cancel
@pytest.mark.parametrize("name", ["poll_pending.json", "poll_throttled.json", "poll_running.json"])
def test_cancel_is_a_delete_of_a_live_task(provider: RunwayProvider, name: str) -> None:
    request = provider.build_cancel(poll(provider, name))
    assert request.method == "DELETE"
    assert request.url == f"https://api.dev.runwayml.com/v1/tasks/{TID}"
    assert request.headers["Accept"] == "*/*"


@pytest.mark.parametrize(
    "name", ["poll_succeeded.json", "poll_failed.json", "poll_cancelled.json"]
)
def test_cancel_is_refused_for_a_finished_task(provider: RunwayProvider, name: str) -> None:
    """DELETE on a finished task deletes its outputs: never built for one."""
    with pytest.raises(NotSupported, match="delete"):
        provider.build_cancel(poll(provider, name))
    expired = poll_body(provider, {"error": "gone"}, 404)
    with pytest.raises(NotSupported):
        provider.build_cancel(expired)


def test_parse_cancel(provider: RunwayProvider) -> None:
    running = poll(provider, "poll_running.json")
    task = provider.parse_cancel(running, Response(204, {}, b"", received_at=THEN))
    assert task.status is Status.CANCELLED and task.finished_at == THEN
    assert provider.parse_cancel(running, answer(404, {"error": "x"})).status is Status.EXPIRED
    with pytest.raises(AuthError):
        provider.parse_cancel(running, answer(401, {"error": "x"}))


def test_adapter_stays_small() -> None:
    """Issue 12: at most 150 lines of code, protocol docstrings and catalogue aside."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    script = root / "scripts" / "adapter_lines.py"
    spec = importlib.util.spec_from_file_location("adapter_lines", script)
    assert spec is not None and spec.loader is not None
    lines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lines)
    assert lines.count(root / "genwidgets" / "providers" / "runway.py")[1] <= 150
