"""Oxen.ai adapter, dict in, Task out (no network).

Shapes come from seed 004 (/work/shared/providers/004_*.txt) and the async-queue reference that
FINDINGS.md section 5 reads, copied into fixtures/oxen/ (its README says which parts are verbatim).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
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
from genwidgets.providers import Event, Response, get_provider_class
from genwidgets.providers.oxen import OxenProvider
from tests.conftest import doc_fixtures

FIXTURES = Path(__file__).parent / "fixtures" / "oxen"
KLING = "kling-video-v2-6-pro-text-to-video"
KLEIN = "black-forest-labs-flux-2-klein-4b"
GEN_ID = "bb8f5eb7-361e-4e13-ab73-67457bc8057e"  # submit.json
DOC_ID = "7cf9b23a-1234-5678-9abc-def012345678"  # the poll/list examples
EVENT_ID = "bb8f5eb7-..."  # the SSE examples (the doc shortens the id)
fixture = doc_fixtures("oxen")


def sse(name: str) -> tuple[str, str]:
    """(event, data) of a one-message SSE fixture, as httpx-sse hands them over."""
    event, data = "message", ""
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data = line[len("data:") :].lstrip(" ")
    return event, data


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def recent(when: datetime | None) -> bool:
    return when is not None and abs(datetime.now(timezone.utc) - when) < timedelta(seconds=30)


def oxen_error(kind: str, detail: str, title: str = "Error") -> dict[str, Any]:
    """The error envelope of FINDINGS.md section 5 (texts are ours)."""
    return {
        "error": {"type": kind, "title": title, "detail": detail},
        "status": "error",
        "status_message": kind,
    }


@pytest.fixture
def provider() -> OxenProvider:
    return OxenProvider(api_key="test-key")


def submitted(provider: OxenProvider, model: str = KLING, task_id: str = GEN_ID) -> Task:
    clean = provider.validate(model, {"prompt": "a cat"})
    body = {"generations": [{"generation_id": task_id, "status": "queued"}]}
    return provider.parse_submit(model, clean, Response.from_json(200, body))


def poll(provider: OxenProvider, task: Task, body: Any, status: int = 200, **headers: str) -> Task:
    return provider.parse_poll(task, Response.from_json(status, body, headers))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("oxen") is OxenProvider
    assert OxenProvider.name == "oxen"
    assert OxenProvider.env_var == "OXEN_API_KEY"
    assert OxenProvider.default_base_url == "https://hub.oxen.ai"
    assert OxenProvider.open_catalogue
    assert OxenProvider.can_cancel and OxenProvider.can_list and OxenProvider.has_events
    assert not OxenProvider.can_delete
    first, cap = OxenProvider.poll_interval
    assert (first, cap) == (2.0, 15.0)
    kinds = {name: info.kind for name, info in OxenProvider.models.items()}
    assert kinds == {KLING: "video", KLEIN: "image"}


def test_docstring_states_the_sse_facts() -> None:
    doc = " ".join((OxenProvider.__doc__ or "").split())
    assert "replay" in doc and "before" in doc and "enqueue" in doc
    assert "15 s" in doc and "keep-alive" in doc
    assert "Per user" in doc


def test_key_never_in_repr_or_task(provider: OxenProvider) -> None:
    assert "test-key" not in repr(provider)
    task = submitted(provider)
    assert "test-key" not in task.model_dump_json() + repr(task)


# ----------------------------------------------------------------------------------- submit
def test_submit_request_matches_the_documented_body(provider: OxenProvider) -> None:
    doc = fixture("submit_request.json")
    params = {"prompt": doc["prompt"], "duration": "5"}  # the magic hands over text
    request = provider.build_submit(KLING, provider.validate(KLING, params))
    assert request.method == "POST"
    assert request.url == "https://hub.oxen.ai/api/ai/queue"
    assert request.headers == {"Authorization": "Bearer test-key"}
    assert request.json == doc


def test_submit_puts_seed_and_other_params_at_the_top_level() -> None:
    provider = OxenProvider(api_key="test-key", base_url="http://127.0.0.1:8104/")
    params = {
        "prompt": "a red cube",
        "seed": "42",
        "aspect_ratio": "1:1",
        "target_namespace": "my-team",  # undocumented here: passed through as the queue wants
        "input_image": ["https://hub.oxen.ai/api/repos/x/file/main/a.png"],
    }
    request = provider.build_submit(KLEIN, provider.validate(KLEIN, params))
    assert request.url == "http://127.0.0.1:8104/api/ai/queue"
    assert request.json == {"model": KLEIN, **params, "seed": 42}


@pytest.mark.parametrize("count", [2, 4, 5, 0, "3", True, 1.5])
def test_num_generations_other_than_one_is_refused(provider: OxenProvider, count: Any) -> None:
    with pytest.raises(InvalidParams, match="one task per generation") as info:
        provider.validate(KLING, {"prompt": "x", "num_generations": count})
    assert "num_generations" in str(info.value) and info.value.provider == "oxen"


@pytest.mark.parametrize("count", [1, "1"])
def test_num_generations_one_is_the_default_and_left_out(
    provider: OxenProvider, count: Any
) -> None:
    clean = provider.validate(KLING, {"prompt": "x", "num_generations": count})
    assert clean == {"prompt": "x"}
    assert "num_generations" not in provider.build_submit(KLING, clean).json


@pytest.mark.parametrize(
    ("model", "params", "match"),
    [
        (KLING, {"prompt": "x", "duration": 7}, "duration"),
        (KLING, {"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
        (KLING, {"prompt": "x", "cfg_scale": 11}, "cfg_scale"),
        (KLEIN, {"prompt": "x", "num_inference_steps": 0}, "num_inference_steps"),
        (KLEIN, {"prompt": "x", "output_format": "gif"}, "output_format"),
        (KLING, {"prompt": "  "}, "prompt"),
        (KLING, {"duration": 5}, "prompt"),
        ("some-new-model", {"prompt": "x", "model": "other"}, "model"),
        (KLING, {"prompt": "x", "seed": -1}, "seed"),
    ],
)
def test_invalid_params_are_refused_before_sending(
    provider: OxenProvider, model: str, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidParams, match=match):
        provider.validate(model, params)


def test_open_catalogue_passes_unknown_models_but_not_blank_names(provider: OxenProvider) -> None:
    assert provider.validate("google-veo-3-1", {"prompt": "x", "x": 1}) == {"prompt": "x", "x": 1}
    with pytest.raises(UnknownModel):
        provider.validate("kling video", {"prompt": "x"})


@pytest.mark.parametrize("code", [200, 201])
def test_parse_submit(provider: OxenProvider, code: int) -> None:
    clean = provider.validate(KLING, {"prompt": "a cat", "duration": 10})
    task = provider.parse_submit(KLING, clean, Response.from_json(code, fixture("submit.json")))
    assert task.id == GEN_ID and task.provider == "oxen" and task.model == KLING
    assert task.status is Status.QUEUED and task.provider_status == "queued"
    assert task.params == {"prompt": "a cat", "duration": 10}
    assert recent(task.created_at) and task.finished_at is None and task.outputs == ()
    assert task.provider_data == {}
    json.dumps(task.provider_data)


def test_parse_submit_keeps_unrequested_extra_generations(provider: OxenProvider) -> None:
    task = provider.parse_submit(
        KLING, {"prompt": "x"}, Response.from_json(200, fixture("submit_two.json"))
    )
    assert task.id == GEN_ID
    assert task.provider_data == {"other_generation_ids": ["e9bede09-cd0e-46cf-bbcd-cb1a50099351"]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("processing", Status.RUNNING), ("warming_up", Status.RUNNING), (None, Status.QUEUED)],
)
def test_parse_submit_keeps_the_reported_state(
    provider: OxenProvider, raw: str | None, expected: Status
) -> None:
    entry = {"generation_id": GEN_ID, **({"status": raw} if raw else {})}
    body = {"generations": [entry]}  # the April docs answered "processing"
    task = provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(200, body))
    assert task.status is expected and task.provider_status == raw


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>gateway</html>"),
        Response.from_json(200, {"generations": []}),
        Response.from_json(200, {"generations": [{"status": "queued"}]}),
        Response.from_json(200, {"generations": [{"generation_id": True}]}),
        Response.from_json(200, [GEN_ID]),
    ],
)
def test_parse_submit_malformed(provider: OxenProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, response)
    assert info.value.status_code == 200


# ----------------------------------------------------------------------------------- errors
def test_unauthenticated_is_an_auth_error(provider: OxenProvider) -> None:
    body = oxen_error("unauthenticated", "Missing or invalid API key", "Unauthenticated")
    with pytest.raises(AuthError, match="Missing or invalid API key") as info:
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(401, body))
    assert info.value.status_code == 401 and info.value.model == KLING


def test_invalid_params_is_a_provider_error_with_the_detail(provider: OxenProvider) -> None:
    body = oxen_error("invalid_params", "num_generations must be an integer between 1 and 4")
    with pytest.raises(ProviderError) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(400, body))
    assert type(info.value) is ProviderError and "refused the parameters" in str(info.value)
    assert "num_generations must be an integer between 1 and 4" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, oxen_error("resource_not_found", "Model not found: kling-v9", "Not found")),
        (400, {"error": {"message": "Model not found: kling-v9"}}),
    ],
)
def test_unknown_model_on_submit(provider: OxenProvider, status: int, body: Any) -> None:
    with pytest.raises(UnknownModel, match="Model not found: kling-v9") as info:
        provider.parse_submit("kling-v9", {"prompt": "x"}, Response.from_json(status, body))
    assert info.value.provider == "oxen" and info.value.model == "kling-v9"
    assert KLING in info.value.known


def test_resource_not_found_title_only_is_still_an_unknown_model(provider: OxenProvider) -> None:
    body = fixture("error_not_found.json")
    with pytest.raises(UnknownModel, match="could not be found"):
        provider.parse_submit("nope", {"prompt": "x"}, Response.from_json(404, body))


def test_text_model_is_refused_with_an_explanation(provider: OxenProvider) -> None:
    body = {"error": {"message": ":unsupported_media_type"}}
    with pytest.raises(ProviderError, match="image and video models") as info:
        provider.parse_submit("gpt-4o", {"prompt": "x"}, Response.from_json(400, body))
    assert not isinstance(info.value, UnknownModel)


@pytest.mark.parametrize(
    ("status", "exc"),
    [(500, ServerError), (503, ServerError), (400, ProviderError), (422, ProviderError)],
)
def test_unknown_error_is_a_server_error_only_when_5xx(
    provider: OxenProvider, status: int, exc: type[Exception]
) -> None:
    body = oxen_error("unknown_error", "Something went wrong")
    with pytest.raises(ProviderError) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(status, body))
    assert type(info.value) is exc and "Something went wrong" in str(info.value)


@pytest.mark.parametrize(("headers", "after"), [({"Retry-After": "7"}, 7.0), ({}, None)])
def test_rate_limited(provider: OxenProvider, headers: dict[str, str], after: Any) -> None:
    body = oxen_error("rate_limited", "Too many requests")
    response = Response.from_json(429, body, headers)
    with pytest.raises(RateLimited) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, response)
    assert info.value.retry_after == after
    with pytest.raises(RateLimited):
        provider.parse_poll(submitted(provider), response)


def test_credits_are_a_quota_error(provider: OxenProvider) -> None:
    body = oxen_error("invalid_params", "Insufficient credits")
    with pytest.raises(QuotaError):
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(400, body))
    with pytest.raises(QuotaError):
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(402, {}))


def test_error_in_a_200_is_still_an_error(provider: OxenProvider) -> None:
    body = oxen_error("unknown_error", "queue unavailable")
    with pytest.raises(ProviderError, match="queue unavailable"):
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(200, body))


def test_an_echoed_key_is_scrubbed(provider: OxenProvider) -> None:
    body = oxen_error("unauthenticated", "key test-key is not valid")
    with pytest.raises(AuthError) as info:
        provider.parse_submit(KLING, {"prompt": "x"}, Response.from_json(401, body))
    assert "test-key" not in str(info.value) and "***" in str(info.value)


# ----------------------------------------------------------------------------------- poll
def test_poll_request(provider: OxenProvider) -> None:
    request = provider.build_poll(submitted(provider))
    assert request.method == "GET"
    assert request.url == f"https://hub.oxen.ai/api/ai/queue/{GEN_ID}"
    assert request.headers == {"Authorization": "Bearer test-key"}
    odd = Task(id="../x?y", provider="oxen", model=KLING, status=Status.QUEUED)
    assert provider.build_poll(odd).url == "https://hub.oxen.ai/api/ai/queue/..%2Fx%3Fy"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("queued", Status.QUEUED),
        ("processing", Status.RUNNING),
        ("succeeded", Status.SUCCEEDED),
        ("failed", Status.FAILED),
        ("cancelled", Status.CANCELLED),
        ("Processing", Status.RUNNING),
        ("warming_up", Status.RUNNING),  # undocumented: kept raw, treated as running
    ],
)
def test_every_status_maps(provider: OxenProvider, raw: str, expected: Status) -> None:
    task = submitted(provider, task_id=DOC_ID)
    body = {**fixture("poll_processing.json"), "status": raw}
    if raw == "succeeded":
        body["result_url"] = "https://hub.oxen.ai/api/repos/u/r/file/main/out.mp4"
    snap = poll(provider, task, body)
    assert snap.status is expected and snap.provider_status == raw
    assert snap.params == {"prompt": "a cat"}
    assert (snap.finished_at is not None) == expected.is_terminal


def test_processing(provider: OxenProvider) -> None:
    snap = poll(provider, submitted(provider, task_id=DOC_ID), fixture("poll_processing.json"))
    assert snap.status is Status.RUNNING and snap.error is None and snap.outputs == ()
    assert snap.created_at == utc(1775091431) and snap.started_at == utc(1775091432)
    assert snap.finished_at is None
    assert snap.provider_data == {"media_type": "video"}


def test_succeeded_output_and_timestamps(provider: OxenProvider) -> None:
    snap = poll(provider, submitted(provider, task_id=DOC_ID), fixture("poll_succeeded.json"))
    assert snap.status is Status.SUCCEEDED and snap.error is None
    assert [(o.url, o.kind) for o in snap.outputs] == [
        ("https://hub.oxen.ai/api/repos/...", "video")
    ]
    assert snap.created_at == utc(1775091431) and snap.started_at == utc(1775091432)
    assert snap.finished_at == utc(1775091590)
    assert snap.elapsed == 159.0


def test_failed_with_error_message(provider: OxenProvider) -> None:
    snap = poll(provider, submitted(provider, task_id=DOC_ID), fixture("poll_failed.json"))
    assert snap.status is Status.FAILED and snap.error == "Insufficient credits"
    assert snap.finished_at == utc(1775091435) and snap.outputs == ()


def test_failed_without_reason_and_without_completed_at(provider: OxenProvider) -> None:
    body = {**fixture("poll_failed.json"), "error_message": None, "completed_at": None}
    snap = poll(provider, submitted(provider, task_id=DOC_ID), body)
    assert snap.status is Status.FAILED and snap.error and "no reason" in snap.error
    assert recent(snap.finished_at)


def test_cancelled(provider: OxenProvider) -> None:
    body = {**fixture("poll_processing.json"), "status": "cancelled", "completed_at": 1775091500}
    snap = poll(provider, submitted(provider, task_id=DOC_ID), body)
    assert snap.status is Status.CANCELLED and snap.finished_at == utc(1775091500)
    assert snap.outputs == ()


def test_april_record_without_status_is_in_progress(provider: OxenProvider) -> None:
    task = submitted(provider, task_id=DOC_ID)
    snap = poll(provider, task, fixture("poll_in_progress_april.json"))
    assert snap.status is Status.RUNNING and snap.provider_status is None
    assert snap.created_at == utc(1775091431)


@pytest.mark.parametrize(
    ("model", "media_type", "url", "kind"),
    [
        ("some-new-model", "image", "https://hub.oxen.ai/api/repos/u/r/file/main/out", "image"),
        (KLEIN, "video", "https://hub.oxen.ai/api/repos/u/r/file/main/out", "video"),  # stated
        (KLEIN, None, "https://hub.oxen.ai/api/repos/u/r/file/main/out", "image"),  # catalogue
        ("some-new-model", None, "https://hub.oxen.ai/api/repos/u/r/a.mp4", "video"),  # extension
    ],
)
def test_output_kinds(
    provider: OxenProvider, model: str, media_type: str | None, url: str, kind: str
) -> None:
    body = {"generation_id": GEN_ID, "status": "succeeded", "result_url": url}
    if media_type:
        body["media_type"] = media_type
    snap = poll(provider, submitted(provider, model), body)
    assert [(o.url, o.kind) for o in snap.outputs] == [(url, kind)]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "javascript:alert(1)", 7, "https://x.test/a b.png", None]
)
def test_untrusted_result_url_is_dropped(provider: OxenProvider, url: Any) -> None:
    body = {"generation_id": GEN_ID, "status": "succeeded", "result_url": url}
    task = submitted(provider)
    snap = poll(provider, task, body)
    assert snap.status is Status.SUCCEEDED and snap.outputs == ()
    # The client then asks once more (build_result), which is the same poll.
    again = provider.build_result(snap)
    assert again is not None and again.url == provider.build_poll(task).url
    fixed = {**body, "result_url": "https://hub.oxen.ai/api/repos/u/r/file/main/x.png"}
    done = provider.parse_result(snap, Response.from_json(200, fixed))
    assert [o.kind for o in done.outputs] == ["image"]


def test_expired_on_404(provider: OxenProvider) -> None:
    task = submitted(provider)
    snap = poll(provider, task, fixture("error_not_found.json"), status=404)
    assert snap.status is Status.EXPIRED and snap.done
    assert snap.error and "404" in snap.error and "could not be found" in snap.error
    assert recent(snap.finished_at) and snap.params == task.params


@pytest.mark.parametrize(
    ("status", "body", "exc"),
    [
        (401, oxen_error("unauthenticated", "bad key"), AuthError),
        (403, oxen_error("unauthenticated", "bad key"), AuthError),
        (500, oxen_error("unknown_error", "boom"), ServerError),
        (502, "<html>Bad gateway</html>", ServerError),
        (400, oxen_error("invalid_params", "bad id"), ProviderError),
    ],
)
def test_poll_errors_raise(provider: OxenProvider, status: int, body: Any, exc: type) -> None:
    if isinstance(body, str):
        response = Response(status, {"content-type": "text/html"}, body.encode())
    else:
        response = Response.from_json(status, body)
    with pytest.raises(exc) as info:
        provider.parse_poll(submitted(provider), response)
    assert info.value.task_id == GEN_ID


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>login</html>"),
        Response(200, {"content-type": "application/json"}, b'{"generation_id": "bb8f'),
        Response.from_json(200, {"status": "error"}),
        Response.from_json(200, {"result_url": "https://hub.oxen.ai/x.png"}),
        Response.from_json(200, {"generation_id": "someone-else", "status": "succeeded"}),
    ],
)
def test_poll_malformed(provider: OxenProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse) as info:
        provider.parse_poll(submitted(provider), response)
    assert info.value.task_id == GEN_ID


# ----------------------------------------------------------------------------------- cancel
def test_cancel_request(provider: OxenProvider) -> None:
    request = provider.build_cancel(submitted(provider))
    assert request.method == "DELETE"
    assert request.url == f"https://hub.oxen.ai/api/ai/queue/{GEN_ID}"
    assert request.headers == {"Authorization": "Bearer test-key"}


def test_cancel_success(provider: OxenProvider) -> None:
    task = submitted(provider)
    snap = provider.parse_cancel(task, Response.from_json(200, fixture("cancel_success.json")))
    assert snap.status is Status.CANCELLED and snap.provider_status == "cancelled"
    assert recent(snap.finished_at) and snap.error is None and snap.params == task.params


def test_cancel_leaves_a_terminal_task_as_it_was(provider: OxenProvider) -> None:
    task = submitted(provider, task_id=DOC_ID)
    done = poll(provider, task, fixture("poll_succeeded.json"))
    for response in (
        Response.from_json(200, fixture("cancel_success.json")),
        Response.from_json(404, fixture("error_not_found.json")),  # the April docs' answer
    ):
        assert provider.parse_cancel(done, response) == done


def test_cancel_404_means_expired(provider: OxenProvider) -> None:
    task = submitted(provider)
    snap = provider.parse_cancel(task, Response.from_json(404, fixture("error_not_found.json")))
    assert snap.status is Status.EXPIRED and snap.error and "404" in snap.error


@pytest.mark.parametrize(
    ("status", "exc"), [(401, AuthError), (429, RateLimited), (500, ServerError)]
)
def test_cancel_errors_raise(provider: OxenProvider, status: int, exc: type) -> None:
    response = Response.from_json(status, oxen_error("unknown_error", "nope"))
    with pytest.raises(exc):
        provider.parse_cancel(submitted(provider), response)


# ----------------------------------------------------------------------------------- list
def test_list_request(provider: OxenProvider) -> None:
    request = provider.build_list()
    assert request.method == "GET" and request.url == "https://hub.oxen.ai/api/ai/queue"
    assert request.headers == {"Authorization": "Bearer test-key"} and request.params is None
    filters = {
        "namespace": "ox",
        "model": KLING,
        "status": "succeeded",
        "media_type": "video",
        "repo": "r",
        "folder": "out/",
    }
    assert provider.build_list(**filters).params == filters
    assert provider.build_list(status="running").params == {"status": "processing"}


@pytest.mark.parametrize(
    ("filters", "match"),
    [({"page": "2"}, "page"), ({"status": "expired"}, "expired"), ({"status": "done"}, "done")],
)
def test_list_filters_are_checked(
    provider: OxenProvider, filters: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidParams, match=match):
        provider.build_list(**filters)


def test_parse_list(provider: OxenProvider) -> None:
    tasks = provider.parse_list(Response.from_json(200, fixture("list.json")))
    assert [(t.id, t.model, t.status) for t in tasks] == [
        (DOC_ID, "kling-video-o3-pro-reference-to-video", Status.RUNNING),
        (GEN_ID, KLEIN, Status.QUEUED),
    ]
    video, image = tasks
    assert video.params == {
        "prompt": "An astronaut walking on Mars",
        "aspect_ratio": "16:9",
        "duration": 10,
    }
    assert video.created_at == utc(1775091431) and video.started_at == utc(1775091432)
    assert image.params == {"prompt": "Abstract geometric pattern in blue and gold"}
    assert image.started_at is None and image.provider_data == {"media_type": "image"}
    assert all(t.provider == "oxen" for t in tasks)


def test_parse_list_april_shape_and_junk(provider: OxenProvider) -> None:
    body = fixture("list_april.json")
    body["generations"] += [{"prompt": "no id"}, "junk"]
    tasks = provider.parse_list(Response.from_json(200, body))
    assert [(t.id, t.model, t.status) for t in tasks] == [
        (DOC_ID, "kling-video-o3-pro-reference-to-video", Status.RUNNING),
        (GEN_ID, KLEIN, Status.RUNNING),
    ]
    assert provider.parse_list(Response.from_json(200, {"count": 0, "generations": []})) == []


def test_parse_list_errors(provider: OxenProvider) -> None:
    with pytest.raises(AuthError):
        provider.parse_list(Response.from_json(401, oxen_error("unauthenticated", "no")))
    with pytest.raises(MalformedResponse):
        provider.parse_list(Response.from_json(200, {"count": 2}))
    with pytest.raises(MalformedResponse):
        provider.parse_list(Response(200, {}, b"<html></html>"))


# ----------------------------------------------------------------------------------- events
def test_events_request(provider: OxenProvider) -> None:
    request = provider.build_events()
    assert request.method == "GET" and request.url == "https://hub.oxen.ai/api/events"
    assert request.headers == {"Authorization": "Bearer test-key", "Accept": "text/event-stream"}
    local = OxenProvider(api_key="test-key", base_url="http://127.0.0.1:8104")
    assert local.build_events().url == "http://127.0.0.1:8104/api/events"


def test_parse_documented_events(provider: OxenProvider) -> None:
    ok = provider.parse_event(*sse("event_succeeded.sse"))
    assert ok is not None and ok.task_id == EVENT_ID
    assert ok.payload["status"] == "succeeded" and ok.payload["url"].startswith("https://")
    failed = provider.parse_event(*sse("event_failed.sse"))
    assert failed is not None and failed.task_id == EVENT_ID
    assert failed.payload == {
        "generation_id": EVENT_ID,
        "status": "failed",
        "media_type": "video",
        "error": "Insufficient credits",
    }


@pytest.mark.parametrize(
    ("event", "data"),
    [
        (
            "deployment_updated",
            '{"generation_id": "g", "status": "succeeded", "url": "https://a/b"}',
        ),
        ("message", '{"generation_id": "g", "status": "failed"}'),
        ("media_generation_completed", '{"generation_id": "g", "status": "succ'),
        ("media_generation_completed", ""),
        ("media_generation_completed", "[1, 2]"),
        ("media_generation_completed", '"just text"'),
        ("media_generation_completed", '{"status": "failed", "error": "x"}'),
        ("media_generation_completed", '{"generation_id": "g", "status": "cancelled"}'),
        ("media_generation_completed", '{"generation_id": "g", "status": "succeeded"}'),
        (
            "media_generation_completed",
            '{"generation_id": "g", "status": "succeeded", "url": "file:///etc/passwd"}',
        ),
    ],
)
def test_events_that_cannot_complete_a_task_are_none(
    provider: OxenProvider, event: str, data: str
) -> None:
    assert provider.parse_event(event, data) is None


def test_apply_succeeded_event(provider: OxenProvider) -> None:
    task = submitted(provider, task_id=EVENT_ID)
    event = provider.parse_event(*sse("event_succeeded.sse"))
    assert event is not None
    snap = provider.apply_event(task, event)
    assert snap.status is Status.SUCCEEDED and snap.provider_status == "succeeded"
    assert [(o.url, o.kind) for o in snap.outputs] == [
        ("https://hub.oxen.ai/api/repos/...", "video")
    ]
    assert recent(snap.finished_at) and snap.error is None and snap.params == task.params
    # A later poll (the fallback) keeps the pushed output when it has none of its own.
    polled = poll(provider, snap, {"generation_id": EVENT_ID, "status": "succeeded"})
    assert polled.outputs == snap.outputs and polled.finished_at == snap.finished_at


def test_apply_event_kind_from_media_type(provider: OxenProvider) -> None:
    task = submitted(provider, model="some-new-model")
    url = "https://hub.oxen.ai/api/repos/u/r/file/main/out"
    pushed = Event(
        GEN_ID, {"generation_id": GEN_ID, "status": "succeeded", "media_type": "image", "url": url}
    )
    assert [o.kind for o in provider.apply_event(task, pushed).outputs] == ["image"]


def test_apply_failed_event(provider: OxenProvider) -> None:
    task = submitted(provider, task_id=EVENT_ID)
    event = provider.parse_event(*sse("event_failed.sse"))
    assert event is not None
    snap = provider.apply_event(task, event)
    assert snap.status is Status.FAILED and snap.error == "Insufficient credits"
    assert snap.outputs == () and recent(snap.finished_at)
    bare = provider.apply_event(
        task, Event(EVENT_ID, {"generation_id": EVENT_ID, "status": "failed"})
    )
    assert bare.status is Status.FAILED and bare.error and "no reason" in bare.error


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "cancelled"},
        {"status": "exploded"},
        {},
        {"status": "succeeded"},  # no URL: nothing to show, the poll will tell
        {"status": "succeeded", "url": "ftp://x/y.png"},
    ],
)
def test_apply_event_ignores_what_it_cannot_use(provider: OxenProvider, payload: Any) -> None:
    task = submitted(provider)
    assert provider.apply_event(task, Event(GEN_ID, {"generation_id": GEN_ID, **payload})) == task


def test_apply_event_leaves_terminal_and_other_tasks_alone(provider: OxenProvider) -> None:
    task = submitted(provider, task_id=EVENT_ID)
    failed_event = provider.parse_event(*sse("event_failed.sse"))
    ok_event = provider.parse_event(*sse("event_succeeded.sse"))
    assert failed_event is not None and ok_event is not None
    done = provider.apply_event(task, ok_event)
    assert provider.apply_event(done, failed_event) == done
    other = submitted(provider)  # GEN_ID, not the event's id
    assert provider.apply_event(other, ok_event) == other
    cancelled = provider.parse_cancel(task, Response.from_json(200, fixture("cancel_success.json")))
    assert provider.apply_event(cancelled, ok_event) == cancelled
