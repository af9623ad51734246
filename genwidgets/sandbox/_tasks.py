"""Simulated tasks and their result files: what a submit creates and every poll reads.

A task stores only its creation time and durations; its status is computed from the clock on
each request (`SimTask.phase`), so a thousand idle tasks cost a dict entry each and no timers.
What a task produces (`kind_for`) is read off its model's name and request, since the sandbox
keeps no catalogue; its result files (`FileEntry`) are rendered only when first fetched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FileEntry",
    "Kind",
    "Phase",
    "SimTask",
    "account_of",
    "fingerprint",
    "kind_for",
]

Kind = Literal["image", "video", "audio", "text"]
Phase = Literal["queued", "running", "succeeded", "failed", "cancelled"]

_AUDIO_WORDS = ("audio", "music", "tts", "speech", "mmaudio")
_TEXT_WORDS = ("llm", "chat", "text")
_IMAGE_WORDS = ("image", "img", "photo", "picture")
#: Video model families whose names do not say "video" (the catalogues' seedance, veo-3,
#: runway-gen4, luma-ray-2, vidu-2.0, kling-v3, ...).
_VIDEO_FAMILIES = ("seedance", "veo", "runway", "luma", "vidu", "kling", "hailuo", "sora", "pika")


def kind_for(provider: str, model: str, params: Mapping[str, Any] | None = None) -> Kind:
    """What a model produces, from its name and request: the sandbox has no catalogue, on purpose.

    'video' in the name wins, then the audio words, then (Segmind only, the one provider with text
    models) 'llm'/'chat'/'text' unless the name also says image ('text-to-image' is an image
    model), then the image words; then a video family's name (seedance, veo, kling...) or a
    request that asks for a length (`duration`, `seconds`) makes a video; everything else makes
    images.
    """
    name = model.lower()
    if "video" in name:
        return "video"
    if any(word in name for word in _AUDIO_WORDS):
        return "audio"
    says_image = any(word in name for word in _IMAGE_WORDS)
    if provider == "segmind" and any(word in name for word in _TEXT_WORDS) and not says_image:
        return "text"
    if says_image:
        return "image"
    if any(family in name for family in _VIDEO_FAMILIES):
        return "video"
    if params and any(params.get(field) is not None for field in ("duration", "seconds")):
        return "video"
    return "image"


def account_of(key: str) -> str:
    """A stable account id for a key; the key itself is never stored."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]


def fingerprint(provider: str, model: str, body: Any) -> str:
    """provider:model:hash of the canonical JSON body -- the same submit twice has one print."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{provider}:{model}:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


@dataclass
class FileEntry:
    """A result file behind an unguessable token. Bytes are rendered on demand (memoized)."""

    token: str
    kind: Kind
    prompt: str
    seed: int
    size: int | None = None  # known once rendered, or the requested size of a big file
    big: bool = False
    seconds: float | None = None  # a video's or audio's requested length (None: the default)
    downloads: int = 0

    @property
    def ext(self) -> str:
        return {"image": "png", "video": "mp4", "audio": "wav", "text": "txt"}[self.kind]

    @property
    def content_type(self) -> str:
        return {
            "image": "image/png",
            "video": "video/mp4",
            "audio": "audio/wav",
            "text": "text/plain; charset=utf-8",
        }[self.kind]

    def path(self) -> str:
        return f"/files/{self.token}.{self.ext}"


@dataclass
class SimTask:
    """One simulated task. Its timeline is fixed at creation; the status is read off the clock."""

    id: str
    provider: str
    model: str
    account: str
    kind: Kind
    prompt: str
    seed: int
    params: dict[str, Any]
    created: float
    queue_seconds: float
    run_seconds: float
    fails: bool = False
    error: str | None = None
    expires_at: float | None = None
    cancelled_at: float | None = None
    deleted_at: float | None = None
    big_bytes: int | None = None
    callback_url: str | None = None
    files: list[FileEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> float:
        return self.created + self.queue_seconds

    @property
    def finished(self) -> float:
        return self.started + self.run_seconds

    def phase(self, now: float) -> Phase:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        if now < self.started:
            return "queued"
        if now < self.finished:
            return "running"
        return "failed" if self.fails else "succeeded"

    def run_fraction(self, now: float) -> float:
        """0..1 through the running phase (OneRouter splits it into in_progress/processing)."""
        if self.run_seconds <= 0:
            return 1.0
        return min(1.0, max(0.0, (now - self.started) / self.run_seconds))

    def gone(self, now: float) -> bool:
        """Past retention/expiry or deleted: every endpoint answers 404 from now on."""
        if self.deleted_at is not None:
            return True
        return self.expires_at is not None and now >= self.expires_at

    def changed_at(self, now: float) -> float:
        """When the visible status last changed (NetMind's updated_at)."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return self.cancelled_at
        if now >= self.finished:
            return self.finished
        if now >= self.started:
            return self.started
        return self.created

    def in_flight(self, now: float) -> bool:
        """Still occupying one of the account's concurrent slots (queued or running, not gone)."""
        return not self.gone(now) and self.phase(now) in ("queued", "running")
