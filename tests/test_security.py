"""Security: a sentinel key never leaks; server text and URLs are never trusted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Output, Status, Task
from genwidgets.journal import Journal

SENTINEL = "SENTINEL-KEY-7f3a9c1e-do-not-leak"
PROVIDERS = ("onerouter", "rixapi", "segmind", "netmind", "oxen")
MODELS = {
    "onerouter": "acme/text-to-image",
    "rixapi": "flux-pro",
    "segmind": "seedream-4.5",
    "netmind": "Qwen/Qwen-Image",
    "oxen": "flux-image",
}


def all_text_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


async def test_sentinel_key_in_no_repr_error_log_or_journal(
    sb: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sb.set_faults(error_rate=0.3, seed=5)
    keys = {p: SENTINEL for p in PROVIDERS}
    seen: list[str] = []
    async with AsyncClient(
        api_keys=keys,
        base_urls=sb.urls,
        cache_dir=tmp_path / "cache",
        journal=tmp_path / "journal.sqlite",
        poll_interval=(0.05, 0.3),
    ) as client:
        seen.append(repr(client))
        for provider in PROVIDERS:
            adapter = client.provider(provider)
            seen += [repr(adapter), str(vars(adapter).get("base_url"))]
            task = await client.run(f"{provider}:{MODELS[provider]}", prompt="keep it secret")
            seen += [repr(task), str(task), task.model_dump_json()]
            failed = await client.wait(
                await client.submit(f"{provider}:{MODELS[provider]}", prompt="x [fail]")
            )
            seen.append(str(failed.error))
            with pytest.raises(genwidgets.TaskFailed) as info:
                await client.run(f"{provider}:{MODELS[provider]}", prompt="y [fail]")
            seen += [str(info.value), repr(info.value)]
    seen += [r.getMessage() for r in caplog.records]
    assert not [s for s in seen if SENTINEL in s]
    assert SENTINEL.encode() not in all_text_under(tmp_path)


async def test_auth_errors_do_not_echo_the_key(sb: Any, tmp_path: Path) -> None:
    for provider in PROVIDERS:
        async with AsyncClient(
            api_keys={provider: "bad-key"}, base_urls=sb.urls, cache_dir=tmp_path, journal=False
        ) as client:
            with pytest.raises(genwidgets.AuthError) as info:
                await client.submit(f"{provider}:{MODELS[provider]}", prompt="x")
            assert "bad-key" not in str(info.value) and "bad-key" not in repr(info.value)


def test_cli_never_prints_the_key(sb: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({f"{p.upper()}_API_KEY": SENTINEL for p in PROVIDERS})
    env.update({f"GENWIDGETS_{p.upper()}_URL": url for p, url in sb.urls.items()})
    env["GENWIDGETS_JOURNAL"] = str(tmp_path / "journal.sqlite")
    env["GENWIDGETS_CACHE_DIR"] = str(tmp_path / "cache")
    outputs = []
    for args in (
        ["run", "segmind:seedream-4.5", "--prompt", "a rose", "--out", str(tmp_path / "out")],
        ["run", "oxen:flux-image", "--prompt", "fails [fail]", "--out", str(tmp_path / "out")],
        ["run", "netmind:no-such-model", "--prompt", "x"],
        ["models"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "genwidgets", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs.append(done.stdout + done.stderr)
    assert "succeeded" in outputs[0] and (tmp_path / "out").is_dir()
    assert "failed" in outputs[1]
    assert "error:" in outputs[2]
    assert not [o for o in outputs if SENTINEL in o]
    assert SENTINEL.encode() not in all_text_under(tmp_path)


@pytest.mark.parametrize(
    "url_of",
    [
        lambda path: f"file://{path}",
        lambda path: f"FILE://{path}",
        lambda path: f"file:{path}",
        lambda path: str(path),  # a bare local path, no scheme at all
    ],
    ids=["file", "FILE", "file-no-slashes", "bare-path"],
)
async def test_non_http_output_urls_are_refused(tmp_path: Path, url_of: Any) -> None:
    """A server that names a local file as an output gets a refusal, and the file's bytes end up
    nowhere: not in the cache under any name or extension, not in the error."""
    marker = b"PRIVATE-7c1d-must-stay-on-this-disk"
    secret = tmp_path / "home" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(marker)
    task = Task(
        id="t",
        provider="segmind",
        model="m",
        status=Status.SUCCEEDED,
        outputs=(Output(kind="image", url=url_of(secret)),),
    )
    refused: genwidgets.DownloadError | None = None
    async with AsyncClient(cache_dir=tmp_path / "cache", journal=False) as client:
        try:
            await client.download(task)
        except genwidgets.DownloadError as exc:
            refused = exc
    # The leak check first, so a client that fetched the file fails here whatever it raised.
    copies = [
        p for p in tmp_path.rglob("*") if p.is_file() and p != secret and marker in p.read_bytes()
    ]
    assert copies == []
    assert refused is not None and "not an http" in str(refused)
    assert marker.decode() not in str(refused) and marker.decode() not in repr(refused)


def test_sentinel_key_in_no_executed_notebook(sb: Any, tmp_path: Path) -> None:
    """Run every notebook with sentinel keys (providers pointed at the sandbox): the key is in no
    saved .ipynb (outputs, widget state) and in no file the run wrote."""
    import shutil

    import nbformat
    from nbclient import NotebookClient

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    work = tmp_path / "notebooks"
    shutil.copytree(notebooks, work)
    saved = dict(os.environ)
    os.environ.update({f"{p.upper()}_API_KEY": SENTINEL for p in PROVIDERS})
    os.environ.update({f"GENWIDGETS_{p.upper()}_URL": url for p, url in sb.urls.items()})
    os.environ.update(
        GENWIDGETS_JOURNAL=str(tmp_path / "journal.sqlite"),
        GENWIDGETS_CACHE_DIR=str(tmp_path / "cache"),
        GENWIDGETS_REPLAY="auto",
    )
    try:
        for path in sorted(work.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(work)}}).execute()
            nbformat.write(nb, path)
            assert SENTINEL not in path.read_text(), path.name
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert SENTINEL.encode() not in all_text_under(tmp_path)


def _journal_rows(url: str) -> str:
    """Every row of every table in the journal's PostgreSQL schema, as text."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema()"
        ).fetchall()
        assert {"journal_tasks", "journal_submits", "genwidgets_schema"} <= {t for (t,) in tables}
        return "\n".join(
            str(row) for (table,) in tables for row in conn.execute(f"SELECT * FROM {table}")
        )


async def test_postgres_password_in_no_repr_error_log_or_journal_row(
    sb: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, postgres: Any
) -> None:
    from tests.conftest import KEYS, pg_schema

    caplog.set_level(logging.DEBUG)
    password = postgres.password
    seen: list[str] = []
    with pg_schema(postgres) as url:
        async with AsyncClient(
            api_keys=KEYS,
            base_urls=sb.urls,
            cache_dir=tmp_path / "cache",
            journal=url,
            poll_interval=(0.05, 0.3),
        ) as client:
            journal = client.journal
            assert journal is not None
            seen += [repr(client), repr(journal), str(vars(journal))]
            seen += [repr(journal._shared.store), repr(journal._shared.notes)]
            task = await client.run("segmind:seedream-4.5", prompt="keep the database secret")
            seen += [repr(task), task.model_dump_json()]
            with pytest.raises(genwidgets.TaskFailed) as failed:
                await client.run("segmind:seedream-4.5", prompt="y [fail]")
            seen += [str(failed.value), repr(failed.value)]
            seen += [t.name for t in threading.enumerate()]
            postgres.stop()  # errors and log lines while the database is away
            try:
                with pytest.raises(genwidgets.ConfigError) as away:
                    await client.submit("segmind:seedream-4.5", prompt="during the outage")
                seen += ["".join(traceback.format_exception(away.value)), repr(away.value)]
            finally:
                postgres.start()
        seen.append(_journal_rows(url))
        with pytest.raises(genwidgets.ConfigError) as refused:  # a wrong password at start
            Journal(url.replace(password, "wrong-password"))
        seen += ["".join(traceback.format_exception(refused.value)), repr(refused.value)]
    seen += [r.getMessage() for r in caplog.records]
    seen += [logging.Formatter().format(r) for r in caplog.records]
    assert len(seen) > 10 and url.split("?")[0] not in "".join(seen)
    assert not [s for s in seen if password in s]
    assert password.encode() not in all_text_under(tmp_path)


def test_postgres_password_in_no_notebook_output(sb: Any, tmp_path: Path, postgres: Any) -> None:
    """A notebook whose journal is in PostgreSQL: the password is in no saved output, neither of
    a working run nor of the error an unreachable database gives at start."""
    import nbformat
    from nbclient import NotebookClient

    from tests.conftest import KEYS, pg_schema

    password = postgres.password
    cells = [
        "import genwidgets\nfrom genwidgets.journal import Journal\nJournal()",
        "client = genwidgets.Client()\ntask = client.run('segmind:seedream-4.5', prompt='nb')\n"
        "task, client.journal, client.journal._shared.store",
        "client.close()\nimport os, socket\nwith socket.socket() as s:\n"
        "    s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"  # nothing listens there
        f"Journal(os.environ['GENWIDGETS_JOURNAL'].replace(':{postgres.port}/', f':{{port}}/'))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    saved = dict(os.environ)
    with pg_schema(postgres) as url:
        os.environ.update({f"{p.upper()}_API_KEY": key for p, key in KEYS.items()})
        os.environ.update({f"GENWIDGETS_{p.upper()}_URL": u for p, u in sb.urls.items()})
        os.environ.update(GENWIDGETS_JOURNAL=url, GENWIDGETS_CACHE_DIR=str(tmp_path / "cache"))
        try:
            NotebookClient(nb, timeout=120, allow_errors=True).execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    text = nbformat.writes(nb)
    assert "PostgresStore postgresql://" in text and "succeeded" in text
    assert "Cannot connect to PostgreSQL" in text  # the error at start is in the outputs
    assert password not in text
