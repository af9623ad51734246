"""The interface every provider adapter implements, sans-IO (in the manner of h11).

An adapter turns a submit into a `Request` description and a `Response` (status, headers, bytes)
into a `Task` snapshot. It never opens a socket, sleeps or keeps global state: the client in
`genwidgets/_client.py` does all IO, so every adapter is tested dict-in, Task-out.

Errors: `parse_*` methods raise the `ProviderError` family (see `error_for`) for responses that
carry no task state, and return a `Task` for everything that does, including Segmind's FAILED
with HTTP 422 and a 404 after the retention window (`expired`).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, TypeGuard
from urllib.parse import urlsplit

from .._exceptions import (
    AuthError,
    InvalidParams,
    MalformedResponse,
    NotSupported,
    ProviderError,
    QuotaError,
    RateLimited,
    ServerError,
    UnknownModel,
)
from .._models import Output, OutputKind, Status, Task, utcnow

__all__ = [
    "Event",
    "ModelInfo",
    "Param",
    "Provider",
    "Request",
    "Response",
    "guess_kind",
    "is_http_url",
    "is_id",
    "parse_time",
    "retry_after",
    "same_site",
]

Method = Literal["GET", "POST", "DELETE"]


@dataclass(frozen=True)
class Request:
    """What to send. `url` is absolute; `headers` include auth (so never log this object)."""

    method: Method
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    json: Any = None
    params: Mapping[str, str] | None = None

    @property
    def idempotent(self) -> bool:
        """GET and DELETE may be retried; a POST that creates a task may not."""
        return self.method != "POST"


@dataclass(frozen=True)
class Response:
    """What came back. Header names are lower-case."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    url: str = ""

    @classmethod
    def from_json(
        cls, status_code: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Convenience for tests: a JSON response."""
        hdrs = {
            "content-type": "application/json",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        return cls(status_code, hdrs, json.dumps(body).encode())

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def json_or_none(self) -> Any:
        """The decoded body, or None when it is empty or not JSON."""
        try:
            return json.loads(self.content) if self.content else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Event:
    """A push notification about one task (Oxen's SSE), already decoded by the adapter."""

    task_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Param:
    """One known parameter of a model: checked locally before anything is sent.

    `default` is filled into every request by `validate` (so it is part of the request's
    fingerprint); `implied` is what the model does when the parameter is not sent: forms show it,
    nothing sends it, and fingerprints stay as they are."""

    type: type | tuple[type, ...] = str
    help: str = ""
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    required: bool = False
    implied: Any = None


@dataclass(frozen=True)
class ModelInfo:
    """A model in a provider's catalogue: what it produces and which parameters it knows."""

    name: str
    kind: OutputKind
    description: str = ""
    params: Mapping[str, Param] = field(default_factory=dict)
    closed: bool = False  # True: parameters outside `params` are refused


PROMPT = Param(str, "what to generate", required=True)
SEED = Param(int, "random seed, for reproducible results", minimum=0, maximum=2**32 - 1)


class Provider:
    """Base class of the adapters. Subclasses set the class attributes and the build/parse pairs."""

    name: ClassVar[str]
    env_var: ClassVar[str | None] = None  # where the API key comes from
    default_base_url: ClassVar[str] = ""
    models: ClassVar[Mapping[str, ModelInfo]] = {}
    #: Unknown model names are passed through to the provider (its catalogue is larger than ours
    #: and changes weekly); the provider's own "not found" is then mapped to UnknownModel.
    open_catalogue: ClassVar[bool] = True
    can_cancel: ClassVar[bool] = False
    can_list: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    has_events: ClassVar[bool] = False
    #: first poll delay and the cap it backs off to, in seconds (the seeds advise 2-10 s)
    poll_interval: ClassVar[tuple[float, float]] = (1.0, 8.0)
    #: how long the provider keeps a task, if documented (a 404 after it means expired)
    retention: ClassVar[float | None] = None

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        self._api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    def __repr__(self) -> str:  # never show the key
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @property
    def account(self) -> str:
        """A stable, non-reversible name for the key: rate budgets are per account, and a hash
        can sit in a dict or a log where the key itself must never be."""
        return hashlib.sha256((self._api_key or "").encode()).hexdigest()[:16]

    # ----------------------------------------------------------------------------- validation
    def model_info(self, model: str) -> ModelInfo | None:
        return self.models.get(model)

    def check_model(self, model: str) -> None:
        """Refuse a model name before anything is sent, when that can be known locally."""
        if not model or any(c.isspace() for c in model):
            raise self.unknown_model(model)
        if not self.open_catalogue and model not in self.models:
            raise self.unknown_model(model)

    def unknown_model(self, model: str) -> UnknownModel:
        known = sorted(self.models)
        close = difflib.get_close_matches(model, known, n=1)
        return UnknownModel(self.name, model, known, close[0] if close else None)

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, JSON-ready parameters (defaults filled in), or `InvalidParams`."""
        self.check_model(model)
        info = self.model_info(model)
        specs: Mapping[str, Param] = {"prompt": PROMPT, "seed": SEED}
        if info is not None:
            specs = {**specs, **info.params}
        clean: dict[str, Any] = {}
        for key, value in params.items():
            if value is None:
                continue
            spec = specs.get(key)
            if spec is None:
                if info is not None and info.closed:
                    close = difflib.get_close_matches(key, list(specs), n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise InvalidParams(
                        f"Unknown parameter {key!r}.{hint} Known: {', '.join(sorted(specs))}",
                        provider=self.name,
                        model=model,
                    )
                _check_json(key, value, self.name, model)
                clean[key] = value
                continue
            clean[key] = _check_param(key, value, spec, self.name, model)
        for key, spec in specs.items():
            if key not in clean and spec.default is not None:
                clean[key] = spec.default
        prompt = clean.get("prompt")
        if (
            "prompt" in specs
            and specs["prompt"].required
            and (not isinstance(prompt, str) or not prompt.strip())
        ):
            raise InvalidParams("A non-empty prompt is required", provider=self.name, model=model)
        return clean

    def kind_of(self, model: str) -> OutputKind | None:
        info = self.model_info(model)
        return info.kind if info else None

    # ----------------------------------------------------------------------------- protocol
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        raise NotImplementedError

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        raise NotImplementedError

    def build_poll(self, task: Task) -> Request:
        raise NotImplementedError

    def parse_poll(self, task: Task, response: Response) -> Task:
        raise NotImplementedError

    def build_result(self, task: Task) -> Request | None:
        """A second request that fetches outputs after the status says done (Segmind), or None."""
        return None

    def parse_result(self, task: Task, response: Response) -> Task:
        raise NotImplementedError

    def build_cancel(self, task: Task) -> Request:
        raise self.not_supported("cancel")

    def parse_cancel(self, task: Task, response: Response) -> Task:
        raise self.not_supported("cancel")

    def build_list(self, **filters: str) -> Request:
        raise self.not_supported("list")

    def parse_list(self, response: Response) -> list[Task]:
        raise self.not_supported("list")

    def build_delete(self, task: Task) -> Request:
        raise self.not_supported("delete")

    def parse_delete(self, task: Task, response: Response) -> None:
        raise self.not_supported("delete")

    def build_events(self) -> Request:
        raise self.not_supported("push events")

    def parse_event(self, event: str, data: str) -> Event | None:
        """Decode one SSE message; None for events that concern no task (keep-alives, others)."""
        return None

    def apply_event(self, task: Task, event: Event) -> Task:
        raise self.not_supported("push events")

    # ----------------------------------------------------------------------------- helpers
    def _malformed(
        self, why: str, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> MalformedResponse:
        return MalformedResponse(
            f"Unexpected answer from {self.name} (HTTP {response.status_code}): {why}",
            status_code=response.status_code,
            provider=self.name,
            model=task.model if task else model,
            task_id=task.id if task else None,
        )

    def _clean(self, text: Any) -> str | None:
        """Server text made safe to show: a string, clipped, with the key (if echoed) removed."""
        if not isinstance(text, str) or not text.strip():
            return None
        return self._scrub(text.strip()[:MAX_SERVER_TEXT])

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def not_supported(self, what: str) -> NotSupported:
        return NotSupported(f"{self.name} has no {what} endpoint", provider=self.name)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def json_body(self, response: Response, task: Task | None = None) -> Any:
        """The decoded JSON body, or `MalformedResponse` naming what came instead."""
        try:
            return json.loads(response.content)
        except ValueError:
            snippet = response.content[:80].decode("utf-8", "replace")
            raise MalformedResponse(
                f"Expected JSON from {self.name}, got HTTP {response.status_code}: {snippet!r}",
                status_code=response.status_code,
                provider=self.name,
                model=task.model if task else None,
                task_id=task.id if task else None,
            ) from None

    def error_message(self, body: Any) -> str | None:
        """The human message in an error body; adapters override for their error shape."""
        if isinstance(body, Mapping):
            err = body.get("error")
            if isinstance(err, str):
                return err
            if isinstance(err, Mapping):
                for key in ("message", "detail", "title"):
                    if isinstance(err.get(key), str):
                        return str(err[key])
            for key in ("message", "detail", "status_message"):
                if isinstance(body.get(key), str):
                    return str(body[key])
        return None

    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> ProviderError:
        """Map an HTTP error response to the exception tree."""
        code = response.status_code
        message = self.error_message(response.json_or_none()) or _reason(code)
        kw: dict[str, Any] = {
            "status_code": code,
            "provider": self.name,
            "model": task.model if task else model,
            "task_id": task.id if task else None,
        }
        if code == 429:
            return RateLimited(
                f"Rate limited by {self.name}: {message}", retry_after=retry_after(response), **kw
            )
        if code == 402:
            return QuotaError(f"{self.name} refused for credits: {message}", **kw)
        if code in (401, 403):
            return AuthError(f"{self.name} refused the key (HTTP {code}): {message}", **kw)
        if code >= 500:
            return ServerError(f"{self.name} server error (HTTP {code}): {message}", **kw)
        return ProviderError(f"{self.name} error (HTTP {code}): {message}", **kw)

    def raise_for_transient(self, response: Response, task: Task | None = None) -> None:
        """Raise for answers that carry no task state: auth, quota, rate limit, 5xx."""
        if response.status_code in (401, 402, 403, 429) or response.status_code >= 500:
            raise self.error_for(response, task=task)

    def expired(self, task: Task, response: Response | None = None) -> Task:
        """The task is gone (404 after retention): its results can no longer be fetched."""
        detail = self.error_message(response.json_or_none()) if response is not None else None
        return task.evolve(
            status=Status.EXPIRED,
            error=detail or f"{self.name} no longer knows this task (retention window passed)",
            finished_at=task.finished_at or utcnow(),
        )

    def output(
        self,
        url: str,
        *,
        kind: OutputKind | None = None,
        content_type: str | None = None,
        size: Any = None,
        model: str | None = None,
    ) -> Output:
        """An `Output` with its kind guessed from content type, URL, then the model's kind."""
        guessed = kind or guess_kind(url, content_type) or (self.kind_of(model) if model else None)
        return Output(
            kind=guessed or "image",
            url=url,
            content_type=content_type,
            size=_int_or_none(size),
        )


# --------------------------------------------------------------------------------- free helpers
#: Server text (errors, logs) is clipped to this many characters before anyone sees it.
MAX_SERVER_TEXT = 500
#: second-level labels under which unrelated parties register (example.co.uk): no shared parent.
_SHARED_SLDS = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_site(url: str, base_url: str, *, same_port: bool = True) -> bool:
    """True when a server-given `url` may receive the API key that is sent to `base_url`.

    Providers name the URLs to poll (Segmind's status_url, OneRouter's urls.get) and every poll
    carries the key, so a URL on another host would receive it. Allowed: the base's own host, or a
    host under its parent domain (``video.onerouter.pro`` next to ``image.onerouter.pro``), on the
    same port unless `same_port` is False.
    IP addresses and single-label hosts (``127.0.0.1``, ``localhost``) must match exactly. The
    scheme must be http(s) and may not drop from https to http; URLs with user info are refused.
    """
    if any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        target, base = urlsplit(url), urlsplit(base_url)
        target_host, base_host = target.hostname, base.hostname
        target_port = target.port or _DEFAULT_PORTS.get(target.scheme)
        base_port = base.port or _DEFAULT_PORTS.get(base.scheme)
    except ValueError:  # unparseable host or port
        return False
    if target.scheme not in ("http", "https") or not target_host or not base_host:
        return False
    if "@" in target.netloc or (base.scheme == "https" and target.scheme != "https"):
        return False
    if same_port and target_port != base_port:
        return False
    target_host, base_host = target_host.rstrip(".").lower(), base_host.rstrip(".").lower()
    if target_host == base_host:
        return True
    parent = _parent_domain(base_host)
    return parent is not None and (target_host == parent or target_host.endswith("." + parent))


def _parent_domain(host: str) -> str | None:
    """`host` without its first label, when that is still one organisation's domain."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) < 3:
        return None  # example.com's parent would be the TLD itself
    parent = labels[1:]
    if len(parent) == 2 and len(parent[1]) == 2 and parent[0] in _SHARED_SLDS:
        return None  # foo.co.uk: co.uk is a public suffix
    return ".".join(parent)


_EXT_KIND: dict[str, OutputKind] = {}
for _ext in ("png", "jpg", "jpeg", "webp", "gif", "bmp", "avif", "heic", "tif", "tiff"):
    _EXT_KIND[_ext] = "image"
for _ext in ("mp4", "webm", "mov", "mkv", "avi", "m4v"):
    _EXT_KIND[_ext] = "video"
for _ext in ("mp3", "wav", "ogg", "flac", "m4a", "aac", "opus"):
    _EXT_KIND[_ext] = "audio"
for _ext in ("txt", "json", "md"):
    _EXT_KIND[_ext] = "text"


def guess_kind(url: str | None, content_type: str | None = None) -> OutputKind | None:
    """image/video/audio/text from a content type, else from the URL's extension."""
    if content_type:
        major = content_type.split("/", 1)[0].strip().lower()
        if major in ("image", "video", "audio", "text"):
            return major  # type: ignore[return-value]
    if url:
        path = urlsplit(url).path
        ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        if ext in _EXT_KIND:
            return _EXT_KIND[ext]
        ctype, _ = mimetypes.guess_type(path)
        if ctype:
            return guess_kind(None, ctype)
    return None


def parse_time(value: Any) -> datetime | None:
    """Unix seconds (int, float or digit string), ISO 8601, or 'YYYY-MM-DD HH:MM:SS[.ff]' (UTC)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000.0 if value > 1e11 else float(value)  # tolerate milliseconds
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_time(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def retry_after(response: Response) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `x-rate-limit-reset-at-utc`."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-rate-limit-reset-at-utc")
    if reset:
        when = parse_time(reset)
        if when is not None:
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


def is_id(value: Any) -> bool:
    """A usable task id from a server: a non-empty string or an int (not a bool)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(str(value))


def is_http_url(value: Any) -> TypeGuard[str]:
    """An absolute http(s) URL with a host and no whitespace: anything else from a server is
    not followed."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _reason(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _check_json(key: str, value: Any, provider: str, model: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidParams(
            f"Parameter {key!r} must be JSON-serializable, got {type(value).__name__}",
            provider=provider,
            model=model,
        ) from None


def _check_param(key: str, value: Any, spec: Param, provider: str, model: str) -> Any:
    def bad(why: str) -> InvalidParams:
        return InvalidParams(f"Parameter {key!r} {why}", provider=provider, model=model)

    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if (
        float in types
        and int not in types
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        value = float(value)
    if isinstance(value, str) and (int in types or float in types) and str not in types:
        try:  # "--seed 3" arrives as text from the magic and the CLI
            value = int(value) if int in types and re.fullmatch(r"-?\d+", value) else float(value)
        except ValueError:
            raise bad(f"must be a number, got {value!r}") from None
    if isinstance(value, str) and bool in types and str not in types:
        if value.lower() in ("true", "1", "yes", "on"):
            value = True
        elif value.lower() in ("false", "0", "no", "off"):
            value = False
    if isinstance(value, (int, float)) and not isinstance(value, bool) and types == (str,):
        value = str(value)  # "--param duration=5" parses as a number; the provider wants "5"
    if isinstance(value, bool) and bool not in types:
        raise bad(f"must be {_type_names(types)}, got a bool")
    if not isinstance(value, types):
        raise bad(f"must be {_type_names(types)}, got {type(value).__name__} {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise bad(f"must be one of {', '.join(map(repr, spec.choices))}; got {value!r}")
    if spec.minimum is not None and isinstance(value, (int, float)) and value < spec.minimum:
        raise bad(f"must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and isinstance(value, (int, float)) and value > spec.maximum:
        raise bad(f"must be <= {spec.maximum}, got {value!r}")
    if (
        spec.pattern is not None
        and isinstance(value, str)
        and not re.fullmatch(spec.pattern, value)
    ):
        raise bad(f"must match {spec.pattern!r}, got {value!r}")
    return value


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)
