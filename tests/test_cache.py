import hashlib

import pytest

from genwidgets import DownloadError
from genwidgets._cache import Cache, extension_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_put_is_content_addressed_and_sniffs_extension(tmp_path) -> None:
    cache = Cache(tmp_path)
    path, digest, ctype = cache.put(PNG, "application/octet-stream")
    assert digest == hashlib.sha256(PNG).hexdigest()
    assert path == tmp_path / digest[:2] / f"{digest}.png"
    assert ctype == "image/png" and path.read_bytes() == PNG
    assert cache.find(digest) == path


def test_writer_bound_aborts_and_leaves_nothing(tmp_path) -> None:
    writer = Cache(tmp_path).writer("video/mp4", max_bytes=10)
    writer.write(b"12345")
    with pytest.raises(DownloadError, match="download bound"):
        writer.write(b"678901")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_extension_never_comes_from_a_server_name() -> None:
    assert extension_for("text/x-sh; name=../../x.sh") == ".sh"  # from the MIME type only
    assert extension_for("application/x-unknown-thing") == ".bin"
    assert extension_for(None, PNG) == ".png"
