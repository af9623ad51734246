"""Errors as data: each adapter lists `ErrorRule`s, and one interpreter (`interpret`) turns an
error answer into the exception of the first rule that matches, built once with its message.

A rule reads like a line of the provider's error documentation ("a 406 whose text speaks of
credits is a billing refusal"), the way h11 keeps its state transitions as tables: adding a case
is adding a row, and the rows can be tested one by one.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

from .._exceptions import (
    AuthError,
    GenError,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    UnknownModel,
)
from .._models import Task
from ._fields import dig, text

__all__ = [
    "AUTH",
    "DEFAULT_RULES",
    "ERROR_TEXTS",
    "MODEL_NOT_FOUND",
    "OTHER",
    "QUOTA",
    "RATE",
    "SERVER",
    "ErrorRule",
    "Fault",
    "error_context",
    "error_text",
    "interpret",
    "model_refused",
    "reason",
    "unknown_model",
]


def error_context(
    provider: str, task: Task | None = None, model: str | None = None
) -> dict[str, Any]:
    """The context every error carries: provider, model and task id (from `task` when known)."""
    return {
        "provider": provider,
        "model": task.model if task else model,
        "task_id": task.id if task else None,
    }


def error_text(body: Any, paths: Sequence[str]) -> str | None:
    """The human message of an error body: the first non-blank text at one of the dotted `paths`.
    FastAPI's ``detail`` list of ``{msg}`` is joined; a bare "success" is no message."""
    for path in paths:
        value = dig(body, path)
        if isinstance(value, list):
            value = "; ".join(m for m in (dig(item, "msg") for item in value) if isinstance(m, str))
        if text(value) and str(value).strip().lower() != "success":
            return str(value)
    return None


def reason(code: int) -> str:
    """The standard phrase of an HTTP status ("Not Found"), else "HTTP 499" or "code 10010"."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}" if 100 <= code <= 599 else f"code {code}"


def unknown_model(
    provider: str, model: str, known: Sequence[str], detail: str | None = None
) -> UnknownModel:
    """`UnknownModel` listing the catalogue, with a "did you mean" when a name is close."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(model, known, n=1)
    return UnknownModel(provider, model, known, close[0] if close else None, detail=detail)


@dataclass(frozen=True)
class Fault:
    """What one error answer says, read once by the adapter.

    `code` is the HTTP status, or the code a body puts in its place (OneRouter's wrapper); `kind`
    the body's machine-readable error kind, lower-case (Oxen's ``error.type``, RixAPI's
    ``error.code``); `said` the server's own words, already clipped and scrubbed of the key.
    """

    provider: str
    code: int
    kind: str = ""
    said: str | None = None
    model: str | None = None
    task_id: str | None = None
    retry_after: float | None = None
    known: tuple[str, ...] = ()  # the catalogue, named by an UnknownModel

    @property
    def submit(self) -> bool:
        """An answer to a submit: a model is named and there is no task yet."""
        return self.model is not None and self.task_id is None

    @property
    def status(self) -> str:
        return f"HTTP {self.code}" if 100 <= self.code <= 599 else f"code {self.code}"


@dataclass(frozen=True)
class ErrorRule:
    """One row of an error table: when it matches, and the exception and message it makes.

    Every condition given must hold: `codes` holds the status code, the pattern `kind` is found in
    the body's error kind, the pattern `text` in the server's words (never in a stand-in reason
    phrase), and `submit` rules match only answers to a submit. The `message` template may use
    ``{provider} {model} {status} {code} {kind}`` and ``{message}`` (the server's words, else the
    status's reason phrase). For `UnknownModel` the template is the detail added to the listing.
    """

    error: type[GenError]
    message: str
    codes: Collection[int] | None = None
    kind: str | None = None
    text: str | None = None
    submit: bool = False

    def matches(self, fault: Fault) -> bool:
        return (
            (self.codes is None or fault.code in self.codes)
            and (self.kind is None or bool(re.search(self.kind, fault.kind, re.IGNORECASE)))
            and (self.text is None or bool(re.search(self.text, fault.said or "", re.I)))
            and (not self.submit or fault.submit)
        )

    def where(self, **changes: Any) -> ErrorRule:
        """This rule with other conditions (or another message): ``AUTH.where(kind=...)``."""
        return replace(self, **changes)


RATE = ErrorRule(RateLimited, "Rate limited by {provider}: {message}", codes={429})
QUOTA = ErrorRule(QuotaError, "{provider} refused for credits ({status}): {message}", codes={402})
AUTH = ErrorRule(AuthError, "{provider} refused the key ({status}): {message}", codes={401, 403})
SERVER = ErrorRule(
    ServerError, "{provider} server error ({status}): {message}", codes=range(500, 600)
)
OTHER = ErrorRule(ProviderError, "{provider} error ({status}): {message}")
#: What every HTTP API means by its status codes; adapters put their own rows in front.
DEFAULT_RULES: tuple[ErrorRule, ...] = (RATE, QUOTA, AUTH, SERVER, OTHER)
#: Where error bodies usually keep their message: ``{"error": "..."}``, OpenAI's and Oxen's
#: ``error`` objects, then top-level fields (dotted paths, see `error_text`).
ERROR_TEXTS = ("error", "error.message", "error.detail", "error.title", "message", "detail")
ERROR_TEXTS += ("status_message",)
#: How aggregators word "no such model" (RixAPI, OneRouter: "no available channel" is New API's).
MODEL_NOT_FOUND = (
    r"\bmodel\b[^.\n]{0,80}?\b(not found|not exist|does not exist|doesn't exist|"
    r"is not supported)\b|\b(unknown|invalid|unsupported|no such) model\b|no available channel"
)


def model_refused(message: str = "{provider} said: {message}", **when: Any) -> ErrorRule:
    """A row for the provider's "no such model" in answer to a submit: `UnknownModel`, which
    lists the models we know, with the provider's words as its detail."""
    return ErrorRule(UnknownModel, message, submit=True, **when)


def interpret(rules: Sequence[ErrorRule], fault: Fault) -> GenError:
    """The exception of the first rule in `rules` that matches `fault` (`OTHER` if none does)."""
    rule = next((r for r in rules if r.matches(fault)), OTHER)
    message = rule.message.format(
        provider=fault.provider,
        model=fault.model,
        status=fault.status,
        code=fault.code,
        kind=fault.kind,
        message=fault.said or reason(fault.code),
    )
    if issubclass(rule.error, UnknownModel):
        return unknown_model(fault.provider, fault.model or "", fault.known, message)
    context = {"provider": fault.provider, "model": fault.model, "task_id": fault.task_id}
    if issubclass(rule.error, RateLimited):
        return rule.error(message, retry_after=fault.retry_after, status_code=fault.code, **context)
    if issubclass(rule.error, ProviderError):
        return rule.error(message, status_code=fault.code, **context)
    return rule.error(message, **context)
