"""The team's object store: every output under its sha256 in S3, GCS, Azure or a shared folder.

`GENWIDGETS_STORE` (or `AsyncClient(store=...)`, `configure(store=...)`) names it:
``s3://bucket/prefix``, ``gs://...``, ``az://...`` through fsspec (s3fs, gcsfs, adlfs), or a
folder path or ``file://`` URL that every machine mounts. Credentials and endpoint come from the
standard environment the storage library reads (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL` for S3-compatible servers, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_*`),
never from the URL: a URL carrying a user or password is refused, so the store URL that journal
rows, reprs and errors show cannot hold one.

Objects are named ``<store>/<sha256>``: the cache is already content-addressed, so an object is
uploaded once (a name the store holds with the same size is not sent again) and a fetched one is
checked against its name before the cache takes it (`Cache.fetch`). Transfers stream between the
local file and the store in bounded parts (a 1 GB video is never held in memory). They block, so
the client runs them in a worker thread. The local cache stays the working copy: a download lands
there first and is uploaded after it, and a store that cannot be reached raises `StoreError`
without touching the local file.
"""

from __future__ import annotations

import importlib.util
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from . import _config
from ._exceptions import ConfigError, StoreError

__all__ = ["Store", "StoreSetting", "open_store"]

#: A `Store`, a URL or folder, False for none, None for `GENWIDGETS_STORE`.
StoreSetting = Union["Store", str, "os.PathLike[str]", bool, None]

#: The package each storage protocol needs (fsspec names only a sentence).
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
            "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs"}  # fmt: skip
#: Multipart upload part size and parts in flight: memory per upload is about their product.
PART_BYTES, PARTS_IN_FLIGHT = 8 * 2**20, 2
#: S3 connection settings: fail fast on a dead endpoint, but wait for a slow large transfer.
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 60,
             "retries": {"max_attempts": 3, "mode": "standard"}}  # fmt: skip
#: Environment variables whose values are secrets: scrubbed from any message we pass on.
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY",
               "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET",
               "AZURE_STORAGE_CONNECTION_STRING")  # fmt: skip


def open_store(setting: StoreSetting) -> Store | None:
    """The store a client uses: `setting`, else `GENWIDGETS_STORE`; None for no store."""
    if isinstance(setting, Store):
        return setting
    if setting is False:
        return None
    value = _config.store_url() if setting in (None, True) else os.fspath(setting)  # type: ignore[arg-type]
    return Store(value) if value else None


def store_url(location: str) -> str:
    """The store's URL as it is shown and recorded: a folder as ``file://``, no trailing slash.
    Refuses a URL that carries credentials, without repeating them."""
    if "://" not in location:
        return Path(location).expanduser().resolve().as_uri()
    parts = urlsplit(location)
    if parts.username or parts.password or "@" in parts.netloc:
        shown = f"{parts.scheme}://***@{parts.netloc.rpartition('@')[2]}{parts.path}"
        raise ConfigError(
            f"The store URL {shown} carries credentials: put them in the environment the "
            "storage library reads (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ...), not the URL"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"The store URL {location!r} must have no ?query or #fragment")
    return location.rstrip("/")


class Store:
    """Outputs by sha256 under one URL (see the module docstring). Blocking; thread-safe."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = store_url(url)
        self.protocol = self.url.split("://", 1)[0].lower()
        _check_protocol(self.url, self.protocol)  # a wrong setting fails before anything is paid
        self._options = options
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"<Store {self.url!r}>"

    def object_url(self, sha256: str) -> str:
        """Where the object of this sha256 lives (what the journal records)."""
        return f"{self.url}/{sha256}"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (opened on first use: a missing package is a `ConfigError`)."""
        if self._fs is None:
            self._fs, self._root = _filesystem(self.url, self.protocol, self._options)
        return self._fs

    def _key(self, sha256: str) -> str:
        """The object's path inside the filesystem (a folder's path, ``bucket/prefix/sha``)."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise StoreError(f"Not a sha256: {sha256[:80]!r}")
        assert self.fs is not None  # opening it sets the root
        return f"{self._root.rstrip('/')}/{sha256}"

    @property
    def _local(self) -> bool:
        return self.protocol in ("file", "local")

    def put(self, path: Path, sha256: str) -> str:
        """Upload the cached file named `sha256` unless the store holds it; its object URL."""
        key, size = self._key(sha256), Path(path).stat().st_size
        with self._errors("upload to", sha256):
            if self._size(key) == size:
                return self.object_url(sha256)
            if self._local:  # a shared folder: never a half-written file under a valid name
                self.fs.makedirs(self._root, exist_ok=True)
                partial = f"{self._root}/.partial-{uuid.uuid4().hex}"
                try:
                    self.fs.put_file(str(path), partial)
                    os.replace(partial, key)
                finally:
                    Path(partial).unlink(missing_ok=True)
            else:  # an object store: a PUT is atomic; parts bound the memory
                self.fs.put_file(str(path), key, **self._transfer_options(put=True))
        return self.object_url(sha256)

    def get(self, sha256: str, into: Path) -> bool:
        """Stream the object into the file `into`; False when the store has no such object."""
        key = self._key(sha256)
        with self._errors("fetch from", sha256):
            try:
                self.fs.get_file(key, str(into), **self._transfer_options(put=False))
            except FileNotFoundError:
                return False
        return True

    def has(self, sha256: str) -> bool:
        with self._errors("look in", sha256):
            return self._size(self._key(sha256)) is not None

    def _size(self, key: str) -> int | None:
        """The object's size; None when there is none (S3: one HEAD, where `info` would list
        the prefix after a miss, looking for a directory)."""
        try:
            if self.protocol in ("s3", "s3a"):
                bucket, _, name = key.partition("/")
                head = self.fs.call_s3("head_object", Bucket=bucket, Key=name)
                return int(head["ContentLength"])
            return int(self.fs.info(key)["size"])
        except FileNotFoundError:
            return None

    def _transfer_options(self, *, put: bool) -> dict[str, Any]:
        if self.protocol not in ("s3", "s3a"):
            return {}
        if put:
            return {"chunksize": PART_BYTES, "max_concurrency": PARTS_IN_FLIGHT}
        return {"max_concurrency": 1}  # one streamed GET, read in 64 KiB pieces

    @contextmanager
    def _errors(self, what: str, sha256: str) -> Iterator[None]:
        """Any failure of the storage library as one `StoreError` naming the store, scrubbed."""
        try:
            yield
        except (ConfigError, StoreError):
            raise
        except Exception as exc:
            raise StoreError(
                f"Could not {what} the output store {self.url} (object {sha256[:12]}...): "
                f"{type(exc).__name__}: {scrub(str(exc))[:300]}"
            ) from None


def _missing(url: str, package: str) -> ConfigError:
    extra = " (or genwidgets[team])" if package in ("fsspec", "s3fs") else ""
    return ConfigError(f"The output store {url} needs the {package} package: pip install "
                       f"{package}{extra}")  # fmt: skip


def _check_protocol(url: str, protocol: str) -> None:
    """Refuse a store whose package is not installed or whose protocol fsspec does not know,
    without importing the (slow) storage library itself."""
    package = PACKAGES.get(protocol, "fsspec")
    for name in {"fsspec", package}:
        if importlib.util.find_spec(name) is None:
            raise _missing(url, name)
    from fsspec.registry import known_implementations, registry

    if protocol not in known_implementations and protocol not in registry:
        raise ConfigError(
            f"The output store {url} has an unknown protocol {protocol!r}: use s3://, gs://, "
            "az://, or a folder path"
        )


def _filesystem(url: str, protocol: str, options: dict[str, Any]) -> tuple[Any, str]:
    """fsspec's filesystem and root path for `url`; a missing package names what to install."""
    package = PACKAGES.get(protocol, "fsspec")
    try:
        import fsspec

        kwargs: dict[str, Any] = {"skip_instance_cache": True, **options}
        if package == "s3fs":
            kwargs.setdefault("use_listings_cache", False)
            config = dict(S3_CONFIG)
            if os.environ.get("AWS_MAX_ATTEMPTS"):  # the environment's own retry setting wins
                config.pop("retries")
            kwargs.setdefault("config_kwargs", config)
        return fsspec.core.url_to_fs(url, **kwargs)
    except ImportError:
        raise _missing(url, package) from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise ConfigError(f"The output store {url} is not usable: {scrub(str(exc))}") from None


def scrub(text: str) -> str:
    """`text` with the values of the storage libraries' secret variables replaced by ***."""
    for name in SECRET_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
