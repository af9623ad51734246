"""NetMind adapter, dict in, Task out (no network).

Shapes come from seed 003 (/work/shared/providers/003_*.txt) and FINDINGS.md section 4, copied
into fixtures/netmind/ (its README says which bodies are verbatim and which are reconstructed).
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
    NotSupported,
    ProviderError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets.providers import Response, get_provider_class
from genwidgets.providers.netmind import NetMindProvider
from tests.conftest import doc_fixtures

GID = "6347623b2fce4998b0e842f7e935ccb0"
FILE_URL = "https://netmind-files-prod.s3.amazonaws.com/...."
fixture = doc_fixtures("netmind")


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


@pytest.fixture
def provider() -> NetMindProvider:
    return NetMindProvider(api_key="test-key")


def submitted(provider: NetMindProvider, model: str = "Qwen/Qwen-Image") -> Task:
    clean = provider.validate(model, {"prompt": "a cup of coffee"})
    return provider.parse_submit(model, clean, Response.from_json(200, fixture("submit.json")))


def record(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture("poll_completed.json"))
    body.update(changes)
    return body


def poll(provider: NetMindProvider, body: Any, code: int = 200, task: Task | None = None) -> Task:
    return provider.parse_poll(task or submitted(provider), Response.from_json(code, body))


# ----------------------------------------------------------------------------------- class facts
def test_registered_and_described() -> None:
    assert get_provider_class("netmind") is NetMindProvider
    assert NetMindProvider.name == "netmind"
    assert NetMindProvider.env_var == "NETMIND_API_KEY"
    assert NetMindProvider.default_base_url == "https://api.netmind.ai"
    assert NetMindProvider.open_catalogue
    assert NetMindProvider.can_list and NetMindProvider.can_delete
    assert not NetMindProvider.can_cancel and not NetMindProvider.has_events
    first, cap = NetMindProvider.poll_interval
    assert 1.5 <= first <= 3.0 and 8.0 <= cap <= 12.0
    assert NetMindProvider.models["Qwen/Qwen-Image"].kind == "image"
    assert NetMindProvider.models["hkchengrex/MMAudio"].kind == "audio"
    assert "cancel" in (NetMindProvider.__doc__ or "").lower()  # why there is none


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(NetMindProvider(api_key="test-key"))


def test_cancel_is_not_offered(provider: NetMindProvider) -> None:
    with pytest.raises(NotSupported):
        provider.build_cancel(submitted(provider))


# ----------------------------------------------------------------------------------- submit
@pytest.mark.parametrize("name", ["submit_request_image.json", "submit_request_audio.json"])
def test_submit_request_matches_the_documented_body(provider: NetMindProvider, name: str) -> None:
    doc = fixture(name)
    clean = provider.validate(doc["model"], doc["config"])
    request = provider.build_submit(doc["model"], clean)
    assert request.method == "POST"
    assert request.url == "https://api.netmind.ai/v1/generation"
    assert dict(request.headers) == {
        "Authorization": "Bearer test-key",
        "Content-Type": "application/json",
    }
    assert request.json == doc


def test_seed_and_unknown_params_go_inside_config() -> None:
    provider = NetMindProvider(api_key="test-key", base_url="http://127.0.0.1:8103/")
    clean = provider.validate(
        "acme/text-to-video", {"prompt": "a fox", "seed": "7", "fps": 24, "style": None}
    )
    request = provider.build_submit("acme/text-to-video", clean)
    assert request.url == "http://127.0.0.1:8103/v1/generation"
    assert request.json == {
        "model": "acme/text-to-video",
        "config": {"prompt": "a fox", "seed": 7, "fps": 24},
    }


def test_no_key_no_auth_header() -> None:
    request = NetMindProvider().build_submit("Qwen/Qwen-Image", {"prompt": "x"})
    assert "Authorization" not in request.headers


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("Qwen/Qwen-Image", {"prompt": ""}),
        ("Qwen/Qwen-Image", {"prompt": "x", "seed": "abc"}),
        ("Qwen/Qwen-Image", {"prompt": "x", "image_size": "huge"}),
        ("Qwen/Qwen-Image", {"prompt": "x", "output_format": "gif"}),
        ("Qwen/Qwen-Image", {"prompt": "x", "num_inference_steps": 0}),
        ("Qwen/Qwen-Image", {"prompt": "x", "num_inference_steps": "many"}),
        ("Qwen/Qwen-Image", {"prompt": "x", "guidance_scale": -1}),
        ("Qwen/Qwen-Image", {"prompt": "x", "num_images": 0}),
        ("Qwen/Qwen-Image", {"prompt": "x", "enable_safety_checker": "maybe"}),
        ("Qwen/Qwen-Image", {"prompt": "x", "acceleration": "ludicrous"}),
        ("hkchengrex/MMAudio", {"prompt": "x", "duration": -5}),
        ("hkchengrex/MMAudio", {"prompt": "x", "duration": "long"}),
        ("no such model", {"prompt": "x"}),
    ],
)
def test_bad_params_fail_before_any_request(
    provider: NetMindProvider, model: str, params: dict[str, Any]
) -> None:
    with pytest.raises((InvalidParams, UnknownModel)):
        provider.validate(model, params)


def test_text_from_the_magic_is_coerced(provider: NetMindProvider) -> None:
    clean = provider.validate(
        "Qwen/Qwen-Image",
        {
            "prompt": "x",
            "num_inference_steps": "30",
            "guidance_scale": 3,
            "enable_safety_checker": "no",
        },
    )
    assert clean["num_inference_steps"] == 30
    assert clean["guidance_scale"] == 3.0 and isinstance(clean["guidance_scale"], float)
    assert clean["enable_safety_checker"] is False


def test_parse_submit(provider: NetMindProvider) -> None:
    task = submitted(provider)
    assert task.id == GID and task.provider == "netmind" and task.model == "Qwen/Qwen-Image"
    assert task.status is Status.QUEUED and task.provider_status == "pending"
    # "2025-09-18 09:14:20" has no zone; the adapter assumes UTC.
    assert task.created_at == utc(2025, 9, 18, 9, 14, 20)
    assert task.params == {"prompt": "a cup of coffee"}
    assert task.outputs == () and task.finished_at is None
    json.dumps(task.provider_data)
    assert "test-key" not in json.dumps(task.model_dump(mode="json"))
    assert "...." not in json.dumps(task.model_dump(mode="json"))  # user_id is not kept


@pytest.mark.parametrize("body", [{"status": "pending"}, {"id": ""}, ["x"], "pending"])
def test_parse_submit_without_an_id_is_malformed(provider: NetMindProvider, body: Any) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit("Qwen/Qwen-Image", {"prompt": "x"}, Response.from_json(200, body))


def test_parse_submit_html_is_malformed(provider: NetMindProvider) -> None:
    response = Response(200, {"content-type": "text/html"}, b"<html>hi</html>")
    with pytest.raises(MalformedResponse, match="Expected JSON"):
        provider.parse_submit("Qwen/Qwen-Image", {"prompt": "x"}, response)


# ----------------------------------------------------------------------------------- poll
def test_poll_request_quotes_the_id() -> None:
    provider = NetMindProvider(api_key="test-key", base_url="http://127.0.0.1:8103")
    request = provider.build_poll(
        Task(id="a/b?c", provider="netmind", model="m", status=Status.QUEUED)
    )
    assert (request.method, request.url) == ("GET", "http://127.0.0.1:8103/v1/generation/a%2Fb%3Fc")
    assert dict(request.headers) == {"Authorization": "Bearer test-key"}


def test_pending_is_queued(provider: NetMindProvider) -> None:
    polled = poll(provider, fixture("submit.json"))
    assert polled.status is Status.QUEUED and polled.started_at is None


@pytest.mark.parametrize("raw", ["initializing", "processing", "running", "INITIALIZING"])
def test_running_statuses(provider: NetMindProvider, raw: str) -> None:
    body = record(status=raw, updated_at="2025-09-18 09:15:02", result={})
    polled = poll(provider, body)
    assert polled.status is Status.RUNNING and polled.provider_status == raw
    assert polled.started_at == utc(2025, 9, 18, 9, 15, 2)  # when the record turned running
    later = poll(provider, record(status=raw, updated_at="2025-09-18 09:20:00"), task=polled)
    assert later.started_at == polled.started_at


def test_completed(provider: NetMindProvider) -> None:
    task = poll(provider, fixture("poll_completed.json"))
    assert task.status is Status.SUCCEEDED and task.provider_status == "completed"
    assert task.created_at == utc(2025, 9, 18, 9, 14, 21)
    assert task.finished_at == utc(2025, 9, 18, 9, 27, 32)
    (out,) = task.outputs
    # The URL has no extension: the kind comes from `file_type`.
    assert (out.kind, out.url, out.path) == ("image", FILE_URL, None)
    assert task.params == {"prompt": "a cup of coffee"}


def test_file_type_decides_the_kind_over_the_catalogue(provider: NetMindProvider) -> None:
    body = record()
    body["result"]["data"][0]["file_type"] = "video"
    assert poll(provider, body).outputs[0].kind == "video"  # the model is an image model


@pytest.mark.parametrize(
    ("file_type", "url", "kind", "ctype"),
    [
        ("audio/wav", FILE_URL, "audio", "audio/wav"),
        ("mp4", FILE_URL, "video", None),
        ("", "https://netmind-files-prod.s3.amazonaws.com/out.wav", "audio", None),
        (None, FILE_URL, "image", None),  # nothing said: the model's catalogue kind
        ("blob", FILE_URL, "image", None),
    ],
)
def test_file_type_variants(
    provider: NetMindProvider, file_type: Any, url: str, kind: str, ctype: str | None
) -> None:
    body = record()
    body["result"]["data"][0].update(file_type=file_type, url=url)
    (out,) = poll(provider, body).outputs
    assert (out.kind, out.content_type) == (kind, ctype)


def test_hostile_file_names_are_never_used(provider: NetMindProvider) -> None:
    body = record()
    body["result"]["data"][0]["file_name"] = "../../x.sh"
    task = poll(provider, body)
    assert task.outputs[0].path is None
    assert "x.sh" not in json.dumps(task.model_dump(mode="json"))


def test_only_http_urls_become_outputs(provider: NetMindProvider) -> None:
    body = record()
    body["result"]["data"] = [
        {"url": "javascript:alert(1)", "file_type": "image"},
        {"url": "file:///etc/passwd", "file_type": "image"},
        {"url": None},
        "https://not-an-object.example/x.png",
        {"url": "https://netmind-files-prod.s3.amazonaws.com/b.png", "file_type": "image"},
    ]
    assert [o.url for o in poll(provider, body).outputs] == [
        "https://netmind-files-prod.s3.amazonaws.com/b.png"
    ]


def test_failed_takes_its_reason_from_the_logs(provider: NetMindProvider) -> None:
    task = poll(provider, fixture("poll_failed.json"))
    assert task.status is Status.FAILED and task.provider_status == "failed"
    assert task.error == "CUDA out of memory while generating"
    assert task.logs == ("Loading model", "CUDA out of memory while generating")
    assert task.finished_at == utc(2025, 9, 18, 10, 0, 42) and task.outputs == ()


def test_failed_with_an_error_field_and_no_logs(provider: NetMindProvider) -> None:
    task = poll(provider, record(status="failed", result={}, error="Inference error: test-key"))
    assert task.error == "Inference error: ***"  # an echoed key is scrubbed
    bare = poll(provider, record(status="failed", result={}))
    assert bare.status is Status.FAILED and bare.error and "failed" in bare.error


def test_logs_while_running_are_kept(provider: NetMindProvider) -> None:
    body = record(status="initializing", result={}, logs=[{"text": "step 1"}, "step 2", {"x": 1}])
    assert poll(provider, body).logs == ("step 1", "step 2")


def test_undocumented_status_is_kept_and_treated_as_running(provider: NetMindProvider) -> None:
    task = poll(provider, record(status="warming_up", result={}))
    assert task.status is Status.RUNNING and task.provider_status == "warming_up"


def test_cancelled_is_terminal(provider: NetMindProvider) -> None:
    assert poll(provider, record(status="cancelled", result={})).status is Status.CANCELLED


def test_deleted_record_is_expired(provider: NetMindProvider) -> None:
    body = record(is_deleted=True, deleted_at="2025-09-18 10:00:00")
    task = poll(provider, body)
    assert task.status is Status.EXPIRED and task.outputs == ()
    assert task.finished_at == utc(2025, 9, 18, 10, 0, 0)
    assert task.error and "deleted" in task.error


def test_404_on_poll_is_expired(provider: NetMindProvider) -> None:
    task = poll(provider, {"detail": f"Generation {GID} not found"}, code=404)
    assert task.status is Status.EXPIRED and task.finished_at is not None
    assert task.error and "not found" in task.error


def test_older_shape_is_read(provider: NetMindProvider) -> None:
    task = poll(provider, fixture("poll_older_shape.json"), task=submitted(provider, "m/x"))
    assert task.status is Status.SUCCEEDED
    (out,) = task.outputs
    assert out.url == "https://netmind-files-prod.s3.amazonaws.com/results/0f2e4c.wav"
    assert out.kind == "audio"
    assert task.created_at == utc(2025, 1, 10, 8, 0, 0)


@pytest.mark.parametrize(
    "response",
    [
        Response(200, {"content-type": "text/html"}, b"<html>maintenance</html>"),
        Response(200, {}, b""),
        Response.from_json(200, {"id": GID}),
        Response.from_json(200, ["completed"]),
    ],
)
def test_malformed_poll_bodies(provider: NetMindProvider, response: Response) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_poll(submitted(provider), response)


# ----------------------------------------------------------------------------------- list/delete
def test_list_request(provider: NetMindProvider) -> None:
    request = provider.build_list()
    assert (request.method, request.url, request.params) == (
        "GET",
        "https://api.netmind.ai/v1/generation",
        None,
    )
    assert dict(request.headers) == {"Authorization": "Bearer test-key"}
    assert provider.build_list(page="2").params == {"page": "2"}


def test_parse_list(provider: NetMindProvider) -> None:
    body = fixture("list.json")
    body["generation_list"].append(
        {**fixture("poll_older_shape.json"), "config": {"prompt": "wind", "duration": 10}}
    )
    body["generation_list"].append({"status": "pending"})  # no id: nothing to do with it
    tasks = provider.parse_list(Response.from_json(200, body))
    assert [t.id for t in tasks] == [GID, "0f2e4c6a8b1d3f5e7a9c0b2d4f6e8a1c"]
    first, second = tasks
    assert first.status is Status.SUCCEEDED and first.outputs[0].kind == "image"
    assert first.provider == "netmind" and first.model == "unknown"  # the doc's record names none
    assert second.model == "hkchengrex/MMAudio" and second.outputs[0].kind == "audio"
    assert second.params == {"prompt": "wind", "duration": 10}


@pytest.mark.parametrize("body", [{"items": []}, "x", {"generation_list": {}}])
def test_parse_list_malformed(provider: NetMindProvider, body: Any) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_list(Response.from_json(200, body))


def test_parse_list_auth_error(provider: NetMindProvider) -> None:
    with pytest.raises(AuthError):
        provider.parse_list(Response.from_json(401, {"detail": "Unauthorized"}))


def test_delete(provider: NetMindProvider) -> None:
    task = submitted(provider)
    request = provider.build_delete(task)
    assert (request.method, request.url) == (
        "DELETE",
        f"https://api.netmind.ai/v1/generation/{GID}",
    )
    assert dict(request.headers) == {"Authorization": "Bearer test-key"}
    provider.parse_delete(task, Response.from_json(200, fixture("delete.json")))  # no raise
    provider.parse_delete(task, Response.from_json(404, {"detail": "gone"}))  # already gone
    with pytest.raises(ServerError):
        provider.parse_delete(task, Response.from_json(500, {"detail": "Service is unavailable"}))
    with pytest.raises(AuthError):
        provider.parse_delete(task, Response.from_json(401, {"detail": "Unauthorized"}))


# ----------------------------------------------------------------------------------- errors
def submit_error(
    provider: NetMindProvider, response: Response, model: str = "Qwen/Qwen-Imag"
) -> Any:
    with pytest.raises(Exception) as info:
        provider.parse_submit(model, {"prompt": "x"}, response)
    return info.value


@pytest.mark.parametrize("key", ["detail", "message", "error"])
def test_400_model_not_exists_is_unknown_model(provider: NetMindProvider, key: str) -> None:
    err = submit_error(
        provider, Response.from_json(400, {key: "Model name: Qwen/Qwen-Imag not exists"})
    )
    assert isinstance(err, UnknownModel)
    assert "Model name: Qwen/Qwen-Imag not exists" in str(err)
    assert "Did you mean 'Qwen/Qwen-Image'" in str(err)


def test_400_other_is_a_provider_error(provider: NetMindProvider) -> None:
    err = submit_error(provider, Response.from_json(400, {"detail": "config must be an object"}))
    assert type(err) is ProviderError and err.status_code == 400
    assert "config must be an object" in str(err)


def test_validation_detail_list_is_joined(provider: NetMindProvider) -> None:
    body = {"detail": [{"loc": ["body", "config"], "msg": "field required"}, {"msg": "bad"}]}
    err = submit_error(provider, Response.from_json(422, body))
    assert type(err) is ProviderError and "field required; bad" in str(err)


def test_401_is_an_auth_error_without_the_key(provider: NetMindProvider) -> None:
    err = submit_error(provider, Response.from_json(401, {"detail": "Invalid token test-key"}))
    assert type(err) is AuthError and "test-key" not in str(err)


def test_500_service_unavailable(provider: NetMindProvider) -> None:
    err = submit_error(provider, Response.from_json(500, {"detail": "Service is unavailable"}))
    assert type(err) is ServerError and err.status_code == 500
    assert "Service is unavailable" in str(err) and "premium" in str(err)
    with pytest.raises(ServerError) as info:
        poll(provider, {"detail": "Service is unavailable"}, code=500)
    assert "premium" not in str(info.value)  # a poll of a running job: just an outage


def test_poll_429_and_html_5xx(provider: NetMindProvider) -> None:
    with pytest.raises(RateLimited) as info:
        poll(provider, {"detail": "Too many requests"}, code=429)
    assert info.value.retry_after is None
    response = Response(502, {"content-type": "text/html"}, b"<html>Bad Gateway</html>")
    with pytest.raises(ServerError):
        provider.parse_poll(submitted(provider), response)


def test_current_shape_wins_over_the_older_one(provider: NetMindProvider) -> None:
    body = record(meta_info={"result_download_url": "https://netmind.example/old.wav"})
    assert [o.url for o in poll(provider, body).outputs] == [FILE_URL]


def test_a_gateway_data_wrapper_is_tolerated(provider: NetMindProvider) -> None:
    task = poll(provider, {"data": fixture("poll_completed.json")})
    assert task.status is Status.SUCCEEDED and task.outputs[0].url == FILE_URL
