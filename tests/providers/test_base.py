"""The shared adapter machinery: validation before sending, error mapping, helpers."""

from datetime import datetime, timedelta, timezone

import pytest

from genwidgets import (
    AuthError,
    InvalidParams,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    Status,
    Task,
    UnknownModel,
    UnknownProvider,
)
from genwidgets.providers import ModelInfo, Param, Provider, Response, parse_model_id
from genwidgets.providers._fields import guess_kind, parse_time, retry_after


class Demo(Provider):
    name = "demo"
    env_var = "DEMO_API_KEY"
    default_base_url = "https://api.example.com"
    models = {
        "pic": ModelInfo(
            "pic",
            "image",
            params={
                "steps": Param(int, minimum=1, maximum=50),
                "ratio": Param(str, choices=("1:1", "16:9")),
                "scale": Param(float),
                "hd": Param(bool),
            },
        ),
        "strict": ModelInfo("strict", "image", params={"steps": Param(int)}, closed=True),
    }


def test_parse_model_id_splits_once() -> None:
    assert parse_model_id("netmind:Qwen/Qwen-Image") == ("netmind", "Qwen/Qwen-Image")
    assert parse_model_id("rixapi:replicate/owner/model:abc") == (
        "rixapi",
        "replicate/owner/model:abc",
    )
    with pytest.raises(UnknownProvider, match="Did you mean 'segmind'"):
        parse_model_id("segmnd:seedream-4.5")
    with pytest.raises(UnknownProvider, match="model name is missing"):
        parse_model_id("local")


def test_validate_checks_types_ranges_choices_and_coerces_text() -> None:
    demo = Demo(api_key="test-key")
    clean = demo.validate("pic", {"prompt": "a cat", "steps": "20", "scale": 2, "hd": "true"})
    assert clean == {"prompt": "a cat", "steps": 20, "scale": 2.0, "hd": True}
    with pytest.raises(InvalidParams, match="steps.*<= 50"):
        demo.validate("pic", {"prompt": "a cat", "steps": 99})
    with pytest.raises(InvalidParams, match="ratio.*one of"):
        demo.validate("pic", {"prompt": "a cat", "ratio": "4:3"})
    with pytest.raises(InvalidParams, match="seed"):
        demo.validate("pic", {"prompt": "a cat", "seed": -1})
    with pytest.raises(InvalidParams, match="non-empty prompt"):
        demo.validate("pic", {"prompt": "   "})
    with pytest.raises(InvalidParams, match="JSON-serializable"):
        demo.validate("pic", {"prompt": "a cat", "extra": object()})
    with pytest.raises(InvalidParams, match="Did you mean 'steps'"):
        demo.validate("strict", {"prompt": "a cat", "stepz": 3})


def test_unknown_and_malformed_model_names() -> None:
    demo = Demo(api_key="test-key")
    demo.validate("not-in-catalogue", {"prompt": "x"})  # open catalogue: passed through
    with pytest.raises(UnknownModel):
        demo.validate("two words", {"prompt": "x"})

    class Closed(Demo):
        open_catalogue = False

    with pytest.raises(UnknownModel, match="Did you mean 'pic'.*demo:pic"):
        Closed(api_key="k").validate("pix", {"prompt": "x"})


def test_error_mapping() -> None:
    demo = Demo(api_key="test-key")
    body = {"error": {"message": "nope"}}
    assert isinstance(demo.error_for(Response.from_json(401, body)), AuthError)
    assert isinstance(demo.error_for(Response.from_json(402, body)), QuotaError)
    assert isinstance(demo.error_for(Response.from_json(503, body)), ServerError)
    limited = demo.error_for(Response.from_json(429, body, {"Retry-After": "12"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 12.0
    other = demo.error_for(Response(400, {}, b"<html>bad</html>"))
    assert type(other) is ProviderError and "Bad Request" in str(other)


def test_retry_after_reads_seconds_dates_and_segmind_reset_header() -> None:
    assert retry_after(Response(429, {"retry-after": "3"})) == 3.0
    soon = datetime.now(timezone.utc) + timedelta(seconds=20)
    reset = retry_after(Response(429, {"x-rate-limit-reset-at-utc": soon.isoformat()}))
    assert reset is not None and 15 < reset <= 20
    assert retry_after(Response(429, {})) is None


def test_key_never_in_repr() -> None:
    assert "test-key" not in repr(Demo(api_key="test-key"))


def test_expired_and_helpers() -> None:
    demo = Demo(api_key="k")
    task = Task(id="t1", provider="demo", model="pic", status=Status.RUNNING)
    gone = demo.expired(task, Response.from_json(404, {"error": "Request t1 not found"}))
    assert (
        gone.status is Status.EXPIRED and gone.error == "Request t1 not found" and gone.finished_at
    )
    assert guess_kind("https://x/y/out.MP4?sig=1") == "video"
    assert guess_kind("https://x/y/z", "audio/wav") == "audio"
    assert guess_kind("https://x/y/z") is None
    assert parse_time(1773318919) == datetime(2026, 3, 12, 12, 35, 19, tzinfo=timezone.utc)
    assert parse_time("2025-09-18 09:14:20") == datetime(
        2025, 9, 18, 9, 14, 20, tzinfo=timezone.utc
    )
    assert parse_time("garbage") is None and parse_time(None) is None
