"""Reading the fields of a provider's answer: times, ids, URLs, output kinds, numbers, and which
server-named URLs may receive the key. Pure functions of their arguments (no clock, no IO).
"""

from __future__ import annotations

import ipaddress
import json
import mimetypes
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit

from .._models import OutputKind
from ._wire import Response

__all__ = [
    "MAX_SERVER_TEXT",
    "appended",
    "as_float",
    "as_int",
    "dig",
    "first_id",
    "guess_kind",
    "is_http_url",
    "is_id",
    "is_json",
    "kind_word",
    "parse_time",
    "retry_after",
    "same_origin",
    "same_site",
    "text",
    "unwrap",
]

#: Server text (errors, logs) is clipped to this many characters before anyone sees it.
MAX_SERVER_TEXT = 500
#: Log lines a snapshot keeps: the latest ones.
MAX_LOG_LINES = 50
#: second-level labels under which unrelated parties register (example.co.uk): no shared parent.
_SHARED_SLDS = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_KINDS: frozenset[str] = frozenset({"image", "video", "audio", "text"})
_IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "avif", "heic", "tif", "tiff")
_EXT_KIND: dict[str, OutputKind] = {
    **dict.fromkeys(_IMAGE_EXTS, "image"),
    **dict.fromkeys(("mp4", "webm", "mov", "mkv", "avi", "m4v"), "video"),
    **dict.fromkeys(("mp3", "wav", "ogg", "flac", "m4a", "aac", "opus"), "audio"),
    **dict.fromkeys(("txt", "json", "md"), "text"),
}


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


def same_origin(url: str, base_url: str) -> bool:
    """`same_site` on exactly `base_url`'s host (scheme, host, port): where a key may go when a
    parent domain is shared (``*.googleapis.com`` also names storage buckets anyone can own)."""
    return same_site(url, base_url) and urlsplit(url).hostname == urlsplit(base_url).hostname


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


def guess_kind(url: str | None, content_type: str | None = None) -> OutputKind | None:
    """image/video/audio/text from a content type, else from the URL's extension."""
    if content_type:
        major = content_type.split("/", 1)[0].strip().lower()
        if major in _KINDS:
            return cast("OutputKind", major)
    if url:
        path = urlsplit(url).path
        ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        if ext in _EXT_KIND:
            return _EXT_KIND[ext]
        ctype, _ = mimetypes.guess_type(path)
        if ctype:
            return guess_kind(None, ctype)
    return None


def kind_word(value: Any) -> OutputKind | None:
    """A provider's own word for an output kind ("image", " Video "), or None."""
    word = value.strip().lower() if isinstance(value, str) else None
    return cast("OutputKind", word) if word in _KINDS else None


def parse_time(value: Any) -> datetime | None:
    """Unix seconds (int, float or digit string), ISO 8601, or 'YYYY-MM-DD HH:MM:SS[.ff]' (UTC)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000.0 if value > 1e11 else float(value)  # tolerate milliseconds
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str):
        stripped = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", stripped):
            return parse_time(float(stripped))
        try:
            parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def retry_after(response: Response) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `x-rate-limit-reset-at-utc`,
    counted from when the response was received."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    value = headers.get("retry-after")
    when: datetime | None = None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)  # "-0000": GMT, as HTTP dates are
    if when is None and headers.get("x-rate-limit-reset-at-utc"):
        when = parse_time(headers["x-rate-limit-reset-at-utc"])
    if when is None:
        return None
    return max(0.0, (when - response.received_at).total_seconds())


def is_id(value: Any) -> bool:
    """A usable task id from a server: a non-blank string or an int (not a bool)."""
    usable = isinstance(value, (str, int)) and not isinstance(value, bool)
    return usable and bool(str(value).strip())


def first_id(record: Mapping[str, Any], *keys: str) -> str | None:
    """The first usable id among `keys` of a record, as text."""
    for key in keys:
        if is_id(record.get(key)):
            return str(record[key]).strip()
    return None


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


def text(value: Any) -> str | None:
    """A non-blank string, stripped; anything else is None."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def appended(known: tuple[str, ...], lines: tuple[str, ...]) -> tuple[str, ...]:
    """The log after a message that sends only new `lines` (fal's status stream, as fal-js reads
    it): `known` then `lines`, the latest `MAX_LOG_LINES`. A message that repeats the whole log
    (a poll, a stream opened again) holds `known` as a run of its lines: it is the log itself."""
    size = len(known)
    whole = size and any(lines[i : i + size] == known for i in range(len(lines) - size + 1))
    return (lines if whole or not known else known + lines)[-MAX_LOG_LINES:]


def as_int(value: Any) -> int | None:
    """An integer from a number or a digit string; None for bools, blanks and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    """A number from a number or numeric text; None for bools, blanks and anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def dig(body: Any, path: str) -> Any:
    """The value at a dotted `path` ("error.message") of a JSON body, or None."""
    for key in path.split("."):
        body = body.get(key) if isinstance(body, Mapping) else None
    return body


def unwrap(body: Any) -> Mapping[str, Any] | None:
    """A task record: the body itself, or its ``data`` when a gateway wraps the record in
    ``{"data": {...}}`` (a body with its own ``id`` or ``status`` is the record)."""
    if not isinstance(body, Mapping):
        return None
    data = body.get("data")
    return data if "id" not in body and "status" not in body and isinstance(data, Mapping) else body


def is_json(content: bytes) -> bool:
    """Is `content` a JSON document (even ``null``)?"""
    try:
        json.loads(content)
    except ValueError:
        return False
    return True
