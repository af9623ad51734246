"""Team replay: a notebook run in checkout A is re-shown in a fresh folder B, on "another machine"
(A's cache is gone), with the same journal and object store: no provider call, identical bytes.

Both runs execute the notebook in a real kernel (nbclient), configured only through the
environment a team would share (`GENWIDGETS_JOURNAL`, `GENWIDGETS_STORE`, the AWS_* variables).
The team's journal is, in turn, a SQLite file both folders point at and a PostgreSQL database
(`journal_at`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

MODELS = ["segmind:seedream-4.5", "rixapi:flux-pro", "netmind:Qwen/Qwen-Image"]
CELLS = [
    "import json\nimport genwidgets\nfrom genwidgets import run",
    "tasks = [run(m, prompt=f'team replay {i}', seed=i) for i, m in enumerate(MODELS)]",
    "print(json.dumps([{'sha256': t.outputs[0].sha256, 'path': str(t.outputs[0].path),\n"
    "                   'store_url': t.outputs[0].store_url, 'replayed': t.replayed}\n"
    "                  for t in tasks]))",
]


def notebook() -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"MODELS = {MODELS!r}")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in CELLS]
    return nb


def execute(folder: Path) -> list[dict[str, Any]]:
    """Run the notebook saved in `folder` in a real kernel; what its last cell printed."""
    path = folder / "team.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, path)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return list(json.loads(printed))


def provider_requests(sb: Any) -> int:
    return sum(sum(endpoints.values()) for endpoints in sb.stats()["requests"].values())


def test_a_notebook_replays_in_a_fresh_folder_from_the_journal_and_the_store(
    sb: Any, s3: Any, journal_at: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"team-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    team = {
        **s3.env,
        "GENWIDGETS_JOURNAL": str(journal_at(tmp_path / "team")),
        "GENWIDGETS_STORE": f"s3://{bucket}/outputs",
        "GENWIDGETS_REPLAY": "auto",
        **{f"GENWIDGETS_{p.upper()}_URL": url for p, url in sb.urls.items()},
        **{f"{p.upper()}_API_KEY": f"test-key-{p}" for p in ("segmind", "rixapi", "netmind")},
    }
    for name, value in team.items():
        monkeypatch.setenv(name, value)
    a, b = tmp_path / "checkout-a", tmp_path / "checkout-b"
    for folder in (a, b):
        folder.mkdir()
        nbformat.write(notebook(), folder / "team.ipynb")

    monkeypatch.setenv("GENWIDGETS_CACHE_DIR", str(a / "cache"))
    first = execute(a)
    originals = [Path(row["path"]).read_bytes() for row in first]
    shutil.rmtree(a / "cache")  # B is another machine: nothing of A's cache is there
    before, store_before = provider_requests(sb), s3.requests()

    monkeypatch.setenv("GENWIDGETS_CACHE_DIR", str(b / "cache"))
    second = execute(b)

    assert provider_requests(sb) == before  # 0 provider calls
    assert s3.requests().get("GET", 0) - store_before.get("GET", 0) == len(MODELS)
    assert not any(row["replayed"] for row in first)
    assert all(row["replayed"] for row in second)
    for one, two, data in zip(first, second, originals, strict=True):
        assert Path(two["path"]).is_relative_to(b / "cache")
        assert Path(two["path"]).read_bytes() == data  # byte-identical
        assert hashlib.sha256(data).hexdigest() == one["sha256"] == two["sha256"]
        assert one["store_url"] == two["store_url"] == f"s3://{bucket}/outputs/{one['sha256']}"
