"""OneRouter adapter, dict in, Task out (no network).

Shapes come from seed 000 (/work/shared/providers/000_*.txt) and FINDINGS.md section 1, copied
into fixtures/onerouter/ (its README lists the two fixes the doc's examples needed).
"""

from __future__ import annotations

import copy
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
from genwidgets.providers.onerouter import OneRouterProvider, same_site
from tests.conftest import doc_fixtures

TASK_ID = "cgt-20260312231129-7db6s"
GCS_URL = (
    "https://storage.googleapis.com/infron_gcs/"
    "video%2Fvideo%2Fcgt-20260328120757-nw49t_69c65308.mp4"
)
fixture = doc_fixtures("onerouter")


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@pytest.fixture
def provider() -> OneRouterProvider:
    return OneRouterProvider(api_key="test-key")


def submitted(provider: OneRouterProvider, model: str = "bytedance/seedance") -> Task:
    clean = provider.validate(model, {"prompt": "a kitten"})
    return provider.parse_submit(model, clean, Response.from_json(200, fixture("submit.json")))


def poll_body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture("poll_completed.json"))
    body["data"].update(changes)
    return body


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("onerouter") is OneRouterProvider
    assert OneRouterProvider.name == "onerouter"
    assert OneRouterProvider.env_var == "ONEROUTER_API_KEY"
    assert OneRouterProvider.default_base_url == "https://image.onerouter.pro"
    assert OneRouterProvider.open_catalogue
    assert not (OneRouterProvider.can_cancel or OneRouterProvider.can_list)
    assert OneRouterProvider.poll_interval == (2.0, 10.0)
    assert OneRouterProvider.models["bytedance/seedance"].kind == "video"


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(OneRouterProvider(api_key="test-key"))


# ----------------------------------------------------------------------------------- submit
def test_submit_request_matches_the_documented_body(provider: OneRouterProvider) -> None:
    doc = fixture("submit_request.json")
    params = {k: v for k, v in doc.items() if k not in ("model", "content")}
    params["prompt"] = doc["content"][0]["text"]
    clean = provider.validate(doc["model"], params)
    request = provider.build_submit(doc["model"], clean)
    assert request.method == "POST"
    assert request.url == "https://image.onerouter.pro/v1/images/generations"
    assert request.headers == {"Authorization": "test-key"}  # raw key, as the docs show
    assert request.json == doc


def test_submit_maps_seed_and_extra_params_to_the_top_level() -> None:
    provider = OneRouterProvider(api_key="test-key", base_url="http://127.0.0.1:8101/")
    image_item = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    clean = provider.validate(
        "acme/text-to-image", {"prompt": "a fox", "seed": "7", "size": "1024x1024"}
    )
    request = provider.build_submit("acme/text-to-image", {**clean, "content": [image_item]})
    assert request.url == "http://127.0.0.1:8101/v1/images/generations"
    assert request.json == {
        "model": "acme/text-to-image",
        "content": [{"type": "text", "text": "a fox"}, image_item],
        "seed": 7,
        "size": "1024x1024",
    }
    assert "prompt" not in request.json


def test_no_key_no_auth_header() -> None:
    request = OneRouterProvider().build_submit("m", {"prompt": "x"})
    assert "Authorization" not in request.headers


def test_parse_submit_keeps_what_polling_needs(provider: OneRouterProvider) -> None:
    task = submitted(provider)
    assert task.id == TASK_ID and task.provider == "onerouter"
    assert task.model == "bytedance/seedance" and task.params == {"prompt": "a kitten"}
    assert task.status is Status.QUEUED and task.provider_status == "created"
    assert task.created_at == datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert task.provider_data == {
        "poll_url": f"https://video.onerouter.pro/v1/videos/tasks/{TASK_ID}",
        "object": "video",
    }
    json.dumps(task.provider_data)  # journalled
    assert "test-key" not in json.dumps(task.model_dump(mode="json"))


def test_parse_submit_without_a_created_time_uses_now(provider: OneRouterProvider) -> None:
    body = fixture("submit.json")
    del body["data"]["created_at"]
    before = datetime.now(timezone.utc)
    task = provider.parse_submit("m", {"prompt": "x"}, Response.from_json(200, body))
    assert task.created_at is not None and task.created_at >= before


# ----------------------------------------------------------------------------------- poll URL
def test_poll_follows_urls_get(provider: OneRouterProvider) -> None:
    request = provider.build_poll(submitted(provider))
    assert request.method == "GET"
    assert request.url == f"https://video.onerouter.pro/v1/videos/tasks/{TASK_ID}"
    assert request.headers == {"Authorization": "test-key"}


def test_poll_refuses_a_foreign_host_and_falls_back(provider: OneRouterProvider) -> None:
    body = fixture("submit.json")
    body["data"]["urls"]["get"] = f"https://evil.example.com/v1/videos/tasks/{TASK_ID}"
    task = provider.parse_submit("m", {"prompt": "x"}, Response.from_json(200, body))
    assert "poll_url" not in task.provider_data
    assert provider.build_poll(task).url == (
        f"https://video.onerouter.pro/v1/videos/tasks/{TASK_ID}"
    )


def test_poll_rechecks_provider_data_from_the_journal(provider: OneRouterProvider) -> None:
    task = submitted(provider).evolve(provider_data={"poll_url": "https://attacker.test/x"})
    assert provider.build_poll(task).url.startswith("https://video.onerouter.pro/")


def test_poll_fallback_on_a_custom_base_and_quotes_the_id() -> None:
    provider = OneRouterProvider(api_key="test-key", base_url="http://127.0.0.1:8101")
    task = Task(id="a/b?c", provider="onerouter", model="m", status=Status.QUEUED)
    assert provider.build_poll(task).url == "http://127.0.0.1:8101/v1/videos/tasks/a%2Fb%3Fc"


def test_poll_url_on_the_sandbox_host_is_followed() -> None:
    provider = OneRouterProvider(api_key="test-key", base_url="http://127.0.0.1:8101")
    body = fixture("submit.json")
    body["data"]["urls"]["get"] = "http://127.0.0.1:8101/v1/videos/tasks/t1"
    task = provider.parse_submit("m", {"prompt": "x"}, Response.from_json(200, body))
    assert provider.build_poll(task).url == "http://127.0.0.1:8101/v1/videos/tasks/t1"


@pytest.mark.parametrize(
    ("url", "base", "ok"),
    [
        ("https://video.onerouter.pro/v1/x", "https://image.onerouter.pro", True),
        ("https://image.onerouter.pro/v1/x", "https://image.onerouter.pro", True),
        ("https://onerouter.pro/v1/x", "https://image.onerouter.pro", True),
        ("https://a.b.onerouter.pro/v1/x", "https://image.onerouter.pro", True),
        ("https://onerouter.pro.evil.com/x", "https://image.onerouter.pro", False),
        ("https://evilonerouter.pro/x", "https://image.onerouter.pro", False),
        ("https://video.onerouter.pro@evil.com/x", "https://image.onerouter.pro", False),
        ("https://user@video.onerouter.pro/x", "https://image.onerouter.pro", False),
        ("http://video.onerouter.pro/x", "https://image.onerouter.pro", False),  # downgrade
        ("ftp://video.onerouter.pro/x", "https://image.onerouter.pro", False),
        ("/v1/videos/tasks/x", "https://image.onerouter.pro", False),
        ("https://other.pro/x", "https://onerouter.pro", False),  # no parent above a TLD
        ("https://evil.co.uk/x", "https://foo.co.uk", False),  # co.uk is a public suffix
        ("https://a.foo.co.uk/x", "https://api.foo.co.uk", True),
        ("http://127.0.0.1:9/x", "http://127.0.0.1:8101", True),
        ("http://127.0.0.2/x", "http://127.0.0.1:8101", False),
        ("http://localhost/x", "http://127.0.0.1:8101", False),
        ("https://VIDEO.OneRouter.pro./x", "https://image.onerouter.pro", True),
        ("https://[::1/x", "https://image.onerouter.pro", False),  # unparseable
    ],
)
def test_same_site(url: str, base: str, ok: bool) -> None:
    assert same_site(url, base, same_port=False) is ok


# ----------------------------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("created", Status.QUEUED),
        ("in_progress", Status.RUNNING),
        ("processing", Status.RUNNING),
        ("completed", Status.SUCCEEDED),
        ("succeeded", Status.SUCCEEDED),
        ("failed", Status.FAILED),
        ("error", Status.FAILED),
        ("COMPLETED", Status.SUCCEEDED),
        ("paused_for_review", Status.RUNNING),  # undocumented: kept raw, treated as running
    ],
)
def test_every_status_maps(provider: OneRouterProvider, raw: str, expected: Status) -> None:
    task = submitted(provider)
    snap = provider.parse_poll(task, Response.from_json(200, poll_body(status=raw)))
    assert snap.status is expected and snap.provider_status == raw
    assert snap.params == task.params and snap.provider_data["poll_url"]


def test_completed_outputs_and_timestamps(provider: OneRouterProvider) -> None:
    task = submitted(provider)
    snap = provider.parse_poll(task, Response.from_json(200, fixture("poll_completed.json")))
    assert snap.status is Status.SUCCEEDED and snap.error is None
    assert [o.url for o in snap.outputs] == [GCS_URL]
    assert snap.outputs[0].kind == "video"
    assert snap.created_at == utc(1773318919)
    assert snap.started_at == utc(1773318925)
    assert snap.finished_at == utc(1773319107)
    assert snap.cost is None


def test_running_snapshot_has_no_finish(provider: OneRouterProvider) -> None:
    body = poll_body(status="in_progress", finish_time=None, outputs=[])
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is Status.RUNNING and snap.finished_at is None and not snap.outputs
    assert snap.started_at == utc(1773318925)


@pytest.mark.parametrize(
    ("model", "obj", "url", "kind"),
    [
        ("acme/x", "audio", "https://cdn.onerouter.pro/out/abc", "audio"),  # only the hint
        ("acme/x", "image", "https://cdn.onerouter.pro/out/abc", "image"),
        ("acme/x", "video", "https://cdn.onerouter.pro/out/a.png", "image"),  # extension wins
        ("bytedance/seedance", "image", "https://cdn.onerouter.pro/abc", "video"),  # catalogue
    ],
)
def test_output_kind_order(
    provider: OneRouterProvider, model: str, obj: str, url: str, kind: str
) -> None:
    task = submitted(provider, model)
    body = poll_body(object=obj, outputs=[url])
    assert provider.parse_poll(task, Response.from_json(200, body)).outputs[0].kind == kind


def test_object_hint_from_submit_is_remembered(provider: OneRouterProvider) -> None:
    body = fixture("submit.json")
    body["data"]["object"] = "audio"
    task = provider.parse_submit("acme/tts", {"prompt": "x"}, Response.from_json(200, body))
    poll = poll_body(outputs=["https://cdn.onerouter.pro/out/abc"])
    del poll["data"]["object"]
    assert provider.parse_poll(task, Response.from_json(200, poll)).outputs[0].kind == "audio"


def test_untrusted_outputs_are_dropped(provider: OneRouterProvider) -> None:
    body = poll_body(outputs=["javascript:alert(1)", 3, None, "", {"url": "https://x.test/a.wav"}])
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert [(o.url, o.kind) for o in snap.outputs] == [("https://x.test/a.wav", "audio")]


def test_failed_carries_fail_reason(provider: OneRouterProvider) -> None:
    body = poll_body(status="failed", fail_reason="The prompt was flagged", outputs=[])
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is Status.FAILED and snap.error == "The prompt was flagged"
    assert snap.finished_at == utc(1773319107)


def test_failed_without_reason_or_finish_time(provider: OneRouterProvider) -> None:
    body = poll_body(status="failed", fail_reason="", finish_time=None, outputs=[])
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is Status.FAILED
    assert snap.error and "failed" in snap.error
    assert snap.finished_at is not None  # when we first saw it done


def test_cost_from_data_cost_total_cost(provider: OneRouterProvider) -> None:
    # data.cost.total_cost: seen in a third-party test mock (FINDINGS section 1)
    body = poll_body(cost={"total_cost": 0.35, "currency": "USD"})
    assert provider.parse_poll(submitted(provider), Response.from_json(200, body)).cost == 0.35
    body = poll_body(cost={"total_cost": "n/a"})
    assert provider.parse_poll(submitted(provider), Response.from_json(200, body)).cost is None


# ----------------------------------------------------------------------------------- expiry
def test_404_on_poll_means_expired(provider: OneRouterProvider) -> None:
    body = {"error": {"code": 404, "message": "task not found", "type": "not_found"}}
    snap = provider.parse_poll(submitted(provider), Response.from_json(404, body))
    assert snap.status is Status.EXPIRED and snap.error == "task not found"
    assert snap.finished_at is not None


def test_body_code_404_inside_http_200_also_expires(provider: OneRouterProvider) -> None:
    body = {"code": 404, "message": "task not found", "data": None}
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.status is Status.EXPIRED


# ----------------------------------------------------------------------------------- errors
def err(code: int, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    # docs.onerouter.pro/api-reference/errors (FINDINGS section 1)
    return {"error": {"code": code, "message": message, "type": kind, "param": None}}


ERROR_CASES = [
    (400, err(400, "duration must be 5 or 10"), ProviderError, "duration must be 5 or 10"),
    (401, err(401, "Invalid API key"), AuthError, "Invalid API key"),
    (402, err(402, "Insufficient credits"), QuotaError, "Insufficient credits"),
    (403, err(403, "Flagged", "moderation"), ProviderError, "moderation"),
    (403, err(403, "Forbidden", "forbidden"), AuthError, "Forbidden"),
    (408, err(408, "Request timed out"), ServerError, "timed out"),
    (422, fixture("error_content_policy.json"), ProviderError, "moderation"),
    (429, err(429, "Too many requests"), RateLimited, "Too many requests"),
    (502, err(502, "Bad gateway"), ServerError, "Bad gateway"),
    (503, {"message": "upstream down"}, ServerError, "upstream down"),
]


@pytest.mark.parametrize(("code", "body", "cls", "text"), ERROR_CASES)
def test_submit_errors(
    provider: OneRouterProvider, code: int, body: Any, cls: type, text: str
) -> None:
    with pytest.raises(ProviderError) as info:
        provider.parse_submit("acme/x", {"prompt": "x"}, Response.from_json(code, body))
    assert type(info.value) is cls and text in str(info.value)
    assert info.value.status_code == code and info.value.provider == "onerouter"


@pytest.mark.parametrize(("code", "body", "cls", "text"), ERROR_CASES)
def test_poll_errors(
    provider: OneRouterProvider, code: int, body: Any, cls: type, text: str
) -> None:
    task = submitted(provider)
    with pytest.raises(ProviderError) as info:
        provider.parse_poll(task, Response.from_json(code, body))
    assert type(info.value) is cls and text in str(info.value)
    assert info.value.task_id == TASK_ID


@pytest.mark.parametrize(("code", "body", "cls", "text"), ERROR_CASES)
def test_body_code_inside_http_200_is_mapped_like_http(
    provider: OneRouterProvider, code: int, body: Any, cls: type, text: str
) -> None:
    wrapped = {"code": code, "message": text, "data": None}
    with pytest.raises(ProviderError) as info:
        provider.parse_submit("acme/x", {"prompt": "x"}, Response.from_json(200, wrapped))
    assert type(info.value) is cls and info.value.status_code == code
    assert type(provider.error_for(Response.from_json(200, wrapped))) is cls


def test_moderation_403_is_not_an_auth_error(provider: OneRouterProvider) -> None:
    error = provider.error_for(
        Response.from_json(403, err(403, "Blocked", "content_policy_violation"))
    )
    assert not isinstance(error, AuthError) and "refused the request by moderation" in str(error)


def test_rate_limit_has_no_documented_retry_after(provider: OneRouterProvider) -> None:
    limited = provider.error_for(Response.from_json(429, err(429, "slow down")))
    assert isinstance(limited, RateLimited) and limited.retry_after is None
    limited = provider.error_for(Response.from_json(429, err(429, "x"), {"Retry-After": "4"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 4.0


def test_a_non_http_body_code_is_a_provider_error(provider: OneRouterProvider) -> None:
    body = {"code": 10010, "message": "Cloudflare says no", "data": None}
    with pytest.raises(ProviderError, match="code 10010.*Cloudflare says no"):
        provider.parse_submit("acme/x", {"prompt": "x"}, Response.from_json(200, body))


def test_unknown_model_at_the_provider(provider: OneRouterProvider) -> None:
    body = err(400, "model acme/nope does not exist")
    with pytest.raises(UnknownModel, match="said: model acme/nope does not exist") as info:
        provider.parse_submit("acme/nope", {"prompt": "x"}, Response.from_json(400, body))
    assert "onerouter:bytedance/seedance" in str(info.value)


def test_an_echoed_key_is_scrubbed(provider: OneRouterProvider) -> None:
    body = err(401, "Invalid API key test-key")
    with pytest.raises(AuthError) as info:
        provider.parse_submit("acme/x", {"prompt": "x"}, Response.from_json(401, body))
    assert "test-key" not in str(info.value) and "***" in str(info.value)
    body = poll_body(status="failed", fail_reason="bad key test-key")
    snap = provider.parse_poll(submitted(provider), Response.from_json(200, body))
    assert snap.error is not None and "test-key" not in snap.error


# ----------------------------------------------------------------------------------- malformed
@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>maintenance</html>"),
        Response.from_json(200, {"code": 200, "message": "success"}),  # no data
        Response.from_json(200, {"code": 200, "message": "success", "data": []}),
        Response.from_json(200, ["not", "an", "object"]),
        Response.from_json(200, {"code": 200, "data": {"status": "created"}}),  # no task id
        Response.from_json(200, {"code": 200, "data": {"task_id": True}}),
    ],
)
def test_malformed_submit(provider: OneRouterProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit("acme/x", {"prompt": "x"}, response)


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {}, b'{"code": 200, "data": {"task_id"'),  # truncated
        Response.from_json(200, {"code": 200, "data": {"task_id": TASK_ID}}),  # no status
        Response.from_json(200, {"code": 200, "data": {"status": 3}}),
    ],
)
def test_malformed_poll(provider: OneRouterProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


def test_html_5xx_on_poll_is_a_server_error(provider: OneRouterProvider) -> None:
    with pytest.raises(ServerError, match="Bad Gateway"):
        provider.parse_poll(submitted(provider), Response(502, {}, b"<html>502</html>"))


# ----------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"prompt": "  "}, "non-empty prompt"),
        ({"prompt": "x", "duration": "five"}, "duration.*number"),
        ({"prompt": "x", "duration": 0}, "duration.*>= 1"),
        ({"prompt": "x", "ratio": "wide"}, "ratio.*must match"),
        ({"prompt": "x", "resolution": "HD"}, "resolution.*must match"),
        ({"prompt": "x", "generate_audio": "maybe"}, "generate_audio.*bool"),
        ({"prompt": "x", "tools": "web_search"}, "tools.*list"),
        ({"prompt": "x", "model": "other"}, "'model' is not a parameter"),
        ({"prompt": "x", "content": "text"}, "'content' must be a list"),
        ({"prompt": "x", "seed": -3}, "seed"),
    ],
)
def test_validation_refuses_before_sending(
    provider: OneRouterProvider, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidParams, match=match):
        provider.validate("bytedance/seedance", params)


def test_validation_coerces_magic_text(provider: OneRouterProvider) -> None:
    clean = provider.validate(
        "bytedance/seedance",
        {"prompt": "x", "duration": "5", "generate_audio": "true", "watermark": False},
    )
    assert clean == {"prompt": "x", "duration": 5, "generate_audio": True, "watermark": False}
    with pytest.raises(UnknownModel):
        provider.validate("two words", {"prompt": "x"})
