"""Shared fixtures: one loopback sandbox for the session, and clients pointed at it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
import wave
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GENWIDGETS_LOCAL_DURATION", "0.2")
# Tests that want a journal pass their own; none writes into the checkout.
os.environ["GENWIDGETS_JOURNAL"] = "off"
# The sandbox enforces no limits unless a test asks it to; tests of the budgets pass their own.
os.environ["GENWIDGETS_BUDGETS"] = "off"

from genwidgets.providers import Response  # after the settings above
from genwidgets.testing import ProtocolSuite

# A key of the right shape for every registered provider that takes one (local takes none): what
# the sandbox accepts. Its refused keys are "bad-key" and "no-quota-key".
KEYS = {
    **{p: f"test-key-{p}" for p in ("onerouter", "rixapi", "segmind", "netmind", "oxen")},
    "luma": "test-key-luma",
    "runway": "test-key-runway",
    "fal": "key-id:key-secret",  # fal's KEY_ID:KEY_SECRET
    "replicate": "r8_sandbox-key",
    "veo": "AIza-sandbox-key",
    "openrouter": "sk-or-test-key",
}

# A model of each kind on each seed protocol, as the sandbox serves them (provider, kind) -> name.
SEED_MODELS = {
    ("onerouter", "image"): "acme/text-to-image",
    ("onerouter", "video"): "bytedance/seedance-video",
    ("onerouter", "audio"): "acme/text-to-audio",
    ("rixapi", "image"): "flux-pro",
    ("rixapi", "video"): "kling-v3/text-to-video",
    ("rixapi", "audio"): "suno-music",
    ("segmind", "image"): "seedream-4.5",
    ("segmind", "video"): "kling-video",
    ("segmind", "audio"): "tts-audio",
    ("netmind", "image"): "Qwen/Qwen-Image",
    ("netmind", "video"): "acme/text-to-video",
    ("netmind", "audio"): "hkchengrex/MMAudio",
    ("oxen", "image"): "flux-image",
    ("oxen", "video"): "kling-video-v2-6-pro-text-to-video",
    ("oxen", "audio"): "acme-audio",
}

DOC_FIXTURES = Path(__file__).parent / "providers" / "fixtures"


def doc_fixtures(provider: str) -> Callable[[str], Any]:
    """`fixture(name)`: a fresh copy of a documented JSON body, read from
    tests/providers/fixtures/<provider>/<name>."""
    folder = DOC_FIXTURES / provider
    return lambda name: json.loads((folder / name).read_text())


def answered_at(when: datetime) -> Callable[..., Response]:
    """`answer(status, body, headers=None)`: a JSON Response as received at `when` (so that times
    the adapter reckons from the answer's arrival are fixed)."""

    def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        plain = Response.from_json(status, body, headers)
        return Response(plain.status_code, plain.headers, plain.content, received_at=when)

    return answer


def assert_real_media(kind: str, data: bytes, *, codec: str | None = None) -> None:
    """`data` decodes as a `kind` (image, audio, else video; with `codec`, a video in it)."""
    import av
    from PIL import Image

    if kind == "image":
        with Image.open(io.BytesIO(data)) as image:
            assert image.size[0] > 0
    elif kind == "audio":
        with wave.open(io.BytesIO(data)) as sound:
            assert sound.getnframes() > 0
    else:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            if codec is not None:
                assert stream.codec_context.name == codec
            assert sum(1 for _ in container.decode(stream)) > 0


def requests_to(sandbox: Any, provider: str) -> dict[str, int]:
    """What the sandbox was asked of `provider` since its last reset, by route."""
    return dict(sandbox.stats()["requests"].get(provider, {}))


def _server_missing(what: str, why: str) -> None:
    """Skip a test whose real server is missing here, but fail under scripts/test.sh (CI), which
    installs every server: a team test is never silently skipped there."""
    if os.environ.get("GENWIDGETS_REQUIRE_SERVERS"):
        pytest.fail(f"{what} is required by scripts/test.sh but missing: {why}")
    pytest.skip(f"{what} missing: {why}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server on loopback for the session (`LocalPostgres`: `.url`, `.stop()`,
    `.start()`). Tests sharing it use their own schema or tables, or clean up."""
    from genwidgets.sandbox.postgres import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres()
    except PostgresUnavailable as e:
        _server_missing("PostgreSQL", str(e))
    with server as pg:
        yield pg


@contextlib.contextmanager
def pg_schema(pg: Any) -> Iterator[str]:
    """A journal URL on the session's PostgreSQL with a schema of its own (a clean database for
    one test, dropped after it, with any journal still open on it closed first)."""
    import psycopg

    from genwidgets import journal

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{pg.url}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        for book in list(journal._ALL):
            if book._key == url:
                book.close()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def journal_at(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Any]]:
    """Where a test's journal lives, once per backend: `journal_at(folder)` is a SQLite file in
    that folder, or (the same for every folder, a team's shared journal) a PostgreSQL URL."""
    if request.param == "sqlite":
        yield lambda folder: folder / "journal.sqlite"
        return
    with pg_schema(request.getfixturevalue("postgres")) as url:
        yield lambda folder: url


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """A real S3-compatible server on loopback for the session: moto's standalone server in its
    own process (`LocalS3`: `.env` holds the AWS_* variables that point s3fs at it,
    `.create_bucket(name)`, `.requests()` counts what it answered). Tests use their own bucket."""
    from genwidgets.sandbox.s3 import LocalS3, S3Unavailable

    try:
        server = LocalS3()
        server.start()
    except S3Unavailable as e:
        _server_missing("An S3-compatible server (moto[server])", str(e))
    with server as running:
        yield running


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    from genwidgets.sandbox import Sandbox

    with Sandbox(task_seconds=0.3, queue_seconds=0.1) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Any) -> Iterator[Any]:
    """The session sandbox, with faults, limits and counters cleared before each test."""
    sandbox.reset()
    sandbox.set_limits()  # reset() keeps limits; a test that sets some must not leak them
    yield sandbox
    sandbox.reset()
    sandbox.set_limits()


@pytest.fixture
def http() -> Iterator[Any]:
    """A plain httpx client (no proxies from the environment), for speaking a protocol raw."""
    import httpx

    with httpx.Client(timeout=10.0, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def busy_sandbox() -> Iterator[Any]:
    from genwidgets.sandbox import Sandbox

    with Sandbox(task_seconds=0.3, queue_seconds=5.0) as sb:
        yield sb


@pytest.fixture
def long_queue(busy_sandbox: Any) -> Any:
    """A sandbox whose requests wait 5 s in the queue (fal's concurrency cap, busy), fresh."""
    busy_sandbox.reset()
    return busy_sandbox


@pytest.fixture
def sandbox_client(sb: Any, tmp_path: Any) -> Callable[..., Any]:
    """`sandbox_client(keys=None, *, sandbox=None, **options)`: an AsyncClient (not yet opened)
    pointed at the session sandbox (or `sandbox`), with `keys` (default KEYS), a cache in
    tmp_path, quick polls and a short retry budget; `options` replace any of these."""
    from genwidgets import AsyncClient

    def make(
        keys: Mapping[str, str] | None = None, *, sandbox: Any = None, **options: Any
    ) -> AsyncClient:
        settings: dict[str, Any] = {
            "cache_dir": tmp_path / "cache",
            "poll_interval": (0.05, 0.3),
            "retry_timeout": 20.0,
            **options,
        }
        urls = (sandbox or sb).urls
        return AsyncClient(api_keys=KEYS if keys is None else keys, base_urls=urls, **settings)

    return make


@pytest.fixture
async def client(sandbox_client: Callable[..., Any]) -> AsyncIterator[Any]:
    async with sandbox_client() as c:
        yield c


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """stamina's retries without their backoff, where the retrying is tested, not the wait."""
    import stamina

    with stamina.set_testing(True, attempts=100, cap=True):  # cap: the client's own attempts
        yield



class SessionSandboxSuite(ProtocolSuite):
    """The test kit's round trips (genwidgets.testing.ProtocolSuite) on the session's sandbox
    rather than on one of their own."""

    @pytest.fixture(scope="class")
    @classmethod
    def protocol_sandbox(cls, sandbox: Any) -> Iterator[Any]:
        yield sandbox  # the session's
