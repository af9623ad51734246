"""A content-addressed file cache: outputs are stored under their sha256, never a server's name.

Result URLs expire, so the client downloads every output promptly and the widgets show the cached
file. Files are written to a temporary name in the same directory and renamed into place once
complete and hashed, so a crash never leaves a half-written file under a valid hash.

With a team object store (`_store`), the cache is its read-through copy: `fetch` brings a file the
journal knows by sha256 from the store once, checked against that sha256, and `find` serves it
locally from then on.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import tempfile
from pathlib import Path

import filetype

from . import _config
from ._exceptions import DownloadError, StoreError
from ._models import Output
from ._store import StoreSetting, open_store

__all__ = ["BlobWriter", "Cache", "default_cache_dir", "extension_for"]

log = logging.getLogger("genwidgets")

#: 4 GiB: big enough for long videos, small enough that a runaway response cannot fill a disk.
DEFAULT_MAX_BYTES = 4 * 1024**3
#: Leading bytes kept to tell the file type from its content (what `filetype` reads).
SNIFF_BYTES = 262

_PREFERRED_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "text/plain": ".txt",
    "application/json": ".json",
}


def default_cache_dir() -> Path:
    """`GENWIDGETS_CACHE_DIR`, else the platform's user cache directory (see `_config`)."""
    return _config.cache_dir()


def extension_for(content_type: str | None, head: bytes = b"") -> str:
    """A safe extension from the bytes themselves, else the content type; '.bin' when unknown."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return "." + kind.extension
    if content_type:
        ctype = content_type.split(";", 1)[0].strip().lower()
        ext = _PREFERRED_EXT.get(ctype) or mimetypes.guess_extension(ctype)
        if ext and ext[1:].isalnum():
            return ext
    return ".bin"


def sniff_content_type(head: bytes, fallback: str | None = None) -> str | None:
    kind = filetype.guess(head) if head else None
    return kind.mime if kind is not None else fallback


class BlobWriter:
    """Streams bytes into the cache, hashing and bounding them; `commit()` names the file."""

    def __init__(self, cache: Cache, content_type: str | None, max_bytes: int) -> None:
        self._cache = cache
        self._content_type = content_type
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self._head = b""
        self.size = 0
        cache.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=cache.root)
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            self.abort()
            raise DownloadError(
                f"Output is larger than the download bound of {self._max_bytes:,} bytes; "
                "raise max_download_bytes to accept it"
            )
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> tuple[Path, str, str | None]:
        """Move the file into place; returns (path, sha256, sniffed content type)."""
        self._file.close()
        digest = self._hash.hexdigest()
        ext = extension_for(self._content_type, self._head)
        final = self._cache.path_for(digest, ext)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        return final, digest, sniff_content_type(self._head, self._content_type)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class Cache:
    """Files stored as `<root>/<sha[:2]>/<sha><ext>`; `store` is the team's object store, if any
    (`GENWIDGETS_STORE` unless given; False for none)."""

    def __init__(self, root: Path | str | None = None, store: StoreSetting = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.store = open_store(store)

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{ext}"

    def writer(
        self, content_type: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> BlobWriter:
        return BlobWriter(self, content_type, max_bytes)

    def put(self, data: bytes, content_type: str | None = None) -> tuple[Path, str, str | None]:
        writer = self.writer(content_type, max_bytes=max(len(data), 1))
        writer.write(data)
        return writer.commit()

    def find(self, sha256: str) -> Path | None:
        folder = self.root / sha256[:2]
        if not folder.is_dir():
            return None
        return next(iter(sorted(folder.glob(f"{sha256}.*"))), None)

    def fetch(self, output: Output) -> Path | None:
        """The cached file of a recorded output: the local copy by sha256, else the store's,
        fetched once and checked against its sha256; None when neither has it. Blocks on the
        network when it fetches: call it off the event loop."""
        if output.sha256 is None:
            return None
        found = self.find(output.sha256)
        if found is not None or self.store is None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=self.root)
        os.close(fd)
        partial = Path(name)
        try:
            if not self.store.get(output.sha256, partial):
                if output.store_url:  # recorded as stored: deleted, or another store is set
                    log.warning("The store has no object %s, recorded at %s",
                                self.store.object_url(output.sha256), output.store_url)  # fmt: skip
                return None
            digest = hashlib.sha256()
            with partial.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != output.sha256:
                raise StoreError(
                    f"The object {self.store.object_url(output.sha256)} does not match its "
                    f"sha256 (it hashes to {digest.hexdigest()[:12]}...): not used"
                )
            final = self.path_for(output.sha256, _suffix(output))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
            return final
        finally:
            partial.unlink(missing_ok=True)


def _suffix(output: Output) -> str:
    """The extension the file had where it was recorded, else one from its content type."""
    recorded = Path(output.path).suffix if output.path else ""
    if recorded[1:].isalnum():
        return recorded
    return extension_for(output.content_type)
