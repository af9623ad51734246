"""fal queue adapter, dict in, Task out (no network).

Shapes come from the fal digest (/work/shared/providers/beyond/fal.md), copied into fixtures/fal/
(its README says which parts are verbatim and which were filled in).
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
from genwidgets.providers.fal import FalProvider
from tests.conftest import answered_at, doc_fixtures

RID = "80e732af-660e-45cd-bd63-580e4f2a94cc"
APP_URL = f"https://queue.fal.run/fal-ai/fast-sdxl/requests/{RID}"
THEN = datetime(2025, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
KEY = "key-id:key-secret"
fixture = doc_fixtures("fal")
answer = answered_at(THEN)


@pytest.fixture
def fal() -> FalProvider:
    return FalProvider(api_key=KEY)


def submitted(fal: FalProvider, name: str = "submit.json", model: str = "fal-ai/fast-sdxl") -> Task:
    params = fal.validate(model, {"prompt": "a red rose"})
    return fal.parse_submit(model, params, answer(200, fixture(name)))


def completed(fal: FalProvider, name: str = "status_completed.json") -> Task:
    return fal.parse_poll(submitted(fal), answer(200, fixture(name)))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("fal") is FalProvider
    assert FalProvider.env_var == "FAL_KEY"
    assert FalProvider.default_base_url == "https://queue.fal.run"
    assert FalProvider.can_cancel and not FalProvider.has_events
    assert not (FalProvider.can_list or FalProvider.can_delete)
    assert FalProvider.retention == 3600.0
    first, cap = FalProvider.poll_interval
    assert first <= 1.0 and cap <= 10.0
    kinds = {info.kind for info in FalProvider.models.values()}
    assert kinds == {"image", "video", "audio"}
    assert FalProvider.limits is not None and FalProvider.limits.limits.unlimited
    assert "never rejected" in FalProvider.limits.evidence


def test_key_never_in_repr_and_sent_as_key_scheme(fal: FalProvider) -> None:
    assert KEY not in repr(fal)
    request = fal.build_submit("fal-ai/flux/dev", {"prompt": "x"})
    assert request.headers["Authorization"] == f"Key {KEY}"
    assert FalProvider(api_key=None).auth_headers() == {}


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"FAL_KEY": "a:b"}, "a:b"),
        ({"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}, "id:secret"),
        ({"FAL_KEY": "a:b", "FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}, "a:b"),
        ({"FAL_KEY_ID": "id"}, None),
        ({"FAL_KEY_SECRET": "secret"}, None),
        ({}, None),
    ],
)
def test_key_from_the_environment(env: dict[str, str], key: str | None) -> None:
    assert FalProvider.key_from_env(env.get) == key


# ----------------------------------------------------------------------------------- submit
def test_submit_goes_to_the_full_model_id(fal: FalProvider) -> None:
    params = fal.validate("fal-ai/flux/dev", {"prompt": "a cat", "seed": "7", "num_images": 2})
    request = fal.build_submit("fal-ai/flux/dev", params)
    assert request.method == "POST"
    assert request.url == "https://queue.fal.run/fal-ai/flux/dev"
    assert request.json == {"prompt": "a cat", "seed": 7, "num_images": 2}


def test_the_deadline_is_sent_as_the_start_timeout() -> None:
    """The client fills in the seconds left (replicate's deadline seam)."""
    assert FalProvider.deadline_header == "X-Fal-Request-Timeout: {seconds}"


@pytest.mark.parametrize(
    "model", ["flux", "fal-ai/../secrets", "fal-ai//dev", "fal-ai/flux dev", "/fal-ai/flux", ""]
)
def test_model_ids_that_cannot_be_a_path_are_refused(fal: FalProvider, model: str) -> None:
    with pytest.raises(UnknownModel):
        fal.validate(model, {"prompt": "x"})


def test_catalogue_params_are_checked_locally(fal: FalProvider) -> None:
    with pytest.raises(InvalidParams):
        fal.validate("fal-ai/flux/dev", {"prompt": "x", "num_images": 9})
    kling = "fal-ai/kling-video/v2.6/pro/text-to-video"
    with pytest.raises(InvalidParams):
        fal.validate(kling, {"prompt": "x", "duration": "7"})
    # a number typed for Kling's text duration becomes the text fal expects
    clean = fal.validate(kling, {"prompt": "x", "duration": 5})
    assert clean["duration"] == "5"


def test_submit_answer_keeps_the_named_urls(fal: FalProvider) -> None:
    task = submitted(fal)
    assert task.id == RID and task.status is Status.QUEUED
    assert task.created_at == THEN
    assert task.provider_data == {
        "status_url": f"{APP_URL}/status",
        "response_url": APP_URL,
        "cancel_url": f"{APP_URL}/cancel",
    }


def test_newer_submit_answer_states_the_queue_position(fal: FalProvider) -> None:
    task = submitted(fal, "submit_in_queue.json")
    assert task.status is Status.QUEUED and task.provider_status == "IN_QUEUE"
    assert task.queue_position == 3


def test_submit_without_an_id_is_malformed(fal: FalProvider) -> None:
    with pytest.raises(MalformedResponse):
        fal.parse_submit("fal-ai/flux/dev", {}, answer(200, {"status_url": "x"}))
    with pytest.raises(MalformedResponse):
        fal.parse_submit("fal-ai/flux/dev", {}, Response(200, {}, b"<html>"))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, fixture("error_bad_key_401.json"), AuthError),
        (403, fixture("error_locked_403.json"), QuotaError),
        (403, {"detail": "Forbidden"}, AuthError),
        (422, fixture("error_validation_422.json"), InvalidParams),
        (404, {"detail": "Application 'nope' not found"}, UnknownModel),
        (429, {"detail": "Too many requests"}, RateLimited),
        (503, {"detail": "no runner", "error_type": "runner_scheduling_failure"}, ServerError),
    ],
)
def test_submit_errors(fal: FalProvider, status: int, body: Any, error: type) -> None:
    with pytest.raises(error) as info:
        fal.parse_submit("fal-ai/flux/dev", {}, answer(status, body, {"Retry-After": "3"}))
    assert KEY not in str(info.value)
    if error is RateLimited:
        assert info.value.retry_after == 3.0
    if error is InvalidParams:
        assert "field required" in str(info.value)


# ----------------------------------------------------------------------------------- polls
def test_poll_follows_status_url_with_logs(fal: FalProvider) -> None:
    request = fal.build_poll(submitted(fal))
    assert (request.method, request.url) == ("GET", f"{APP_URL}/status")
    assert request.params == {"logs": "1"}
    assert request.headers["Authorization"] == f"Key {KEY}"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/fal-ai/fast-sdxl/requests/x/status",
        "http://queue.fal.run/fal-ai/fast-sdxl/requests/x/status",  # https -> http
        "https://queue.fal.run.evil.example/x",
        None,
    ],
)
def test_urls_off_fals_site_never_get_the_key(fal: FalProvider, url: str | None) -> None:
    body = {**fixture("submit.json"), "status_url": url, "cancel_url": url, "response_url": url}
    task = fal.parse_submit("fal-ai/flux/dev", {}, answer(200, body))
    # rebuilt under owner/app only, never the full model id
    assert fal.build_poll(task).url == f"https://queue.fal.run/fal-ai/flux/requests/{RID}/status"
    assert fal.build_result(task).url == f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
    assert fal.build_cancel(task).url == f"https://queue.fal.run/fal-ai/flux/requests/{RID}/cancel"


def test_urls_on_a_sibling_fal_host_are_used(fal: FalProvider) -> None:
    body = {**fixture("submit.json"), "status_url": f"https://fal.run/fal-ai/x/requests/{RID}/status"}
    task = fal.parse_submit("fal-ai/flux/dev", {}, answer(200, body))
    assert fal.build_poll(task).url == f"https://fal.run/fal-ai/x/requests/{RID}/status"


def test_rebuilt_urls_keep_a_namespace_and_quote_the_id(fal: FalProvider) -> None:
    task = Task(id="a/b?c", provider="fal", model="workflows/me/my-flow/run", status=Status.QUEUED)
    assert fal.build_poll(task).url == (
        "https://queue.fal.run/workflows/me/my-flow/requests/a%2Fb%3Fc/status"
    )


def test_in_queue_has_a_position(fal: FalProvider) -> None:
    task = fal.parse_poll(submitted(fal), answer(202, fixture("status_in_queue.json")))
    assert task.status is Status.QUEUED and task.queue_position == 0
    assert task.started_at is None


def test_in_progress_has_logs_and_is_dated_started(fal: FalProvider) -> None:
    task = fal.parse_poll(submitted(fal), answer(202, fixture("status_in_progress.json")))
    assert task.status is Status.RUNNING and task.queue_position is None
    assert task.logs == ("step 12/30",)
    assert task.started_at == THEN
    # a later poll without logs keeps the earlier ones
    body = {**fixture("status_in_progress.json"), "logs": None}
    assert fal.parse_poll(task, answer(202, body)).logs == ("step 12/30",)


def test_logs_are_clipped_and_scrubbed_of_the_key(fal: FalProvider) -> None:
    lines = [{"message": f"line {i} {KEY}"} for i in range(80)] + [{"message": "x" * 900}, {}]
    body = {**fixture("status_in_progress.json"), "logs": lines}
    task = fal.parse_poll(submitted(fal), answer(202, body))
    assert len(task.logs) == 50 and task.logs[-1] == "x" * 500
    assert not any(KEY in line for line in task.logs)


def test_completed_is_done_pending_its_result(fal: FalProvider) -> None:
    task = completed(fal)
    assert task.status is Status.SUCCEEDED and not task.outputs
    assert task.finished_at == THEN
    assert task.usage == {"metrics": {"inference_time": 3.21}}
    assert fal.build_result(task).url == APP_URL


def test_completed_with_an_error_still_asks_the_result(fal: FalProvider) -> None:
    """The status's error is a hint; the result fetch says what happened (and may be 499)."""
    task = completed(fal, "status_completed_error.json")
    assert task.status is Status.SUCCEEDED and not task.outputs
    ended = fal.parse_result(task, answer(422, fixture("error_validation_422.json")))
    assert ended.status is Status.FAILED
    assert "field required" in (ended.error or "") and "HTTP 422" in (ended.error or "")


def test_unknown_and_third_party_statuses(fal: FalProvider) -> None:
    task = submitted(fal)
    assert fal.parse_poll(task, answer(202, {"status": "WARMING_UP"})).status is Status.RUNNING
    failed = fal.parse_poll(task, answer(200, {"status": "FAILED", "error": "boom"}))
    assert failed.status is Status.FAILED and failed.error == "boom"
    cancelled = fal.parse_poll(task, answer(200, {"status": "CANCELED"}))
    assert cancelled.status is Status.CANCELLED


def test_404_on_the_status_is_expired(fal: FalProvider) -> None:
    task = fal.parse_poll(submitted(fal), answer(404, {"detail": "Request not found"}))
    assert task.status is Status.EXPIRED and task.finished_at == THEN
    assert "kept 1 h" in (task.error or "") and "Request not found" in (task.error or "")


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (502, ServerError)])
def test_poll_errors(fal: FalProvider, status: int, error: type) -> None:
    with pytest.raises(error):
        fal.parse_poll(submitted(fal), answer(status, {"detail": "no"}))


def test_malformed_status(fal: FalProvider) -> None:
    with pytest.raises(MalformedResponse):
        fal.parse_poll(submitted(fal), Response(202, {}, b'{"status": "IN_PR'))


# ----------------------------------------------------------------------------------- status stream
def event(name: str, **changes: Any) -> str:
    """One SSE message's data: a digest status body, as the stream sends it."""
    return json.dumps({**fixture(name), **changes})


def test_the_stream_is_status_url_slash_stream_with_logs(fal: FalProvider) -> None:
    request = fal.build_task_events(submitted(fal))
    assert request is not None
    assert (request.method, request.url) == ("GET", f"{APP_URL}/status/stream")
    assert request.params == {"logs": "1"} and request.headers["Authorization"] == f"Key {KEY}"
    body = {**fixture("submit.json"), "status_url": "https://evil.example/x/status"}
    elsewhere = fal.parse_submit("fal-ai/flux/dev", {}, answer(200, body))
    rebuilt = fal.build_task_events(elsewhere)
    assert rebuilt is not None  # never to a host off fal's site, which would get the key
    assert rebuilt.url == f"https://queue.fal.run/fal-ai/flux/requests/{RID}/status/stream"


def test_stream_events_are_read_as_status_records(fal: FalProvider) -> None:
    task = submitted(fal)
    queued = fal.parse_task_event(task, "message", event("status_in_queue.json"), THEN)
    assert queued is not None and queued.status is Status.QUEUED and queued.queue_position == 0
    running = fal.parse_task_event(queued, "message", event("status_in_progress.json"), THEN)
    assert running is not None and running.status is Status.RUNNING
    assert running.queue_position is None and running.started_at == THEN
    assert running.logs == ("step 12/30",)
    done = fal.parse_task_event(running, "message", event("status_completed.json"), THEN)
    assert done is not None and done.status is Status.SUCCEEDED and not done.outputs
    assert done.finished_at == THEN and done.usage == {"metrics": {"inference_time": 3.21}}
    assert done.logs == ("step 12/30",)  # COMPLETED's "logs": null keeps them
    assert fal.build_result(done).url == APP_URL  # the result says how it ended


def test_stream_events_add_their_new_log_lines(fal: FalProvider) -> None:
    """fal-js appends each event's ``logs`` to those it has: an event carries the new lines."""
    def lines(*steps: int) -> list[dict[str, str]]:
        return [{"message": f"step {k}/30", "level": "INFO"} for k in steps]

    task = submitted(fal)
    for new in (lines(1), lines(2, 3), [], lines(4)):
        body = event("status_in_progress.json", logs=new)
        task = fal.parse_task_event(task, "message", body, THEN) or task
    assert task.logs == ("step 1/30", "step 2/30", "step 3/30", "step 4/30")
    whole = event("status_in_progress.json", logs=lines(1, 2, 3, 4, 5))  # a whole log again
    again = fal.parse_task_event(task, "message", whole, THEN)
    assert again is not None and again.logs == tuple(f"step {k}/30" for k in range(1, 6))
    many = event("status_in_progress.json", logs=lines(*range(6, 80)))
    kept = fal.parse_task_event(again, "message", many, THEN)
    assert kept is not None and len(kept.logs) == 50 and kept.logs[-1] == "step 79/30"


@pytest.mark.parametrize("data", ["", "keep-alive", "[]", '{"detail": "x"}', '{"status": 3}'])
def test_stream_messages_without_a_status_say_nothing(fal: FalProvider, data: str) -> None:
    assert fal.parse_task_event(submitted(fal), "message", data, THEN) is None


# ----------------------------------------------------------------------------------- results
@pytest.mark.parametrize(
    ("name", "kind", "size"),
    [
        ("result_images.json", "image", 1824075),
        ("result_video.json", "video", 3149129),
        ("result_audio_file.json", "audio", 1411244),
    ],
)
def test_result_outputs_by_kind(fal: FalProvider, name: str, kind: str, size: int) -> None:
    task = fal.parse_result(completed(fal), answer(200, fixture(name)))
    assert task.status is Status.SUCCEEDED
    (output,) = task.outputs
    assert output.kind == kind and output.size == size and output.url.startswith("https://")
    assert task.usage == {"metrics": {"inference_time": 3.21}}


def test_several_images_in_order_and_other_links_ignored(fal: FalProvider) -> None:
    body = {
        "images": [{"url": f"https://v3.fal.media/files/{i}.png"} for i in range(3)]
        + [{"url": "data:image/png;base64,AAAA"}, {"url": "file:///etc/passwd"}, "not a file"],
        "prompt": "https://not-an-output.example/a.png",
        "has_nsfw_concepts": [False, False, False],
    }
    task = fal.parse_result(completed(fal), answer(200, body))
    urls = [f"https://v3.fal.media/files/{i}.png" for i in range(3)]
    assert [o.url for o in task.outputs] == urls


def test_a_result_with_no_media_fails_rather_than_retrying(fal: FalProvider) -> None:
    task = fal.parse_result(completed(fal), answer(200, {"images": [], "seed": 1}))
    assert task.status is Status.FAILED and "no media" in (task.error or "")


def test_malformed_result_is_retried(fal: FalProvider) -> None:
    with pytest.raises(MalformedResponse):
        fal.parse_result(completed(fal), Response(200, {}, b'{"images": [{"url'))


def test_content_policy_failure(fal: FalProvider) -> None:
    task = fal.parse_result(completed(fal), answer(422, fixture("error_content_policy_422.json")))
    assert task.status is Status.FAILED and task.finished_at == THEN
    assert "flagged by a content checker" in (task.error or "")


def test_499_is_cancelled(fal: FalProvider) -> None:
    task = fal.parse_result(completed(fal), answer(499, fixture("error_cancelled_499.json")))
    assert task.status is Status.CANCELLED
    assert "cancelled" in (task.error or "") and "client_cancelled" in (task.error or "")


def test_a_model_5xx_fails_an_ingress_5xx_is_retried(fal: FalProvider) -> None:
    body = fixture("error_request_timeout_504.json")
    stamped = answer(504, body, {"x-fal-request-id": RID, "X-Fal-Request-Timeout-Type": "user"})
    task = fal.parse_result(completed(fal), stamped)
    assert task.status is Status.FAILED
    assert task.error == "Request timed out (HTTP 504) request_timeout"
    with pytest.raises(ServerError):
        fal.parse_result(completed(fal), answer(502, {"detail": "Bad Gateway"}))


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (429, RateLimited)])
def test_the_queues_own_refusals_on_the_result_are_raised(
    fal: FalProvider, status: int, error: type
) -> None:
    with pytest.raises(error):
        stamped = answer(status, {"detail": "no"}, {"x-fal-request-id": "r"})
        fal.parse_result(completed(fal), stamped)


def test_a_404_result_is_expired(fal: FalProvider) -> None:
    task = fal.parse_result(completed(fal), answer(404, {"detail": "Request not found"}))
    assert task.status is Status.EXPIRED and "6 min" in (task.error or "")


# ----------------------------------------------------------------------------------- cancel
def test_cancel_is_a_put_to_cancel_url(fal: FalProvider) -> None:
    request = fal.build_cancel(submitted(fal))
    assert (request.method, request.url) == ("PUT", f"{APP_URL}/cancel")
    assert request.headers["Authorization"] == f"Key {KEY}"


@pytest.mark.parametrize("code", [200, 202, 400, 404])
@pytest.mark.parametrize(
    ("name", "status", "said"),
    [
        ("cancel_ok.json", Status.CANCELLED, "OK"),
        ("cancel_cancellation_requested.json", Status.QUEUED, "CANCELLATION_REQUESTED"),
        ("cancel_already_completed.json", Status.QUEUED, "ALREADY_COMPLETED"),
        ("cancel_not_found.json", Status.EXPIRED, None),
    ],
)
def test_the_four_cancel_answers_whatever_the_code(
    fal: FalProvider, code: int, name: str, status: Status, said: str | None
) -> None:
    task = fal.parse_cancel(submitted(fal), answer(code, fixture(name)))
    assert task.status is status
    if said is not None:
        assert task.provider_status == said
    if status.is_terminal:
        assert task.finished_at == THEN


def test_cancel_of_a_finished_task_changes_nothing(fal: FalProvider) -> None:
    done = fal.parse_result(completed(fal), answer(200, fixture("result_images.json")))
    for name in ("cancel_ok.json", "cancel_not_found.json", "cancel_already_completed.json"):
        assert fal.parse_cancel(done, answer(200, fixture(name))) is done


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, fixture("error_bad_key_401.json"), AuthError),
        (200, {"status": "MAYBE"}, ProviderError),
        (500, {"detail": "oops"}, ServerError),
    ],
)
def test_other_cancel_answers_are_errors(
    fal: FalProvider, status: int, body: Any, error: type
) -> None:
    with pytest.raises(error):
        fal.parse_cancel(submitted(fal), answer(status, body))
