"""Errors as data: the `ErrorRule` interpreter, row by row, and each adapter's table.

The first half drives `interpret` with hand-made faults (one row, one condition at a time); the
second sends the documented error shapes of each provider through its own `error_for`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from genwidgets import (
    AuthError,
    GenError,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    Task,
    UnknownModel,
)
from genwidgets._models import Status
from genwidgets.providers import Response, get_provider_class
from genwidgets.providers._errors import (
    DEFAULT_RULES,
    ERROR_TEXTS,
    OTHER,
    ErrorRule,
    Fault,
    error_text,
    interpret,
    reason,
)

MONEY = ErrorRule(QuotaError, "{provider} wants money ({status}): {message}", {406}, text="credit")
KIND = ErrorRule(AuthError, "{provider} said {kind}: {message}", kind="^unauthenticated$")
SUBMIT = ErrorRule(UnknownModel, "{provider} said: {message}", {404}, submit=True)
TABLE = (SUBMIT, MONEY, KIND, *DEFAULT_RULES)


def fault(code: int, **kw: Any) -> Fault:
    return Fault(provider="acme", code=code, **kw)


@pytest.mark.parametrize(
    ("given", "expected", "message"),
    [
        # the default rows: what every HTTP API means by its codes
        (fault(429, said="slow down"), RateLimited, "Rate limited by acme: slow down"),
        (fault(402), QuotaError, "acme refused for credits (HTTP 402): Payment Required"),
        (fault(401, said="bad key"), AuthError, "acme refused the key (HTTP 401): bad key"),
        (fault(403), AuthError, "acme refused the key (HTTP 403): Forbidden"),
        (fault(503, said="down"), ServerError, "acme server error (HTTP 503): down"),
        (fault(400, said="no"), ProviderError, "acme error (HTTP 400): no"),
        # a body code that is no HTTP status is named as a code, never as a server error
        (fault(10010, said="no"), ProviderError, "acme error (code 10010): no"),
        # a text condition reads the server's words...
        (fault(406, said="Insufficient credits"), QuotaError, "acme wants money (HTTP 406)"),
        # ...never the stand-in reason phrase, and every condition must hold
        (fault(406), ProviderError, "acme error (HTTP 406): Not Acceptable"),
        (fault(406, said="wrong content type"), ProviderError, "acme error (HTTP 406)"),
        (fault(400, said="credit"), ProviderError, "acme error (HTTP 400): credit"),
        # a kind condition reads the body's error kind, on any code
        (fault(400, kind="unauthenticated", said="who?"), AuthError, "said unauthenticated: who?"),
        (fault(400, kind="not_unauthenticated"), ProviderError, "acme error (HTTP 400)"),
        # a submit row matches only answers to a submit (a model, no task yet)
        (fault(404, model="m1", said="gone"), UnknownModel, "(acme said: gone)"),
        (fault(404, model="m1", task_id="t1"), ProviderError, "acme error (HTTP 404)"),
        (fault(404), ProviderError, "acme error (HTTP 404): Not Found"),
    ],
)
def test_first_matching_row_makes_the_error(
    given: Fault, expected: type[GenError], message: str
) -> None:
    error = interpret(TABLE, given)
    assert type(error) is expected
    assert message in error.message and error.args == (error.message,)


def test_rows_are_tried_in_order() -> None:
    loose = ErrorRule(ServerError, "first: {message}")
    assert type(interpret((loose, *DEFAULT_RULES), fault(401))) is ServerError
    assert type(interpret((*DEFAULT_RULES, loose), fault(401))) is AuthError
    assert interpret((), fault(418)).message.startswith("acme error (HTTP 418)")  # OTHER


def test_errors_carry_their_context_and_rate_limits_their_delay() -> None:
    limited = interpret(TABLE, fault(429, model="m1", task_id="t1", retry_after=7.0))
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    assert (limited.provider, limited.model, limited.task_id) == ("acme", "m1", "t1")
    assert limited.status_code == 429 and str(limited).endswith("[acme:m1, task t1]")


def test_unknown_model_lists_the_catalogue_with_a_suggestion() -> None:
    error = interpret(TABLE, fault(404, model="pik", said="no such model", known=("pic", "vid")))
    assert isinstance(error, UnknownModel) and error.known == ["pic", "vid"]
    assert "Did you mean 'pic'?" in str(error) and str(error).count("acme said: no such") == 1


def test_text_rows_never_match_the_stand_in_reason_phrase() -> None:
    found = ErrorRule(ServerError, "{message}", text="not found")
    assert type(interpret((found,), fault(404))) is ProviderError  # "Not Found" is ours
    assert type(interpret((found,), fault(404, said="model not found"))) is ServerError


def test_where_derives_a_row() -> None:
    derived = OTHER.where(codes={418}, message="{provider} is a teapot")
    assert derived.matches(fault(418)) and not derived.matches(fault(400))
    assert interpret((derived,), fault(418)).message == "acme is a teapot"
    assert OTHER.codes is None  # the original row is unchanged


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "plain"}, "plain"),
        ({"error": {"message": "openai", "type": "x"}}, "openai"),
        ({"error": {"detail": "oxen", "title": "T"}}, "oxen"),
        ({"message": "top"}, "top"),
        ({"detail": [{"msg": "field required"}, {"msg": "bad"}]}, "field required; bad"),
        ({"code": 200, "message": "success"}, None),  # OneRouter's wrapper: no message
        ({"error": "  ", "message": "next"}, "next"),
        (["not", "a", "mapping"], None),
        (None, None),
    ],
)
def test_error_text_reads_the_documented_shapes(body: Any, expected: str | None) -> None:
    assert error_text(body, ERROR_TEXTS) == expected


def test_reason_phrase() -> None:
    assert (reason(404), reason(499), reason(10010)) == ("Not Found", "HTTP 499", "code 10010")


# ------------------------------------------------------------------------ each adapter's table
TASK = {"id": "t1", "model": "m1", "status": Status.RUNNING}


@pytest.mark.parametrize(
    ("provider", "code", "body", "on_submit", "expected", "text"),
    [
        ("segmind", 406, {"error": "Insufficient credits"}, False, QuotaError, "credits"),
        ("segmind", 406, {"error": "Content-Type must be JSON"}, False, ProviderError, "HTTP 406"),
        ("segmind", 410, {"error": "Gone"}, False, ProviderError, "retired this model"),
        ("segmind", 410, {"error": "deprecated"}, True, UnknownModel, "model retired"),
        ("segmind", 404, {"error": "Model not found"}, True, UnknownModel, "model not found"),
        ("rixapi", 403, {"error": {"code": "insufficient_user_quota", "message": "m"}}, False,
         QuotaError, "insufficient_user_quota"),
        ("rixapi", 403, {"error": {"code": "token_disabled", "message": "m"}}, False,
         AuthError, "refused the key"),
        ("rixapi", 400, {"error": {"code": "model_not_found", "message": "x"}}, True,
         UnknownModel, "rixapi said: x"),
        ("rixapi", 503, {"error": {"message": "No available channel for model x"}}, True,
         UnknownModel, "No available channel"),
        ("onerouter", 403, {"error": {"type": "content_policy_violation", "message": "m"}}, False,
         ProviderError, "moderation"),
        ("onerouter", 403, {"error": {"message": "key disabled"}}, False, AuthError, "key"),
        ("onerouter", 408, {"error": {"message": "slow"}}, False, ServerError, "timed out"),
        ("onerouter", 200, {"code": 10010, "message": "blocked"}, False, ProviderError,
         "code 10010"),
        ("netmind", 500, {"detail": "Service is unavailable"}, True, ServerError, "premium"),
        ("netmind", 500, {"detail": "Service is unavailable"}, False, ServerError, "unavailable"),
        ("netmind", 400, {"detail": "Model name: x not exists"}, True, UnknownModel, "not exists"),
        ("oxen", 403, {"error": {"type": "unauthenticated", "detail": "who"}}, False, AuthError,
         "who"),
        ("oxen", 400, {"error": {"type": "invalid_params", "detail": "bad"}}, False,
         ProviderError, "refused the parameters"),
        ("oxen", 400, {"error": {"detail": "Insufficient credits"}}, False, QuotaError, "credits"),
        ("oxen", 404, {"error": {"type": "resource_not_found", "detail": "gone"}}, True,
         UnknownModel, "oxen said: gone"),
        ("oxen", 400, {"error": {"detail": "unsupported_media_type"}}, True, ProviderError,
         "image and video models only"),
    ],
)
def test_adapter_tables(
    provider: str,
    code: int,
    body: Any,
    on_submit: bool,
    expected: type[GenError],
    text: str,
) -> None:
    adapter = get_provider_class(provider)(api_key="test-key")
    task = Task(provider=provider, **TASK)
    where: dict[str, Any] = {"model": "m1"} if on_submit else {"task": task}
    error = adapter.error_for(Response.from_json(code, body), **where)
    assert type(error) is expected and text in str(error)
    if on_submit and not isinstance(error, UnknownModel):
        assert error.task_id is None and error.model == "m1"
    elif not on_submit:
        assert (error.model, error.task_id) == ("m1", "t1")


def test_retry_after_is_counted_from_when_the_answer_came() -> None:
    then = datetime(2026, 1, 1, tzinfo=timezone.utc)
    reset = (then + timedelta(seconds=30)).isoformat()
    answer = Response(429, {"x-rate-limit-reset-at-utc": reset}, b"{}", received_at=then)
    error = get_provider_class("segmind")(api_key="k").error_for(answer)
    assert isinstance(error, RateLimited) and error.retry_after == 30.0
