"""Replicate adapter, dict in, Task out (no network).

Shapes come from the reference digest (shared/providers/beyond/replicate.md), copied into
fixtures/replicate/ (its README says which bodies are verbatim and which are reconstructed).
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
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets._operations import with_deadline
from genwidgets.providers import Response, get_provider_class
from genwidgets.providers.replicate import SYNC_WAIT, ReplicateProvider
from tests.conftest import doc_fixtures

PID = "gm3qorzdhgbfurvjtvhg6dckhu"
GET = f"https://api.replicate.com/v1/predictions/{PID}"
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
FLUX = "black-forest-labs/flux-schnell"
fixture = doc_fixtures("replicate")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


@pytest.fixture
def provider() -> ReplicateProvider:
    return ReplicateProvider(api_key="r8_test-key")


def submitted(
    provider: ReplicateProvider, name: str = "prediction_starting.json", model: str = FLUX
) -> Task:
    clean = provider.validate(model, {"prompt": "a cup of coffee"})
    return provider.parse_submit(model, clean, Response.from_json(201, fixture(name)))


def poll(
    provider: ReplicateProvider, body: Any, code: int = 200, model: str = FLUX, **headers: str
) -> Task:
    task = submitted(provider, model=model)
    return provider.parse_poll(task, Response.from_json(code, body, headers))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("replicate") is ReplicateProvider
    assert ReplicateProvider.env_var == "REPLICATE_API_TOKEN"
    assert ReplicateProvider.default_base_url == "https://api.replicate.com"
    assert ReplicateProvider.can_cancel and ReplicateProvider.open_catalogue
    assert not ReplicateProvider.can_list and not ReplicateProvider.has_events
    assert {info.kind for info in ReplicateProvider.models.values()} == {
        "image",
        "video",
        "audio",
        "text",
    }
    doc = ReplicateProvider.__doc__ or ""
    assert "UNVERIFIED" in doc and "Cancel-After" in doc


def test_budget_row_is_the_two_documented_buckets() -> None:
    """Two documented buckets (600 creates, 3,000 others a minute), each its own: creates count
    against 600, polls and the rest against 3,000, so neither is overrun and polls never slow
    the creates down."""
    row = ReplicateProvider.limits
    assert row is not None
    assert row.limits.requests_per_minute == 600 and row.limits.max_in_flight is None
    assert row.counts == frozenset({"submit"})
    assert row.limits.other_requests_per_minute == 3000
    assert row.evidence.startswith("documented (")


def test_key_never_in_repr() -> None:
    assert "r8_test-key" not in repr(ReplicateProvider(api_key="r8_test-key"))


# ----------------------------------------------------------------------------------- submit
def test_official_model_create_matches_the_documented_request(provider: ReplicateProvider) -> None:
    doc = fixture("create_request_official.json")
    clean = provider.validate("bytedance/seedance-1-pro", doc["input"])
    request = provider.build_submit("bytedance/seedance-1-pro", clean)
    assert request.method == "POST"
    assert request.url == "https://api.replicate.com/v1/models/bytedance/seedance-1-pro/predictions"
    assert dict(request.headers) == {
        "Authorization": "Bearer r8_test-key",
        "Content-Type": "application/json",
    }  # a video is not a short job: no Prefer: wait
    assert request.json == doc


@pytest.mark.parametrize(
    ("model", "version"),
    [(f"replicate/hello-world:{VERSION}", VERSION), (VERSION, VERSION)],
)
def test_a_version_is_created_on_predictions(
    provider: ReplicateProvider, model: str, version: str
) -> None:
    request = provider.build_submit(model, {"text": "Alice", "seed": 3})
    assert request.url == "https://api.replicate.com/v1/predictions"
    assert request.json == {"version": version, "input": {"text": "Alice", "seed": 3}}
    assert "Prefer" not in request.headers  # not in the catalogue: its length is unknown


@pytest.mark.parametrize("model", [FLUX, "meta/meta-llama-3-8b-instruct"])
def test_short_jobs_ask_to_wait(provider: ReplicateProvider, model: str) -> None:
    request = provider.build_submit(model, {"prompt": "x"})
    assert request.headers["Prefer"] == f"wait={SYNC_WAIT}"
    assert SYNC_WAIT < 30  # under the client's read timeout: a held create must not time out


@pytest.mark.parametrize(
    ("seconds", "header"), [(1, "1m"), (59.5, "1m"), (60, "1m"), (61, "2m"), (3600, "60m")]
)
def test_the_deadline_becomes_cancel_after_in_whole_minutes_rounded_up(
    provider: ReplicateProvider, seconds: float, header: str
) -> None:
    request = provider.build_submit(FLUX, {"prompt": "x"})
    assert "Cancel-After" not in request.headers  # the client adds it when there is a deadline
    timed = with_deadline(request, provider.deadline_header or "", seconds)
    assert timed.headers == {**request.headers, "Cancel-After": header}


def test_a_deadline_header_in_seconds_rounds_up_too() -> None:
    """The same seam for any provider: ``{seconds}`` is whole seconds, never below 1."""
    request = ReplicateProvider().build_submit("acme/thing", {"prompt": "x"})
    assert with_deadline(request, "X-Timeout: {seconds}", 2.1).headers["X-Timeout"] == "3"
    assert with_deadline(request, "X-Timeout:{seconds}", 0).headers["X-Timeout"] == "1"


def test_base_url_override_and_no_key() -> None:
    bare = ReplicateProvider(base_url="http://127.0.0.1:8107/")
    request = bare.build_submit("acme/thing", {"prompt": "x"})
    assert request.url == "http://127.0.0.1:8107/v1/models/acme/thing/predictions"
    assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    "model",
    ["flux", "a/b/c", "../x/y", "a/..", "a/b:ver/../x", "a/b:", "a b/c", "a/b?x=1", "a%2f/b", ""],
)
def test_model_names_that_cannot_be_url_segments_are_refused(
    provider: ReplicateProvider, model: str
) -> None:
    with pytest.raises(UnknownModel):
        provider.validate(model, {"prompt": "x"})


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (FLUX, {"prompt": ""}),
        (FLUX, {"prompt": "x", "num_outputs": 5}),
        (FLUX, {"prompt": "x", "output_format": "gif"}),
        (FLUX, {"prompt": "x", "seed": "abc"}),
        ("bytedance/seedance-1-pro", {"prompt": "x", "resolution": "4k"}),
    ],
)
def test_bad_params_fail_before_any_request(
    provider: ReplicateProvider, model: str, params: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParams):
        provider.validate(model, params)


def test_parse_submit_starting(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    assert task.id == PID and task.provider == "replicate" and task.model == FLUX
    assert task.status is Status.QUEUED and task.provider_status == "starting"
    assert task.created_at == utc(2023, 9, 8, 16, 19, 34, 765994)
    assert task.started_at is None and task.outputs == ()
    assert task.provider_data == {"get": GET, "cancel": f"{GET}/cancel"}
    assert "r8_test-key" not in json.dumps(task.model_dump(mode="json"))


def test_prefer_wait_can_answer_done(provider: ReplicateProvider) -> None:
    task = submitted(provider, "prediction_succeeded_images.json")
    assert task.status is Status.SUCCEEDED and len(task.outputs) == 2


def test_prefer_wait_trap_processing_with_every_file_is_not_done(
    provider: ReplicateProvider,
) -> None:
    """The docs: the files may all be in ``output`` while the status still says processing."""
    task = submitted(provider, "prediction_processing_with_output.json")
    assert task.status is Status.RUNNING and not task.done
    assert task.outputs == ()  # taken only from a succeeded prediction


def test_prefer_wait_trap_starting_with_nothing(provider: ReplicateProvider) -> None:
    task = submitted(provider, "prediction_starting.json")
    assert task.status is Status.QUEUED and task.outputs == ()


@pytest.mark.parametrize("body", [{"status": "starting"}, {"id": ""}, ["x"], "starting"])
def test_parse_submit_without_an_id_is_malformed(provider: ReplicateProvider, body: Any) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit(FLUX, {"prompt": "x"}, Response.from_json(201, body))


def test_any_2xx_create_is_accepted(provider: ReplicateProvider) -> None:
    """201 is documented for async creates; 200 is not ruled out with Prefer: wait."""
    task = provider.parse_submit(
        FLUX, {"prompt": "x"}, Response.from_json(200, fixture("prediction_starting.json"))
    )
    assert task.id == PID


# ----------------------------------------------------------------------------------- poll
def test_poll_follows_urls_get_on_replicates_own_site(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    request = provider.build_poll(task)
    assert (request.method, request.url) == ("GET", GET)
    assert dict(request.headers) == {"Authorization": "Bearer r8_test-key"}


@pytest.mark.parametrize(
    "url",
    [
        f"https://evil.example/v1/predictions/{PID}",
        f"http://api.replicate.com/v1/predictions/{PID}",  # https -> http would leak the key
        f"https://user@api.replicate.com/v1/predictions/{PID}",
        f"https://api.replicate.com:8443/v1/predictions/{PID}",
        "javascript:alert(1)",
    ],
)
def test_poll_urls_elsewhere_never_get_the_key(provider: ReplicateProvider, url: str) -> None:
    body = fixture("prediction_starting.json")
    body["urls"] = {"get": url, "cancel": url + "/cancel"}
    task = provider.parse_submit(FLUX, {"prompt": "x"}, Response.from_json(201, body))
    assert task.provider_data == {}
    assert provider.build_poll(task).url == GET  # built from the id instead
    assert provider.build_cancel(task).url == f"{GET}/cancel"
    # provider_data coming back from a journal is checked again
    journaled = task.model_copy(update={"provider_data": {"get": url, "cancel": url}})
    assert provider.build_poll(journaled).url == GET


def test_poll_id_is_quoted() -> None:
    provider = ReplicateProvider(api_key="k", base_url="http://127.0.0.1:8107")
    task = Task(id="a/b?c", provider="replicate", model=FLUX, status=Status.QUEUED)
    assert provider.build_poll(task).url == "http://127.0.0.1:8107/v1/predictions/a%2Fb%3Fc"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("starting", Status.QUEUED),
        ("processing", Status.RUNNING),
        ("succeeded", Status.SUCCEEDED),
        ("failed", Status.FAILED),
        ("canceled", Status.CANCELLED),
        ("aborted", Status.EXPIRED),
        ("Processing", Status.RUNNING),
        ("booting", Status.RUNNING),  # an undocumented word: keep polling, never crash
    ],
)
def test_statuses(provider: ReplicateProvider, raw: str, status: Status) -> None:
    body = fixture("prediction_processing.json")
    body["status"] = raw
    assert poll(provider, body).status is status


def test_processing_reads_logs_and_progress(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_processing.json"))
    assert task.status is Status.RUNNING
    assert task.started_at == utc(2023, 9, 8, 16, 19, 34, 779176)
    assert task.logs[0] == "Using seed: 7" and task.progress == pytest.approx(0.4)


def test_succeeded_images_list(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_succeeded_images.json"))
    assert task.status is Status.SUCCEEDED and task.progress == 1.0
    assert [(o.kind, o.url) for o in task.outputs] == [
        ("image", "https://replicate.delivery/xezq/abc123/out-0.webp"),
        ("image", "https://replicate.delivery/xezq/abc123/out-1.webp"),
    ]
    assert task.finished_at == utc(2023, 9, 8, 16, 19, 34, 791859)
    assert task.usage == {"predict_time": 1.153, "total_time": 1.392}


def test_succeeded_video_string(provider: ReplicateProvider) -> None:
    body = fixture("prediction_succeeded_video.json")
    task = poll(provider, body, model="bytedance/seedance-1-pro")
    (out,) = task.outputs
    assert (out.kind, out.url) == ("video", "https://replicate.delivery/xezq/def456/output.mp4")
    assert task.usage == {"predict_time": 41.2, "total_time": 58.9}


def test_succeeded_object_output(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_succeeded_object.json"), model="suno-ai/bark")
    (out,) = task.outputs
    assert (out.kind, out.url) == ("audio", "https://replicate.delivery/xezq/ghi789/audio.wav")


def test_token_list_is_joined_into_one_text_output(provider: ReplicateProvider) -> None:
    model = "meta/meta-llama-3-8b-instruct"
    task = poll(provider, fixture("prediction_succeeded_tokens.json"), model=model)
    (out,) = task.outputs
    assert (out.kind, out.text, out.url) == ("text", "The sky is blue.", None)


def test_plain_text_output_is_text_not_a_download(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_hello_world.json"), model="replicate/hello-world")
    (out,) = task.outputs
    assert (out.kind, out.text, out.url) == ("text", "hello Alice", None)


@pytest.mark.parametrize(
    ("output", "found"),
    [
        ({"caption": "a cat", "score": 0.9}, [("text", '{"caption": "a cat", "score": 0.9}')]),
        ({"images": ["https://r.example/a.png"], "seed": 1}, [("image", "https://r.example/a.png")]),
        (["https://r.example/a.png", "file:///etc/passwd"], [("image", "https://r.example/a.png")]),
        ("https://r.example/clip", [("image", "https://r.example/clip")]),  # the catalogue kind
        (42, [("text", "42")]),
        ("data:image/png;base64,iVBORw0KGgo=", []),  # never a download, never text
        ("", []),
        ([], []),
        ({}, []),
        (None, []),
    ],
)
def test_output_shapes(
    provider: ReplicateProvider, output: Any, found: list[tuple[str, str]]
) -> None:
    body = fixture("prediction_succeeded_images.json")
    body["output"] = output
    task = poll(provider, body)
    assert [(o.kind, o.url or o.text) for o in task.outputs] == found


def test_a_text_models_link_is_text(provider: ReplicateProvider) -> None:
    body = fixture("prediction_succeeded_tokens.json")
    body["output"] = "https://example.com/see-this"
    task = poll(provider, body, model="meta/meta-llama-3-8b-instruct")
    assert [(o.kind, o.text) for o in task.outputs] == [("text", "https://example.com/see-this")]


def test_failed_carries_the_error(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_failed.json"))
    assert task.status is Status.FAILED and task.done
    assert task.error == "CUDA out of memory. Tried to allocate 2.00 GiB"
    body = fixture("prediction_failed.json")
    body["error"] = None
    assert "no reason" in (poll(provider, body).error or "")


def test_canceled(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_canceled.json"))
    assert task.status is Status.CANCELLED and task.outputs == ()


def test_aborted_is_terminal(provider: ReplicateProvider) -> None:
    """Cancel-After passed before the start: both official SDKs spin on it; it ends here."""
    task = poll(provider, fixture("prediction_aborted.json"))
    assert task.status is Status.EXPIRED and task.done and task.provider_status == "aborted"
    assert "Cancel-After" in (task.error or "") and task.started_at is None
    assert task.finished_at == utc(2023, 9, 8, 16, 20, 34, 765994)


def test_data_removed_after_an_hour_is_expired(provider: ReplicateProvider) -> None:
    task = poll(provider, fixture("prediction_data_removed.json"))
    assert task.status is Status.EXPIRED and task.provider_status == "succeeded"
    assert task.outputs == () and "1 h" in (task.error or "")


def test_a_failure_whose_data_was_removed_stays_failed(provider: ReplicateProvider) -> None:
    body = fixture("prediction_failed.json")
    body.update(output=None, data_removed=True)
    assert poll(provider, body).status is Status.FAILED


def test_usage_and_logs_are_kept_from_earlier_snapshots(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    running = provider.parse_poll(
        task, Response.from_json(200, fixture("prediction_processing.json"))
    )
    done = copy.deepcopy(fixture("prediction_succeeded_images.json"))
    done.update(logs="", metrics={"predict_time": 1.5, "flag": True, "note": "x"})
    final = provider.parse_poll(running, Response.from_json(200, done))
    assert final.logs == running.logs
    assert final.usage == {"predict_time": 1.5}  # numbers only


def test_404_for_a_prediction_we_created_is_expired(provider: ReplicateProvider) -> None:
    task = poll(provider, {"title": "Not found", "detail": "Not found.", "status": 404}, 404)
    assert task.status is Status.EXPIRED


# ----------------------------------------------------------------------------------- cancel
def test_cancel_posts_to_urls_cancel(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    request = provider.build_cancel(task)
    assert (request.method, request.url) == ("POST", f"{GET}/cancel")
    cancelled = provider.parse_cancel(
        task, Response.from_json(200, fixture("prediction_canceled.json"))
    )
    assert cancelled.status is Status.CANCELLED


def test_cancel_of_a_finished_prediction_keeps_what_it_says(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    done = provider.parse_cancel(
        task, Response.from_json(200, fixture("prediction_succeeded_images.json"))
    )
    assert done.status is Status.SUCCEEDED and len(done.outputs) == 2


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "code", "error"),
    [
        ("error_unauthenticated_missing.json", 401, AuthError),
        ("error_unauthenticated_invalid.json", 401, AuthError),
        ("error_insufficient_credit.json", 402, QuotaError),
        ("error_invalid_version.json", 422, UnknownModel),
        ("error_input_validation.json", 422, InvalidParams),
        ("error_throttled.json", 429, RateLimited),
    ],
)
def test_submit_errors(
    provider: ReplicateProvider, name: str, code: int, error: type[Exception]
) -> None:
    response = Response.from_json(code, fixture(name))
    with pytest.raises(error) as info:
        provider.parse_submit(FLUX, {"prompt": "x"}, response)
    said = fixture(name)["detail"]
    assert said in str(info.value) or isinstance(info.value, UnknownModel)


def test_unknown_official_model_is_unknown_model(provider: ReplicateProvider) -> None:
    body = {"title": "Not found", "detail": "Not found.", "status": 404}
    response = Response.from_json(404, body)
    with pytest.raises(UnknownModel) as info:
        provider.parse_submit("acme/nothing", {"prompt": "x"}, response)
    assert FLUX in info.value.known


@pytest.mark.parametrize(("header", "seconds"), [({"Retry-After": "30"}, 30.0), ({}, None)])
def test_429_with_and_without_retry_after(
    provider: ReplicateProvider, header: dict[str, str], seconds: float | None
) -> None:
    task = submitted(provider)
    response = Response.from_json(429, fixture("error_throttled.json"), header)
    with pytest.raises(RateLimited) as info:
        provider.parse_poll(task, response)
    assert info.value.retry_after == seconds and info.value.task_id == PID


def test_5xx_and_html(provider: ReplicateProvider) -> None:
    task = submitted(provider)
    with pytest.raises(ServerError):
        provider.parse_poll(task, Response.from_json(503, {"detail": "unavailable"}))
    html = Response(502, {"content-type": "text/html"}, b"<html>Bad gateway</html>")
    with pytest.raises(ServerError):
        provider.parse_poll(task, html)
    with pytest.raises(MalformedResponse, match="Expected JSON"):
        provider.parse_poll(task, Response(200, {"content-type": "text/html"}, b"<html>"))


def test_an_echoed_key_is_scrubbed(provider: ReplicateProvider) -> None:
    body = {"title": "Unauthenticated", "detail": "bad token r8_test-key", "status": 401}
    with pytest.raises(AuthError) as info:
        provider.parse_submit(FLUX, {"prompt": "x"}, Response.from_json(401, body))
    assert "r8_test-key" not in str(info.value)
