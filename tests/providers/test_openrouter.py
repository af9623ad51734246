"""OpenRouter videos adapter, dict in, Task out (no network).

Shapes from /work/shared/providers/beyond/openrouter-videos.md, copied into fixtures/openrouter/
(its README says which bodies are verbatim and which are reconstructed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genwidgets import (
    AuthError,
    InvalidParams,
    NotSupported,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets.providers import Response
from genwidgets.providers._fields import same_origin
from genwidgets.providers.openrouter import OpenRouterProvider
from tests.conftest import doc_fixtures

MODEL = "google/veo-3.1"
fixture = doc_fixtures("openrouter")


@pytest.fixture
def provider() -> OpenRouterProvider:
    return OpenRouterProvider(api_key="sk-or-test")


def submitted(provider: OpenRouterProvider, name: str = "submit_spec.json") -> Task:
    params = provider.validate(MODEL, {"prompt": "a serene mountain", "duration": 8})
    return provider.parse_submit(MODEL, params, Response.from_json(202, fixture(name)))


def polled(provider: OpenRouterProvider, name: str, task: Task | None = None) -> Task:
    task = task or submitted(provider)
    return provider.parse_poll(task, Response.from_json(200, fixture(name)))


def test_submit_sends_every_parameter_beside_the_model_with_the_bearer_key(
    provider: OpenRouterProvider,
) -> None:
    params = provider.validate(
        MODEL, {"prompt": "a lake", "duration": "8", "resolution": "720p", "generate_audio": True}
    )
    request = provider.build_submit(MODEL, params)
    assert request.method == "POST"
    assert request.url == "https://openrouter.ai/api/v1/videos"
    assert request.headers["Authorization"] == "Bearer sk-or-test"
    assert request.json == {
        "model": MODEL,
        "prompt": "a lake",
        "duration": 8,
        "resolution": "720p",
        "generate_audio": True,
    }


def test_bad_params_are_refused_before_sending(provider: OpenRouterProvider) -> None:
    with pytest.raises(InvalidParams, match="resolution"):
        provider.validate(MODEL, {"prompt": "x", "resolution": "999p"})
    with pytest.raises(InvalidParams, match="duration"):
        provider.validate(MODEL, {"prompt": "x", "duration": 0})
    with pytest.raises(InvalidParams, match="model"):
        provider.validate(MODEL, {"prompt": "x", "model": "other/model"})


def test_submit_answer_202_is_a_queued_job_polled_at_its_relative_polling_url(
    provider: OpenRouterProvider,
) -> None:
    task = submitted(provider)
    assert (task.id, task.status, task.provider_status) == ("job-abc123", Status.QUEUED, "pending")
    assert provider.build_poll(task).url == "https://openrouter.ai/api/v1/videos/job-abc123"


def test_an_absolute_polling_url_is_followed_only_on_the_base_origin() -> None:
    on_sandbox = OpenRouterProvider(api_key="k", base_url="http://127.0.0.1:8111")
    task = submitted(on_sandbox, "submit_guide.json")  # names https://openrouter.ai/...
    assert "poll_url" not in task.provider_data
    assert on_sandbox.build_poll(task).url == "http://127.0.0.1:8111/api/v1/videos/abc123"
    real = OpenRouterProvider(api_key="k")
    assert real.build_poll(submitted(real, "submit_guide.json")).url.endswith("/videos/abc123")
    elsewhere = {**fixture("submit_spec.json"), "polling_url": "https://evil.example/steal"}
    task = real.parse_submit(MODEL, {"prompt": "x"}, Response.from_json(202, elsewhere))
    assert real.build_poll(task).url == "https://openrouter.ai/api/v1/videos/job-abc123"
    journalled = task.evolve(provider_data={"poll_url": "https://evil.example/steal"})
    assert real.build_poll(journalled).url.startswith("https://openrouter.ai/")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("poll_pending.json", Status.QUEUED),
        ("poll_in_progress.json", Status.RUNNING),
        ("poll_completed.json", Status.SUCCEEDED),
        ("poll_failed.json", Status.FAILED),
        ("poll_cancelled.json", Status.CANCELLED),
        ("poll_expired.json", Status.EXPIRED),
    ],
)
def test_the_six_statuses(provider: OpenRouterProvider, name: str, status: Status) -> None:
    task = polled(provider, name)
    assert task.status is status
    assert task.done is status.is_terminal
    if status.is_terminal and status is not Status.SUCCEEDED:
        assert task.error == fixture(name)["error"]


def test_a_job_may_jump_from_pending_to_completed(provider: OpenRouterProvider) -> None:
    pending = polled(provider, "poll_pending.json")
    done = polled(provider, "poll_completed.json", pending)
    assert done.status is Status.SUCCEEDED and done.outputs
    assert done.started_at is None and done.finished_at is not None  # no start invented


def test_completed_outputs_go_through_the_authenticated_content_route(
    provider: OpenRouterProvider,
) -> None:
    task = polled(provider, "poll_completed.json")
    assert [o.url for o in task.outputs] == [
        "https://openrouter.ai/api/v1/videos/job-abc123/content?index=0"
    ]
    assert task.outputs[0].kind == "video"
    assert task.cost == 0.25 and task.usage == {"cost": 0.25, "is_byok": False}
    two = {**fixture("poll_completed.json"), "unsigned_urls": ["https://a/1", "https://a/2"]}
    many = provider.parse_poll(submitted(provider), Response.from_json(200, two))
    assert [o.url.rsplit("=", 1)[1] for o in many.outputs if o.url] == ["0", "1"]


def test_the_key_goes_to_downloads_on_the_base_origin_only(provider: OpenRouterProvider) -> None:
    content = "https://openrouter.ai/api/v1/videos/abc123/content?index=0"
    assert provider.authenticated_downloads and same_origin(content, provider.base_url)
    for elsewhere in (
        "https://storage.example.com/video.mp4",
        "http://openrouter.ai/api/v1/videos/abc123/content",  # https -> http
        "https://cdn.openrouter.ai/x.mp4",
        "https://openrouter.ai:8443/x.mp4",
    ):
        assert not same_origin(elsewhere, provider.base_url), elsewhere


def test_a_404_for_our_job_is_expired(provider: OpenRouterProvider) -> None:
    gone = Response.from_json(404, fixture("error_404.json"))
    task = provider.parse_poll(submitted(provider), gone)
    assert task.status is Status.EXPIRED and task.error and "Resource not found" in task.error


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("error_400.json", InvalidParams),
        ("error_401.json", AuthError),
        ("error_402.json", QuotaError),
        ("error_404.json", UnknownModel),
        ("error_429.json", RateLimited),
        ("error_502.json", ServerError),
    ],
)
def test_submit_errors(provider: OpenRouterProvider, name: str, error: type[Exception]) -> None:
    body = fixture(name)
    answer = Response.from_json(body["error"]["code"], body, {"Retry-After": "3"})
    with pytest.raises(error) as info:
        provider.parse_submit(MODEL, {"prompt": "x"}, answer)
    if error is RateLimited:
        assert info.value.retry_after == 3.0  # type: ignore[attr-defined]


def test_a_403_is_moderation_not_a_refused_key(provider: OpenRouterProvider) -> None:
    answer = Response.from_json(403, fixture("error_403.json"))
    with pytest.raises(ProviderError, match="moderation") as info:
        provider.parse_submit(MODEL, {"prompt": "x"}, answer)
    assert not isinstance(info.value, AuthError)


def test_no_cancel(provider: OpenRouterProvider) -> None:
    assert not provider.can_cancel
    with pytest.raises(NotSupported):
        provider.build_cancel(submitted(provider))


def test_the_key_never_shows(provider: OpenRouterProvider) -> None:
    assert "sk-or-test" not in repr(provider)
    echoed = {"error": {"code": 401, "message": "bad key sk-or-test"}}
    with pytest.raises(AuthError) as info:
        provider.parse_submit(MODEL, {"prompt": "x"}, Response.from_json(401, echoed))
    assert "sk-or-test" not in str(info.value)


def test_adapter_is_small() -> None:
    """Issue 12: at most 150 lines of code, protocol docstrings and catalogue aside."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("lines", root / "scripts" / "adapter_lines.py")
    assert spec is not None and spec.loader is not None
    lines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lines)
    assert lines.count(root / "genwidgets" / "providers" / "openrouter.py")[1] <= 150
