"""Outputs in the team's object store: a real S3 server (moto's, on loopback) and a shared folder.

A download is uploaded under its sha256 and recorded; a fresh cache on "another machine" (another
folder) replays from the store with zero provider calls, fetching each object once and checking
it; a large output goes through in bounded memory; a dead store is a clear error that keeps the
local copy; credentials show nowhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from genwidgets import AsyncClient, ConfigError, StoreError
from genwidgets._cache import Cache
from genwidgets._models import Output
from genwidgets._store import Store, open_store
from genwidgets.journal import Journal
from tests.conftest import KEYS

MODEL = "segmind:seedream-4.5"


@pytest.fixture
def bucket(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the session's S3 server, its AWS_* variables set; the store URL."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    name = f"team-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(name)
    return f"s3://{name}/outputs"


def s3_objects(s3: Any, url: str) -> dict[str, bytes]:
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    api = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                       aws_access_key_id=s3.key_id, aws_secret_access_key=s3.secret)  # fmt: skip
    listed = api.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"].rsplit("/", 1)[1]: api.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def make_client(sb: Any, root: Path, store: Any, **options: Any) -> AsyncClient:
    options.setdefault("journal", root.parent / "journal.sqlite")  # the team's shared journal
    options.setdefault("api_keys", KEYS)
    return AsyncClient(
        base_urls=sb.urls,
        cache_dir=root / "cache",
        poll_interval=(0.05, 0.3),
        store=store,
        **options,
    )


def provider_requests(sb: Any) -> int:
    return sum(sum(endpoints.values()) for endpoints in sb.stats()["requests"].values())


async def test_a_download_is_uploaded_by_sha256_and_recorded(
    sb: Any,
    s3: Any,
    bucket: str,
    journal_at: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    async with make_client(sb, tmp_path / "a", bucket, journal=journal_at(tmp_path)) as client:
        s3.requests(reset=True)
        task = await client.run(MODEL, prompt="a team rose", seed=7)
        assert s3.requests() == {"HEAD": 1, "PUT": 1}  # is it there? no: upload it
        assert client.cache.store is not None
        client.cache.store.put(task.outputs[0].path, task.outputs[0].sha256)
        assert s3.requests() == {"HEAD": 2, "PUT": 1}  # content-addressed: never sent twice
        journal = client.journal
        assert journal is not None
        journal.flush()
        recorded = journal.get(task.provider, task.id)
        rows = list(journal.provenance())
    output = task.outputs[0]
    assert output.store_url == f"{bucket}/{output.sha256}"
    assert s3_objects(s3, bucket) == {output.sha256: output.path.read_bytes()}
    assert recorded is not None and recorded.outputs[0].store_url == output.store_url
    assert [row["store_url"] for row in rows] == [output.store_url]
    # The store's credentials: in no journal row or repr; the secret in no log line at all
    # (botocore's own DEBUG lines carry the access key id, as every signed request does).
    written = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite*") if p.is_file())
    written += json.dumps([r for r in rows], default=str).encode()
    for secret in (s3.secret, s3.key_id):
        assert secret.encode() not in written
        assert secret not in repr(client.cache.store) and secret not in repr(task)
    assert s3.secret not in caplog.text


async def test_a_fresh_cache_replays_from_the_store_once_with_no_provider_call(
    sb: Any, s3: Any, bucket: str, journal_at: Any, tmp_path: Path
) -> None:
    shared = journal_at(tmp_path)  # the team's journal: one file, or one database
    async with make_client(sb, tmp_path / "a", bucket, journal=shared) as client:
        first = [await client.run(MODEL, prompt=f"shared {i}", seed=i) for i in range(3)]
    originals = [task.outputs[0].path.read_bytes() for task in first]
    shutil.rmtree(tmp_path / "a" / "cache")  # another machine: the journal's paths are not here
    before = provider_requests(sb)
    s3.requests(reset=True)
    async with make_client(sb, tmp_path / "b", bucket, journal=shared, api_keys={}) as other:
        again = [await other.run(MODEL, prompt=f"shared {i}", seed=i) for i in range(3)]
    assert provider_requests(sb) == before
    assert s3.requests().get("GET", 0) == 3  # one object each
    for one, two in zip(first, again, strict=True):
        assert two.replayed and two.id == one.id
        assert two.outputs[0].path.parent.parent == tmp_path / "b" / "cache"
    for one, two, data in zip(first, again, originals, strict=True):
        assert two.outputs[0].path.read_bytes() == data
        assert hashlib.sha256(data).hexdigest() == one.outputs[0].sha256 == two.outputs[0].sha256
    s3.requests(reset=True)
    async with make_client(sb, tmp_path / "b", bucket, journal=shared) as same_machine:
        await same_machine.run(MODEL, prompt="shared 0", seed=0)
    assert s3.requests().get("GET", 0) == 0  # served by the local copy from now on


async def test_a_cost_plan_counts_store_replays_as_free_and_fetches_nothing(
    sb: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    async with make_client(sb, tmp_path / "a", bucket) as client:
        await client.run(MODEL, prompt="planned", seed=1)
    shutil.rmtree(tmp_path / "a" / "cache")
    s3.requests(reset=True)
    async with make_client(sb, tmp_path / "b", bucket) as other:
        plan = other.plan([(MODEL, {"prompt": "planned", "seed": 1}), (MODEL, {"prompt": "new"})])
    assert (plan.paid, plan.free) == (1, 1)
    assert s3.requests() == {}  # a plan of a 100,000-line batch must not download its outputs
    assert list((tmp_path / "b").rglob("*.png")) == []


async def test_an_object_gone_from_the_store_is_run_again_and_said_so(
    sb: Any, s3: Any, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client(sb, tmp_path / "a", bucket) as client:
        task = await client.run(MODEL, prompt="deleted later", seed=2)
    name, _ = bucket.removeprefix("s3://").split("/", 1)
    api = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                       aws_access_key_id=s3.key_id, aws_secret_access_key=s3.secret)  # fmt: skip
    api.delete_object(Bucket=name, Key=f"outputs/{task.outputs[0].sha256}")
    shutil.rmtree(tmp_path / "a" / "cache")
    submits = sb.stats()["submits"]["segmind"]
    async with make_client(sb, tmp_path / "b", bucket) as other:
        again = await other.run(MODEL, prompt="deleted later", seed=2)
    assert not again.replayed and sb.stats()["submits"]["segmind"] == submits + 1
    assert f"The store has no object {bucket}/{task.outputs[0].sha256}" in caplog.text
    assert s3_objects(s3, bucket) == {again.outputs[0].sha256: again.outputs[0].path.read_bytes()}


async def test_an_object_that_does_not_match_its_sha256_is_refused(
    sb: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    async with make_client(sb, tmp_path / "a", bucket) as client:
        task = await client.run(MODEL, prompt="tampered", seed=1)
    name, _ = bucket.removeprefix("s3://").split("/", 1)
    api = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                       aws_access_key_id=s3.key_id, aws_secret_access_key=s3.secret)  # fmt: skip
    api.put_object(Bucket=name, Key=f"outputs/{task.outputs[0].sha256}", Body=b"not the image")
    shutil.rmtree(tmp_path / "a" / "cache")
    async with make_client(sb, tmp_path / "b", bucket) as other:
        with pytest.raises(StoreError, match="does not match its sha256"):
            await other.submit(MODEL, prompt="tampered", seed=1)
    assert list((tmp_path / "b" / "cache").rglob("*.*")) == []  # nothing half-taken


async def test_an_unreachable_store_is_a_clear_error_and_keeps_the_local_copy(
    sb: Any, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket_closed() as dead:
        monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
        async with make_client(sb, tmp_path / "a", bucket) as client:
            task = await client.submit(MODEL, prompt="store down", seed=3)
            task = await client.wait(task)
            with pytest.raises(StoreError) as caught:
                await client.download(task)
    message = str(caught.value)
    assert bucket in message and "kept in the local cache" in message
    assert s3.secret not in message and s3.secret not in repr(caught.value)
    journal = Journal(tmp_path / "journal.sqlite")
    kept = journal.get(task.provider, task.id)
    assert kept is not None and kept.outputs[0].path is not None
    assert kept.outputs[0].path.is_file() and kept.outputs[0].store_url is None
    downloads = sb.stats()["requests"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # the store is back
    async with make_client(sb, tmp_path / "a", bucket) as client:
        uploaded = await client.download(kept)
    assert sb.stats()["requests"] == downloads  # uploaded from the cache, not fetched again
    assert uploaded.outputs[0].store_url == f"{bucket}/{kept.outputs[0].sha256}"
    assert s3_objects(s3, bucket) == {kept.outputs[0].sha256: kept.outputs[0].path.read_bytes()}
    journal.close()


class socket_closed:
    """An http:// URL on a loopback port nothing listens on."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_shared_folder_is_a_store(sb: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    async with make_client(sb, tmp_path / "a", str(shared)) as client:
        first = await client.run(MODEL, prompt="on the share", seed=5)
    output = first.outputs[0]
    data = output.path.read_bytes()
    assert output.store_url == f"{shared.as_uri()}/{output.sha256}"
    assert [p.name for p in shared.iterdir()] == [output.sha256]  # no partial file left
    shutil.rmtree(tmp_path / "a" / "cache")
    before = provider_requests(sb)
    async with make_client(sb, tmp_path / "b", f"file://{shared}") as other:
        again = await other.run(MODEL, prompt="on the share", seed=5)
    assert provider_requests(sb) == before and again.replayed
    assert again.outputs[0].path.read_bytes() == data


@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_output(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    import tracemalloc

    size = 200 * 2**20
    cache = Cache(tmp_path / "a", store=bucket)
    writer = cache.writer(max_bytes=size)
    block = hashlib.sha256(b"seed").digest() * (2**20 // 32)
    for i in range(size // len(block)):
        writer.write(i.to_bytes(4, "big") + block[4:])
    path, digest, _ = writer.commit()
    fresh = Cache(tmp_path / "b", store=bucket)
    assert cache.store is not None and fresh.store is not None
    # Open both clients first: botocore's service model (~11 MB of JSON per client) is a fixed
    # cost, not what the size of an output must not change.
    assert not cache.store.has(digest) and not fresh.store.has(digest)
    tracemalloc.start()
    try:
        url = cache.store.put(path, digest)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fetched = fresh.fetch(Output(kind="video", sha256=digest, path=path))
        _, fetch_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert url == f"{bucket}/{digest}"
    assert fetched is not None and fetched.stat().st_size == size
    assert fetched.suffix == path.suffix
    # Parts of 8 MiB, two in flight: far below the 200 MiB file, whatever the libraries copy.
    assert upload_peak < 48 * 2**20, upload_peak
    assert fetch_peak < 8 * 2**20, fetch_peak


def test_credentials_are_refused_in_the_url_and_shown_nowhere(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="carries credentials") as caught:
        Store("s3://AKIDEXAMPLE:hunter2secret@bucket/prefix")
    assert "hunter2secret" not in str(caught.value)
    store = Store(bucket)
    assert s3.secret not in repr(store) and s3.key_id not in repr(store)
    assert store.object_url("a" * 64) == f"{bucket}/{'a' * 64}"


def test_a_missing_storage_package_or_unknown_protocol_fails_when_the_client_is_made(
    tmp_path: Path,
) -> None:
    for url, package in (("gs://bucket/p", "gcsfs"), ("az://container/p", "adlfs")):
        if importlib.util.find_spec(package) is not None:  # pragma: no cover - installed here
            continue
        with pytest.raises(ConfigError, match=f"pip install {package}"):
            AsyncClient(cache_dir=tmp_path, store=url)  # before anything is sent or paid
    with pytest.raises(ConfigError, match="unknown protocol 'nfs'"):
        AsyncClient(cache_dir=tmp_path, store="nfs://server/share")


def test_the_store_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENWIDGETS_STORE", "s3://from-env/prefix/")
    store = open_store(None)
    assert store is not None and store.url == "s3://from-env/prefix"
    assert AsyncClient(cache_dir=tmp_path).cache.store is not None
    assert AsyncClient(cache_dir=tmp_path, store=False).cache.store is None
    monkeypatch.setenv("GENWIDGETS_STORE", "off")
    assert open_store(None) is None


def test_a_version_2_journal_gains_the_store_column(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outputs (provider TEXT NOT NULL, id TEXT NOT NULL, idx INTEGER NOT NULL,"
        " kind TEXT NOT NULL, url TEXT, content_type TEXT, size INTEGER, sha256 TEXT, path TEXT,"
        " text TEXT, PRIMARY KEY (provider, id, idx)); PRAGMA user_version=2;"
    )
    db.close()
    from genwidgets._models import Status, Task

    stored = Output(kind="image", sha256="b" * 64, store_url="s3://x/y/" + "b" * 64)
    task = Task(id="t1", provider="segmind", model="m", status=Status.SUCCEEDED, outputs=(stored,))
    journal = Journal(path)
    journal.record(task)
    journal.flush()
    got = journal.get("segmind", "t1")
    journal.close()
    assert got is not None and got.outputs[0].store_url == "s3://x/y/" + "b" * 64
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert json.dumps(db.execute("SELECT store_url FROM outputs").fetchall())
    db.close()
