"""RixAPI (ePhone AI / ElkAPI) adapter, dict in, Task out (no network).

Shapes come from seed 001 (/work/shared/providers/001_*.txt) and FINDINGS.md section 2, copied
into fixtures/rixapi/ (its README says which parts are verbatim).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from genwidgets import (
    AuthError,
    InvalidParams,
    MalformedResponse,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets.providers import Response, get_provider_class
from genwidgets.providers.rixapi import RixAPIProvider
from tests.conftest import doc_fixtures

KLING = "kling-v3/text-to-video"
fixture = doc_fixtures("rixapi")


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@pytest.fixture
def provider() -> RixAPIProvider:
    return RixAPIProvider(api_key="test-key")


def submitted(provider: RixAPIProvider, model: str = KLING) -> Task:
    clean = provider.validate(model, {"prompt": "a cat"})
    return provider.parse_submit(model, clean, Response.from_json(200, fixture("submit.json")))


def openai_error(message: str, code: str | None = None, kind: str = "rix_api_error") -> Any:
    return {"error": {"message": message, "type": kind, "param": "", "code": code}}


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("rixapi") is RixAPIProvider
    assert RixAPIProvider.name == "rixapi"
    assert RixAPIProvider.env_var == "RIXAPI_API_KEY"
    assert RixAPIProvider.default_base_url == "https://api.ephone.ai"
    assert RixAPIProvider.open_catalogue
    assert not (RixAPIProvider.can_cancel or RixAPIProvider.can_list)
    assert RixAPIProvider.poll_interval == (3.0, 10.0)
    kinds = {name: info.kind for name, info in RixAPIProvider.models.items()}
    assert kinds[KLING] == "video" and kinds["veo-3"] == "video"
    assert kinds["flux-pro"] == "image" and kinds["flux-kontext-pro"] == "image"


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(RixAPIProvider(api_key="test-key"))


# ----------------------------------------------------------------------------------- submit
def test_submit_request_matches_the_documented_body(provider: RixAPIProvider) -> None:
    doc = fixture("submit_request.json")
    # The magic hands over duration=5 as a number; Kling wants the string "5".
    params = {**doc["input"], "duration": 5, "callback_url": doc["callback_url"]}
    request = provider.build_submit(KLING, provider.validate(KLING, params))
    assert request.method == "POST"
    assert request.url == "https://api.ephone.ai/v1/task/submit"
    assert request.headers == {"Authorization": "Bearer test-key"}
    assert request.json == doc


def test_submit_puts_seed_and_other_params_inside_input() -> None:
    provider = RixAPIProvider(api_key="test-key", base_url="http://127.0.0.1:8102/")
    clean = provider.validate("flux-pro", {"prompt": "a fox", "seed": "42", "width": 768})
    request = provider.build_submit("flux-pro", clean)
    assert request.url == "http://127.0.0.1:8102/v1/task/submit"
    assert request.json == {
        "model": "flux-pro",
        "input": {"prompt": "a fox", "seed": 42, "width": 768},
    }
    assert "callback_url" not in request.json


def test_parse_submit(provider: RixAPIProvider) -> None:
    task = submitted(provider)
    assert task.id == "task_abc123" and task.provider == "rixapi" and task.model == KLING
    assert task.status is Status.QUEUED and task.provider_status == "queued"
    assert task.created_at == utc(1711234567)
    assert task.params == {"prompt": "a cat"} and task.outputs == ()
    json.dumps(task.provider_data)


def test_parse_submit_tolerates_a_data_wrapper(provider: RixAPIProvider) -> None:
    body = {"code": "success", "data": fixture("submit.json")}
    task = provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(200, body))
    assert task.id == "task_abc123" and task.status is Status.QUEUED


def test_poll_request(provider: RixAPIProvider) -> None:
    request = provider.build_poll(submitted(provider))
    assert request.method == "GET"
    assert request.url == "https://api.ephone.ai/v1/task/task_abc123"
    assert request.headers == {"Authorization": "Bearer test-key"}
    odd = Task(id="../x?y", provider="rixapi", model=KLING, status=Status.QUEUED)
    assert provider.build_poll(odd).url == "https://api.ephone.ai/v1/task/..%2Fx%3Fy"


# ----------------------------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("queued", Status.QUEUED),
        ("in_progress", Status.RUNNING),
        ("completed", Status.SUCCEEDED),
        ("failed", Status.FAILED),
        ("Completed", Status.SUCCEEDED),
        ("waiting_for_gpu", Status.RUNNING),  # undocumented: kept raw, treated as running
    ],
)
def test_every_status_maps(provider: RixAPIProvider, raw: str, expected: Status) -> None:
    body = {"id": "task_abc123", "status": raw, "created_at": 1711234567}
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is expected and snap.provider_status == raw
    assert snap.params == {"prompt": "a cat"}


def test_in_progress(provider: RixAPIProvider) -> None:
    snap = provider.parse_poll(
        submitted(provider), Response.from_json(200, fixture("poll_in_progress.json"))
    )
    assert snap.status is Status.RUNNING and snap.finished_at is None and snap.error is None


def test_completed_outputs_timestamps_and_usage(provider: RixAPIProvider) -> None:
    snap = provider.parse_poll(
        submitted(provider), Response.from_json(200, fixture("poll_completed.json"))
    )
    assert snap.status is Status.SUCCEEDED and snap.error is None
    assert [(o.url, o.kind) for o in snap.outputs] == [
        ("https://cdn.example.com/results/task_abc123.mp4", "video")
    ]
    assert snap.created_at == utc(1711234567) and snap.finished_at == utc(1711234627)
    assert snap.usage == {"type": "tokens", "output_tokens": 1200, "total_tokens": 1200}
    assert snap.cost is None


@pytest.mark.parametrize(
    ("extra", "cost"),
    [
        ({"cost": 0.12}, 0.12),
        ({"usage": {"type": "per_call", "cost": "0.5"}}, 0.5),
        ({"usage": {"type": "per_call", "total_cost": 2}}, 2.0),
        ({"cost": True}, None),
        ({"cost": "free"}, None),
    ],
)
def test_numeric_cost_when_present(provider: RixAPIProvider, extra: Any, cost: Any) -> None:
    body = {**fixture("poll_completed.json"), **extra}
    assert provider.parse_poll(submitted(provider), Response.from_json(200, body)).cost == cost


@pytest.mark.parametrize(
    ("model", "url", "kind"),
    [
        ("flux-pro", "https://cdn.example.com/r/abc", "image"),  # catalogue kind
        (KLING, "https://cdn.example.com/r/abc", "video"),
        ("suno-music", "https://cdn.example.com/r/song.mp3", "audio"),  # extension
        ("flux-pro", "https://cdn.example.com/r/clip.webm", "video"),  # extension before catalogue
    ],
)
def test_output_kinds(provider: RixAPIProvider, model: str, url: str, kind: str) -> None:
    body = {"id": "t", "status": "completed", "outputs": [url]}
    snap = provider.parse_poll(submitted(provider, model), Response.from_json(200, body))
    assert snap.outputs[0].kind == kind


def test_untrusted_outputs_are_dropped(provider: RixAPIProvider) -> None:
    body = {
        "id": "t",
        "status": "completed",
        "outputs": ["file:///etc/passwd", "javascript:alert(1)", 7, "https://x.test/a b.png", "ok"],
    }
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.outputs == ()


def test_failed_carries_the_error_string(provider: RixAPIProvider) -> None:
    snap = provider.parse_poll(
        submitted(provider), Response.from_json(200, fixture("poll_failed.json"))
    )
    assert snap.status is Status.FAILED and snap.error == "Content policy violation detected"
    assert snap.finished_at is not None  # no completed_at in the example: when we saw it
    assert snap.created_at == utc(1711234567)  # kept from the submit


def test_failed_without_error_text(provider: RixAPIProvider) -> None:
    body = {"id": "t", "status": "failed", "completed_at": 1711234600}
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is Status.FAILED and snap.error and "no reason" in snap.error
    assert snap.finished_at == utc(1711234600)


# ----------------------------------------------------------------------------------- expiry
def test_404_on_poll_means_expired(provider: RixAPIProvider) -> None:
    body = openai_error("task not found", "task_not_exist")
    snap = provider.parse_poll(submitted(provider), Response.from_json(404, body))
    assert snap.status is Status.EXPIRED and snap.error == "task not found"
    snap = provider.parse_poll(submitted(provider), Response(404, {}, b"Not Found"))
    assert snap.status is Status.EXPIRED and snap.error and "retention" in snap.error


# ----------------------------------------------------------------------------------- errors
ERROR_CASES = [
    (400, openai_error("invalid duration", "invalid_request"), ProviderError, "invalid duration"),
    (401, openai_error("invalid token", "invalid_api_key"), AuthError, "invalid token"),
    (403, fixture("error_insufficient_quota.json"), QuotaError, "insufficient_user_quota"),
    (403, openai_error("token disabled", "token_disabled"), AuthError, "token disabled"),
    (429, openai_error("quota used up", "insufficient_quota"), QuotaError, "quota used up"),
    (429, openai_error("slow down", "rate_limit_exceeded"), RateLimited, "slow down"),
    (500, openai_error("upstream failed"), ServerError, "upstream failed"),
    (502, None, ServerError, "Bad Gateway"),
]


@pytest.mark.parametrize(("code", "body", "cls", "text"), ERROR_CASES)
def test_submit_errors(
    provider: RixAPIProvider, code: int, body: Any, cls: type, text: str
) -> None:
    response = Response.from_json(code, body) if body else Response(code, {}, b"<html/>")
    with pytest.raises(ProviderError) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, response)
    assert type(info.value) is cls and text in str(info.value)
    assert info.value.status_code == code and info.value.model == KLING


@pytest.mark.parametrize(("code", "body", "cls", "text"), ERROR_CASES)
def test_poll_errors(provider: RixAPIProvider, code: int, body: Any, cls: type, text: str) -> None:
    response = Response.from_json(code, body) if body else Response(code, {}, b"<html/>")
    with pytest.raises(ProviderError) as info:
        provider.parse_poll(submitted(provider), response)
    assert type(info.value) is cls and text in str(info.value)
    assert info.value.task_id == "task_abc123"


def test_quota_403_is_not_an_auth_error(provider: RixAPIProvider) -> None:
    error = provider.error_for(Response.from_json(403, fixture("error_insufficient_quota.json")))
    assert isinstance(error, QuotaError) and not isinstance(error, AuthError)
    assert "预扣费额度失败" in str(error)


def test_rate_limit_honours_retry_after(provider: RixAPIProvider) -> None:
    limited = provider.error_for(
        Response.from_json(429, openai_error("slow", "rate_limit"), {"Retry-After": "6"})
    )
    assert isinstance(limited, RateLimited) and limited.retry_after == 6.0


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (400, openai_error("some message", "model_not_found")),
        (404, openai_error("The model `kling-v9` does not exist", None, "invalid_request_error")),
        (503, openai_error("No available channel for model kling-v9 under group default")),
    ],
)
def test_unknown_model_on_submit(provider: RixAPIProvider, code: int, body: Any) -> None:
    with pytest.raises(UnknownModel) as info:
        provider.parse_submit("kling-v9", {"prompt": "x"}, Response.from_json(code, body))
    text = str(info.value)
    assert "kling-v9" in text and "rixapi said:" in text and "rixapi:kling-v3/text-to-video" in text


def test_a_parameter_error_that_names_the_model_is_not_unknown_model(
    provider: RixAPIProvider,
) -> None:
    body = openai_error("model kling-v3 needs duration 5 or 10", "invalid_request")
    with pytest.raises(ProviderError) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(400, body))
    assert type(info.value) is ProviderError


def test_an_echoed_key_is_scrubbed(provider: RixAPIProvider) -> None:
    with pytest.raises(AuthError) as info:
        provider.parse_submit(
            KLING, {"prompt": "x"}, Response.from_json(401, openai_error("bad key test-key"))
        )
    assert "test-key" not in str(info.value)
    body = {"id": "t", "status": "failed", "error": "auth test-key rejected upstream"}
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.error is not None and "test-key" not in snap.error


# ----------------------------------------------------------------------------------- malformed
@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>maintenance</html>"),
        Response.from_json(200, ["task_abc123"]),
        Response.from_json(200, {"status": "queued"}),  # no id
        Response.from_json(200, {"id": "", "status": "queued"}),
        Response.from_json(200, {"id": None}),
    ],
)
def test_malformed_submit(provider: RixAPIProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit(KLING, {"prompt": "x"}, response)


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {}, b'{"id": "task_abc123", "sta'),  # truncated
        Response.from_json(200, {"id": "task_abc123"}),  # no status
        Response.from_json(200, {"id": "task_abc123", "status": 2}),
        Response.from_json(200, "completed"),
    ],
)
def test_malformed_poll(provider: RixAPIProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


# ----------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"prompt": ""}, "non-empty prompt"),
        ({"prompt": "x", "duration": "7"}, "duration.*one of"),
        ({"prompt": "x", "duration": 7}, "duration.*one of"),
        ({"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio.*one of"),
        ({"prompt": "x", "callback_url": "ftp://example.com/hook"}, "callback_url.*http"),
        ({"prompt": "x", "callback_url": "example.com/hook"}, "callback_url.*http"),
        ({"prompt": "x", "callback_url": "https://"}, "callback_url.*http"),
        ({"prompt": "x", "callback_url": 5}, "callback_url.*http"),
        ({"prompt": "x", "seed": 2**40}, "seed"),
    ],
)
def test_validation_refuses_before_sending(
    provider: RixAPIProvider, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidParams, match=match):
        provider.validate(KLING, params)


def test_callback_url_is_checked_for_models_outside_the_catalogue(
    provider: RixAPIProvider,
) -> None:
    with pytest.raises(InvalidParams, match="callback_url"):
        provider.validate("replicate/owner/model:abc", {"prompt": "x", "callback_url": "hook"})
    clean = provider.validate(
        "replicate/owner/model:abc", {"prompt": "x", "callback_url": "http://127.0.0.1:9/cb"}
    )
    assert clean["callback_url"] == "http://127.0.0.1:9/cb"
