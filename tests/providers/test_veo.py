"""Veo (Gemini API) adapter, dict in, Task out (no network).

Shapes from /work/shared/providers/beyond/veo.md, copied into fixtures/veo/ (its README says which
bodies are verbatim and which are reconstructed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genwidgets import (
    AuthError,
    InvalidParams,
    MalformedResponse,
    NotSupported,
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
)
from genwidgets.providers import Response
from genwidgets.providers._fields import same_origin
from genwidgets.providers.veo import VeoProvider
from tests.conftest import doc_fixtures

MODEL = "veo-3.0-fast-generate-001"
OPERATION = "models/veo-3.0-fast-generate-001/operations/321kvdcepmcg"
FILE_URI = "https://generativelanguage.googleapis.com/v1beta/files/qu4d28uipuqh:download?alt=media"
fixture = doc_fixtures("veo")


@pytest.fixture
def provider() -> VeoProvider:
    return VeoProvider(api_key="AIza-test")


def submitted(provider: VeoProvider) -> Task:
    params = provider.validate(MODEL, {"prompt": "a lion in the savannah"})
    return provider.parse_submit(MODEL, params, Response.from_json(200, fixture("submit.json")))


def polled(provider: VeoProvider, name: str) -> Task:
    return provider.parse_poll(submitted(provider), Response.from_json(200, fixture(name)))


def test_submit_puts_the_prompt_in_instances_and_the_rest_in_parameters(
    provider: VeoProvider,
) -> None:
    image = {"bytesBase64Encoded": "aGk=", "mimeType": "image/png"}
    params = provider.validate(
        MODEL,
        {"prompt": "a lion", "durationSeconds": "8", "aspectRatio": "9:16", "image": image,
         "negativePrompt": "cartoon", "seed": 4},
    )
    request = provider.build_submit(MODEL, params)
    assert request.method == "POST"
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/"
        "veo-3.0-fast-generate-001:predictLongRunning"
    )
    assert request.headers == {"x-goog-api-key": "AIza-test"}  # never ?key= in a URL
    assert request.json == {
        "instances": [{"prompt": "a lion", "image": image}],
        "parameters": {"durationSeconds": 8, "aspectRatio": "9:16", "negativePrompt": "cartoon",
                       "seed": 4},
    }


def test_bad_params_are_refused_before_sending(provider: VeoProvider) -> None:
    with pytest.raises(InvalidParams, match="durationSeconds"):
        provider.validate(MODEL, {"prompt": "x", "durationSeconds": 5})  # Veo 3: 4, 6 or 8
    provider.validate("veo-2.0-generate-001", {"prompt": "x", "durationSeconds": 5})
    with pytest.raises(InvalidParams, match="aspectRatio"):
        provider.validate(MODEL, {"prompt": "x", "aspectRatio": "1:1"})
    with pytest.raises(InvalidParams, match="prompt"):
        provider.validate(MODEL, {"prompt": " "})


def test_the_operation_name_is_the_task_and_the_poll_path(provider: VeoProvider) -> None:
    task = submitted(provider)
    assert task.id == OPERATION and task.status is Status.QUEUED
    poll = provider.build_poll(task)
    assert poll.url == f"https://generativelanguage.googleapis.com/v1beta/{OPERATION}"
    assert poll.headers == {"x-goog-api-key": "AIza-test"}


def test_an_answer_without_an_operation_name_is_malformed(provider: VeoProvider) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse_submit(MODEL, {"prompt": "x"}, Response.from_json(200, {"name": "../x"}))
    with pytest.raises(MalformedResponse):
        provider.build_poll(submitted(provider).evolve(id="../../v1beta/files"))


def test_not_done_is_running(provider: VeoProvider) -> None:
    task = polled(provider, "poll_running.json")
    assert task.status is Status.RUNNING and not task.done
    assert task.started_at is None  # queued and running look the same: no start invented
    false = {**fixture("poll_running.json"), "done": False, "metadata": {}}
    assert provider.parse_poll(submitted(provider), Response.from_json(200, false)).status is (
        Status.RUNNING
    )


def test_done_with_samples_succeeded_with_the_file_uri(provider: VeoProvider) -> None:
    task = polled(provider, "poll_done.json")
    assert task.status is Status.SUCCEEDED and task.finished_at is not None
    assert [(o.kind, o.url) for o in task.outputs] == [("video", FILE_URI)]
    sdk = polled(provider, "poll_sdk_shape.json")
    assert sdk.status is Status.SUCCEEDED and "files/abc" in (sdk.outputs[0].url or "")


def test_done_with_an_error_failed_with_its_message(provider: VeoProvider) -> None:
    task = polled(provider, "poll_failed.json")
    assert task.status is Status.FAILED
    assert task.error and "internal error" in task.error and "code 13" in task.error


def test_done_with_no_sample_is_the_safety_filter_and_a_failure(provider: VeoProvider) -> None:
    task = polled(provider, "poll_filtered.json")
    assert task.status is Status.FAILED and not task.outputs
    assert task.error and "safety filter" in task.error and "harmful content" in task.error
    odd = fixture("poll_filtered.json")
    odd["response"]["generateVideoResponse"]["raiMediaFilteredReasons"] = "one reason AIza-test"
    task = provider.parse_poll(submitted(provider), Response.from_json(200, odd))
    assert task.error and task.error.endswith("one reason ***")  # a string; the key scrubbed


def test_done_with_inline_bytes_only_or_nothing_is_a_failure_that_says_so(
    provider: VeoProvider,
) -> None:
    inline = fixture("poll_done.json")
    inline["response"]["generateVideoResponse"]["generatedSamples"] = [
        {"video": {"encodedVideo": "AAAA", "encoding": "video/mp4"}}
    ]
    task = provider.parse_poll(submitted(provider), Response.from_json(200, inline))
    assert task.status is Status.FAILED and task.error and "inline" in task.error
    bare = {"name": OPERATION, "done": True}
    assert provider.parse_poll(submitted(provider), Response.from_json(200, bare)).status is (
        Status.FAILED
    )
    hostile = fixture("poll_done.json")
    hostile["response"]["generateVideoResponse"]["generatedSamples"] = [
        {"video": {"uri": "file:///etc/passwd"}}
    ]
    assert provider.parse_poll(submitted(provider), Response.from_json(200, hostile)).status is (
        Status.FAILED
    )


def test_a_404_for_our_operation_is_expired(provider: VeoProvider) -> None:
    gone = Response.from_json(404, fixture("error_not_found.json"))
    task = provider.parse_poll(submitted(provider), gone)
    assert task.status is Status.EXPIRED and task.error and "2 days" in task.error


def test_the_key_goes_to_the_files_api_and_nowhere_else(provider: VeoProvider) -> None:
    assert provider.authenticated_downloads and same_origin(FILE_URI, provider.base_url)
    for elsewhere in (
        "https://storage.googleapis.com/attacker-bucket/video.mp4",  # a shared parent domain
        "https://video-downloads.googleusercontent.com/abc",  # where a download redirects
        "http://generativelanguage.googleapis.com/v1beta/files/x:download",
    ):
        assert not same_origin(elsewhere, provider.base_url), elsewhere


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("error_bad_key.json", AuthError),  # HTTP 400, yet the key
        ("error_permission_denied.json", AuthError),
        ("error_failed_precondition.json", QuotaError),
        ("error_not_found.json", UnknownModel),
        ("error_invalid_argument.json", InvalidParams),
        ("error_resource_exhausted.json", RateLimited),
        ("error_unavailable.json", ServerError),
    ],
)
def test_submit_errors(provider: VeoProvider, name: str, error: type[Exception]) -> None:
    body = fixture(name)
    with pytest.raises(error):
        answer = Response.from_json(body["error"]["code"], body)
        provider.parse_submit(MODEL, {"prompt": "x"}, answer)


def test_a_bad_key_on_a_poll_is_an_auth_error_too(provider: VeoProvider) -> None:
    with pytest.raises(AuthError):
        answer = Response.from_json(400, fixture("error_bad_key.json"))
        provider.parse_poll(submitted(provider), answer)


def test_no_cancel_and_keys_from_either_variable() -> None:
    provider = VeoProvider(api_key="k")
    assert not provider.can_cancel
    with pytest.raises(NotSupported):
        provider.build_cancel(submitted(provider))
    # The SDK's order: GOOGLE_API_KEY, then GEMINI_API_KEY.
    assert (VeoProvider.env_var, *VeoProvider.env_vars) == ("GOOGLE_API_KEY", "GEMINI_API_KEY")


def test_adapter_is_small() -> None:
    """Issue 12: at most 150 lines of code, protocol docstrings and catalogue aside."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("lines", root / "scripts" / "adapter_lines.py")
    assert spec is not None and spec.loader is not None
    lines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lines)
    assert lines.count(root / "genwidgets" / "providers" / "veo.py")[1] <= 150
