"""Segmind V2 adapter, dict in, Task out (no network).

Shapes come from seed 002 (/work/shared/providers/002_*.txt) and FINDINGS.md section 3, copied
into fixtures/segmind/ (its README lists the one placeholder that had to be filled in).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
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
from genwidgets.providers.segmind import SegmindProvider, same_site
from tests.conftest import doc_fixtures

RID = "2c7f59ea-13f1-402c-9353-915a2b5a2124"
STATUS_URL = "https://api.segmind.com/v2/requests/2c7f59ea-.../status"
RESPONSE_URL = "https://api.segmind.com/v2/requests/2c7f59ea-..."
IMAGE_URL = "https://segmind-inference-io.s3.amazonaws.com/e17ba-output.jpg"
fixture = doc_fixtures("segmind")


@pytest.fixture
def provider() -> SegmindProvider:
    return SegmindProvider(api_key="test-key")


def submitted(provider: SegmindProvider, model: str = "seedream-4.5") -> Task:
    clean = provider.validate(model, {"prompt": "a red rose"})
    return provider.parse_submit(model, clean, Response.from_json(200, fixture("submit.json")))


def completed(provider: SegmindProvider) -> Task:
    task = submitted(provider)
    return provider.parse_poll(task, Response.from_json(200, fixture("status_completed.json")))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("segmind") is SegmindProvider
    assert SegmindProvider.name == "segmind"
    assert SegmindProvider.env_var == "SEGMIND_API_KEY"
    assert SegmindProvider.default_base_url == "https://api.segmind.com"
    assert SegmindProvider.open_catalogue
    assert not (
        SegmindProvider.can_cancel or SegmindProvider.can_list or SegmindProvider.can_delete
    )
    assert not SegmindProvider.has_events
    assert SegmindProvider.retention == 3600.0  # "stored for 1 hour after submission"
    first, cap = SegmindProvider.poll_interval
    assert 1.0 <= first <= 2.0 and 6.0 <= cap <= 10.0  # the doc's example polls every 2 s
    assert SegmindProvider.models["seedream-4.5"].kind == "image"


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(SegmindProvider(api_key="test-key"))


# ----------------------------------------------------------------------------------- submit
def test_submit_request_matches_the_documented_curl(provider: SegmindProvider) -> None:
    doc = fixture("submit_request.json")
    clean = provider.validate("seedream-4.5", doc)
    request = provider.build_submit("seedream-4.5", clean)
    assert request.method == "POST"
    assert request.url == "https://api.segmind.com/v2/seedream-4.5"
    assert dict(request.headers) == {"x-api-key": "test-key", "Content-Type": "application/json"}
    assert request.json == doc  # params at the top level, seed an int


def test_submit_maps_seed_and_unknown_params_to_the_top_level() -> None:
    provider = SegmindProvider(api_key="test-key", base_url="http://127.0.0.1:8101/")
    clean = provider.validate(
        "flux-1.1-pro", {"prompt": "a fox", "seed": "7", "steps": 4, "negative": None}
    )
    request = provider.build_submit("flux-1.1-pro", clean)
    assert request.url == "http://127.0.0.1:8101/v2/flux-1.1-pro"
    assert request.json == {"prompt": "a fox", "seed": 7, "steps": 4}


def test_no_bearer_and_no_key_header_without_a_key() -> None:
    request = SegmindProvider().build_submit("seedream-4.5", {"prompt": "x"})
    assert "x-api-key" not in request.headers
    assert not any(k.lower() == "authorization" for k in request.headers)
    keyed = SegmindProvider(api_key="test-key").build_submit("seedream-4.5", {"prompt": "x"})
    assert not any(k.lower() == "authorization" for k in keyed.headers)  # Bearer is rejected


@pytest.mark.parametrize("model", ["../v1/x", "a/b", "seed?x=1", "a b", "", "-x", "a..b"])
def test_model_names_that_would_change_the_path_are_refused(
    provider: SegmindProvider, model: str
) -> None:
    with pytest.raises(UnknownModel):
        provider.validate(model, {"prompt": "x"})


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "x", "seed": "abc"},
        {"prompt": "x", "seed": -1},
        {"prompt": "x", "aspect_ratio": "wide"},
        {"prompt": "x", "aspect_ratio": 16},
        {"prompt": "x", "callback": object()},
    ],
)
def test_bad_params_fail_before_any_request(provider: SegmindProvider, params: Any) -> None:
    with pytest.raises(InvalidParams):
        provider.validate("seedream-4.5", params)


def test_aspect_ratio_accepts_the_documented_values(provider: SegmindProvider) -> None:
    for ratio in ("1:1", "16:9"):
        assert (
            provider.validate("seedream-4.5", {"prompt": "x", "aspect_ratio": ratio})[
                "aspect_ratio"
            ]
            == ratio
        )


def test_parse_submit_keeps_what_polling_needs(provider: SegmindProvider) -> None:
    before = datetime.now(timezone.utc)
    task = submitted(provider)
    assert task.id == RID and task.provider == "segmind" and task.model == "seedream-4.5"
    assert task.status is Status.QUEUED and task.provider_status == "QUEUED"
    assert task.params == {"prompt": "a red rose"}
    assert task.created_at is not None and task.created_at >= before
    assert task.provider_data == {"status_url": STATUS_URL, "response_url": RESPONSE_URL}
    json.dumps(task.provider_data)  # journalled
    assert "test-key" not in json.dumps(task.model_dump(mode="json"))


@pytest.mark.parametrize(
    "body",
    [{"status": "QUEUED"}, {"request_id": "", "status": "QUEUED"}, [RID], "QUEUED"],
)
def test_parse_submit_without_a_request_id_is_malformed(
    provider: SegmindProvider, body: Any
) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit("seedream-4.5", {"prompt": "x"}, Response.from_json(200, body))


def test_parse_submit_html_is_malformed(provider: SegmindProvider) -> None:
    response = Response(200, {"content-type": "text/html"}, b"<html>hi</html>")
    with pytest.raises(MalformedResponse, match="Expected JSON"):
        provider.parse_submit("seedream-4.5", {"prompt": "x"}, response)


def test_parse_submit_failed_with_422_and_an_id_is_a_failed_task(
    provider: SegmindProvider,
) -> None:
    body = {"request_id": "r1", "status": "FAILED", "error": "Prompt is Mandatory"}
    task = provider.parse_submit("seedream-4.5", {"prompt": "x"}, Response.from_json(422, body))
    assert task.status is Status.FAILED and task.error == "Prompt is Mandatory"


# ----------------------------------------------------------------------------------- URLs
def test_poll_and_result_follow_the_given_urls(provider: SegmindProvider) -> None:
    task = submitted(provider)
    poll = provider.build_poll(task)
    assert (poll.method, poll.url) == ("GET", STATUS_URL)
    assert dict(poll.headers) == {"x-api-key": "test-key"}
    result = provider.build_result(task)
    assert result is not None
    assert (result.method, result.url) == ("GET", RESPONSE_URL)
    assert dict(result.headers) == {"x-api-key": "test-key"}


def test_foreign_urls_are_not_kept_and_fall_back(provider: SegmindProvider) -> None:
    body = fixture("submit.json")
    body["status_url"] = f"https://evil.example.com/v2/requests/{RID}/status"
    body["response_url"] = f"https://api.segmind.com.evil.example/v2/requests/{RID}"
    task = provider.parse_submit("seedream-4.5", {"prompt": "x"}, Response.from_json(200, body))
    assert task.provider_data == {}
    assert provider.build_poll(task).url == f"https://api.segmind.com/v2/requests/{RID}/status"
    result = provider.build_result(task)
    assert result is not None and result.url == f"https://api.segmind.com/v2/requests/{RID}"


def test_urls_from_the_journal_are_checked_again(provider: SegmindProvider) -> None:
    task = submitted(provider).evolve(
        provider_data={"status_url": "https://attacker.test/s", "response_url": 42}
    )
    assert provider.build_poll(task).url.startswith("https://api.segmind.com/v2/requests/")
    result = provider.build_result(task)
    assert result is not None and result.url.startswith("https://api.segmind.com/v2/requests/")


def test_fallback_on_a_custom_base_quotes_the_id() -> None:
    provider = SegmindProvider(api_key="test-key", base_url="http://127.0.0.1:8101")
    task = Task(id="a/b?c", provider="segmind", model="m", status=Status.QUEUED)
    assert provider.build_poll(task).url == "http://127.0.0.1:8101/v2/requests/a%2Fb%3Fc/status"
    result = provider.build_result(task)
    assert result is not None and result.url == "http://127.0.0.1:8101/v2/requests/a%2Fb%3Fc"


def test_status_answer_refreshes_the_urls() -> None:
    provider = SegmindProvider(api_key="test-key", base_url="http://127.0.0.1:8101")
    task = Task(id="r1", provider="segmind", model="m", status=Status.QUEUED)
    body = {
        "status": "PROCESSING",
        "status_url": "http://127.0.0.1:8101/v2/requests/r1/status",
        "response_url": "http://127.0.0.1:9999/v2/requests/r1",  # other port: not kept
    }
    polled = provider.parse_poll(task, Response.from_json(200, body))
    assert polled.provider_data == {"status_url": "http://127.0.0.1:8101/v2/requests/r1/status"}


@pytest.mark.parametrize(
    ("url", "base", "ok"),
    [
        ("https://api.segmind.com/v2/requests/x", "https://api.segmind.com", True),
        ("https://api-latest.segmind.com/v2/requests/x", "https://api.segmind.com", True),
        ("https://segmind.com/x", "https://api.segmind.com", True),
        ("https://API.Segmind.COM./v2/x", "https://api.segmind.com", True),
        ("https://api.segmind.com:443/x", "https://api.segmind.com", True),
        ("https://api.segmind.com:8443/x", "https://api.segmind.com", False),
        ("https://segmind.com.evil.com/x", "https://api.segmind.com", False),
        ("https://evilsegmind.com/x", "https://api.segmind.com", False),
        ("https://api.segmind.com@evil.com/x", "https://api.segmind.com", False),
        ("https://user@api.segmind.com/x", "https://api.segmind.com", False),
        ("http://api.segmind.com/x", "https://api.segmind.com", False),  # downgrade
        ("ftp://api.segmind.com/x", "https://api.segmind.com", False),
        ("/v2/requests/x", "https://api.segmind.com", False),
        ("https://other.com/x", "https://segmind.com", False),  # no parent above a TLD
        ("https://evil.co.uk/x", "https://api.co.uk", False),  # co.uk is a public suffix
        ("http://127.0.0.1:8101/x", "http://127.0.0.1:8101", True),
        ("http://127.0.0.1:8102/x", "http://127.0.0.1:8101", False),
        ("http://127.0.0.2:8101/x", "http://127.0.0.1:8101", False),
        ("http://localhost:8101/x", "http://127.0.0.1:8101", False),
        ("https://api.segmind.com/x\n", "https://api.segmind.com", False),
        ("https://[::1/x", "https://api.segmind.com", False),  # unparseable
        ("https://api.segmind.com:99999/x", "https://api.segmind.com", False),  # bad port
    ],
)
def test_same_site(url: str, base: str, ok: bool) -> None:
    assert same_site(url, base) is ok


# ----------------------------------------------------------------------------------- statuses
def test_queued_status(provider: SegmindProvider) -> None:
    task = submitted(provider)
    polled = provider.parse_poll(task, Response.from_json(200, fixture("status_queued.json")))
    assert polled.status is Status.QUEUED and polled.provider_status == "QUEUED"
    assert polled.started_at is None and polled.finished_at is None
    assert polled.usage is None  # `metrics: {}` says nothing
    assert polled.provider_data == task.provider_data and polled.params == task.params


def test_processing_is_running_and_stamps_the_start(provider: SegmindProvider) -> None:
    task = submitted(provider)
    before = datetime.now(timezone.utc)
    running = provider.parse_poll(task, Response.from_json(200, {"status": "PROCESSING"}))
    assert running.status is Status.RUNNING and running.provider_status == "PROCESSING"
    assert running.started_at is not None and running.started_at >= before
    again = provider.parse_poll(running, Response.from_json(200, {"status": "PROCESSING"}))
    assert again.started_at == running.started_at  # first sighting is kept


def test_completed_status_has_no_outputs_yet_and_asks_for_the_result(
    provider: SegmindProvider,
) -> None:
    task = completed(provider)
    assert task.status is Status.SUCCEEDED and task.provider_status == "COMPLETED"
    assert task.outputs == ()
    assert task.finished_at is not None
    assert task.usage == {"metrics": {"inference_time": 13.06}}
    assert provider.build_result(task) is not None


def test_failed_with_422_reads_the_body_first(provider: SegmindProvider) -> None:
    task = submitted(provider)
    failed = provider.parse_poll(task, Response.from_json(422, fixture("failed_422.json")))
    assert failed.status is Status.FAILED and failed.provider_status == "FAILED"
    assert failed.error == "Prompt is Mandatory and must be string"
    assert failed.finished_at is not None and failed.outputs == ()


def test_failed_without_a_reason_still_says_something(provider: SegmindProvider) -> None:
    failed = provider.parse_poll(
        submitted(provider), Response.from_json(422, {"status": "FAILED", "error": None})
    )
    assert failed.status is Status.FAILED and failed.error and "FAILED" in failed.error


def test_undocumented_status_is_kept_and_treated_as_running(provider: SegmindProvider) -> None:
    polled = provider.parse_poll(submitted(provider), Response.from_json(200, {"status": "WARM"}))
    assert polled.status is Status.RUNNING and polled.provider_status == "WARM"


def test_lower_case_status_is_understood(provider: SegmindProvider) -> None:
    polled = provider.parse_poll(submitted(provider), Response.from_json(200, {"status": "queued"}))
    assert polled.status is Status.QUEUED


def test_expired_on_404_after_retention(provider: SegmindProvider) -> None:
    task = submitted(provider)
    gone = provider.parse_poll(task, Response.from_json(404, fixture("not_found_404.json")))
    assert gone.status is Status.EXPIRED and gone.finished_at is not None
    assert gone.error is not None and "1 h" in gone.error and "not found" in gone.error
    result_gone = provider.parse_result(
        completed(provider), Response.from_json(404, fixture("not_found_404.json"))
    )
    assert result_gone.status is Status.EXPIRED


# ----------------------------------------------------------------------------------- results
def test_image_result(provider: SegmindProvider) -> None:
    task = provider.parse_result(
        completed(provider), Response.from_json(200, fixture("result_image.json"))
    )
    assert task.status is Status.SUCCEEDED
    assert len(task.outputs) == 1  # `output` repeats images[0].url: not counted twice
    out = task.outputs[0]
    assert (out.kind, out.url, out.content_type, out.size) == (
        "image",
        IMAGE_URL,
        "image/jpeg",
        868446,  # a string in the body
    )
    assert task.usage == {
        "metrics": {"inference_time": 13.06},
        "timings": {"inference": 13.06},
        "seed": "123",
    }


def test_video_result_never_uses_file_name(provider: SegmindProvider) -> None:
    body = fixture("result_video.json")
    body["video"]["file_name"] = "../../etc/passwd"
    task = provider.parse_result(completed(provider), Response.from_json(200, body))
    (out,) = task.outputs
    assert (out.kind, out.content_type, out.size, out.path) == ("video", "video/mp4", 5757619, None)
    assert "passwd" not in json.dumps(task.model_dump(mode="json"))


@pytest.mark.parametrize("as_list", [False, True])
def test_audio_result_object_or_list(provider: SegmindProvider, as_list: bool) -> None:
    entry = {"url": "https://cdn.segmind.com/a.bin", "content_type": "audio/wav", "file_size": 9}
    body = {"status": "COMPLETED", "audio": [entry] if as_list else entry, "output": entry["url"]}
    task = provider.parse_result(completed(provider), Response.from_json(200, body))
    assert [(o.kind, o.size) for o in task.outputs] == [("audio", 9)]


def test_text_result_is_a_text_output(provider: SegmindProvider) -> None:
    task = provider.parse_result(
        completed(provider), Response.from_json(200, fixture("result_text.json"))
    )
    (out,) = task.outputs
    assert out.kind == "text" and out.text == "The generated text..." and out.url is None


def test_output_url_alone_is_a_media_output(provider: SegmindProvider) -> None:
    body = {"status": "COMPLETED", "output": "https://cdn.segmind.com/x/out.mp4"}
    task = provider.parse_result(completed(provider), Response.from_json(200, body))
    assert [(o.kind, o.url) for o in task.outputs] == [
        ("video", "https://cdn.segmind.com/x/out.mp4")
    ]


def test_output_url_without_extension_takes_the_model_kind(provider: SegmindProvider) -> None:
    body = {"status": "COMPLETED", "output": "https://cdn.segmind.com/x/blob"}
    task = provider.parse_result(completed(provider), Response.from_json(200, body))
    assert task.outputs[0].kind == "image"  # seedream-4.5 is an image model


def test_non_http_urls_are_not_outputs(provider: SegmindProvider) -> None:
    body = {
        "status": "COMPLETED",
        "images": [{"url": "javascript:alert(1)"}, {"url": "file:///etc/passwd"}, {"url": 3}],
        "output": "https://cdn.segmind.com/ok.png",
    }
    task = provider.parse_result(completed(provider), Response.from_json(200, body))
    assert [o.url for o in task.outputs] == ["https://cdn.segmind.com/ok.png"]


def test_completed_result_without_output_is_malformed(provider: SegmindProvider) -> None:
    with pytest.raises(MalformedResponse, match="no output"):
        provider.parse_result(
            completed(provider), Response.from_json(200, {"status": "COMPLETED", "output": None})
        )


def test_result_still_processing_keeps_polling(provider: SegmindProvider) -> None:
    task = provider.parse_result(completed(provider), Response.from_json(200, {"status": "QUEUED"}))
    assert task.status is Status.QUEUED and not task.done


def test_failed_result_with_422(provider: SegmindProvider) -> None:
    task = provider.parse_result(
        completed(provider), Response.from_json(422, fixture("failed_422.json"))
    )
    assert task.status is Status.FAILED and task.outputs == ()


# ----------------------------------------------------------------------------------- errors
def submit_error(provider: SegmindProvider, response: Response) -> BaseException:
    with pytest.raises(Exception) as info:
        provider.parse_submit("seedream-4.5", {"prompt": "x"}, response)
    return info.value


def test_401_is_an_auth_error_and_never_echoes_the_key(provider: SegmindProvider) -> None:
    body = {"error": "Invalid API key test-key, please check your x-api-key header"}
    err = submit_error(provider, Response.from_json(401, body))
    assert type(err) is AuthError and err.status_code == 401
    assert "test-key" not in str(err) and "x-api-key header" in str(err)


def test_403_is_an_auth_error(provider: SegmindProvider) -> None:
    err = submit_error(provider, Response.from_json(403, {"error": "Forbidden"}))
    assert type(err) is AuthError


@pytest.mark.parametrize(
    "message",
    [
        "Insufficient credits. Please recharge your account.",
        "Team spend limit reached",
    ],
)
def test_406_about_money_is_a_quota_error(provider: SegmindProvider, message: str) -> None:
    err = submit_error(provider, Response.from_json(406, {"error": message}))
    assert type(err) is QuotaError and err.status_code == 406 and message in str(err)


def test_406_about_content_type_is_a_provider_error(provider: SegmindProvider) -> None:
    body = {"error": "Content-Type must be application/json or multipart/form-data"}
    err = submit_error(provider, Response.from_json(406, body))
    assert type(err) is ProviderError and "Content-Type" in str(err)


def test_404_on_submit_is_an_unknown_model(provider: SegmindProvider) -> None:
    err = submit_error(provider, Response.from_json(404, {"error": "Model not found"}))
    assert isinstance(err, UnknownModel) and "Model not found" in str(err)
    assert "segmind:seedream-4.5" in str(err)  # lists what we know


def test_410_on_submit_is_an_unknown_model_saying_retired(provider: SegmindProvider) -> None:
    err = submit_error(provider, Response.from_json(410, {"error": "This model is deprecated"}))
    assert isinstance(err, UnknownModel) and "retired" in str(err)


def test_410_elsewhere_is_a_provider_error(provider: SegmindProvider) -> None:
    with pytest.raises(ProviderError, match="retired") as info:
        provider.parse_poll(submitted(provider), Response.from_json(410, {"error": "Gone"}))
    assert info.value.status_code == 410


def test_429_takes_its_delay_from_the_reset_header(provider: SegmindProvider) -> None:
    reset = datetime.now(timezone.utc) + timedelta(seconds=30)
    response = Response.from_json(
        429,
        {"error": "Rate limit exceeded"},
        {"x-rate-limit-reset-at-utc": reset.isoformat(timespec="milliseconds")},
    )
    err = submit_error(provider, response)
    assert type(err) is RateLimited and err.retry_after is not None
    assert 25.0 <= err.retry_after <= 30.5
    with pytest.raises(RateLimited) as info:
        provider.parse_poll(submitted(provider), response)
    assert info.value.retry_after is not None and info.value.retry_after > 25.0


def test_429_with_a_past_reset_or_none(provider: SegmindProvider) -> None:
    past = Response.from_json(429, {}, {"x-rate-limit-reset-at-utc": "2020-01-01T00:00:00Z"})
    err = submit_error(provider, past)
    assert isinstance(err, RateLimited) and err.retry_after == 0.0
    bare = submit_error(provider, Response.from_json(429, {"error": "slow down"}))
    assert isinstance(bare, RateLimited) and bare.retry_after is None


def test_405_html_is_a_provider_error_without_crashing(provider: SegmindProvider) -> None:
    html = b"<html><body><h1>405 Not Allowed</h1></body></html>"
    response = Response(405, {"content-type": "text/html"}, html)
    err = submit_error(provider, response)
    assert type(err) is ProviderError and err.status_code == 405
    assert "Method Not Allowed" in str(err) and "<html>" not in str(err)
    with pytest.raises(ProviderError):
        provider.parse_poll(submitted(provider), response)


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_is_a_server_error(provider: SegmindProvider, code: int) -> None:
    err = submit_error(provider, Response.from_json(code, {"error": "boom"}))
    assert type(err) is ServerError and err.status_code == code
    with pytest.raises(ServerError):
        provider.parse_poll(
            submitted(provider), Response(code, {"content-type": "text/html"}, b"<h1>bad</h1>")
        )


def test_poll_401_raises(provider: SegmindProvider) -> None:
    with pytest.raises(AuthError) as info:
        provider.parse_poll(submitted(provider), Response.from_json(401, {"error": "no key"}))
    assert info.value.task_id == RID and info.value.model == "seedream-4.5"


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>maintenance</html>"),
        Response(200, {}, b""),
        Response.from_json(200, {"request_id": RID}),
        Response.from_json(200, ["COMPLETED"]),
    ],
)
def test_malformed_poll_bodies(provider: SegmindProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


def test_error_text_is_clipped(provider: SegmindProvider) -> None:
    body = copy.deepcopy(fixture("failed_422.json"))
    body["error"] = "x" * 10_000
    failed = provider.parse_poll(submitted(provider), Response.from_json(422, body))
    assert failed.error is not None and len(failed.error) <= 500


def test_failure_text_never_echoes_the_key(provider: SegmindProvider) -> None:
    body = {"status": "FAILED", "error": "bad header x-api-key=test-key"}
    failed = provider.parse_poll(submitted(provider), Response.from_json(422, body))
    assert failed.error is not None and "test-key" not in failed.error and "***" in failed.error
