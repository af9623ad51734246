"""Replay and resume through the journal: no paying twice, nothing lost across restarts. Each
test runs on both backends (`journal_at`, tests/conftest.py: a SQLite file, a PostgreSQL URL)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import genwidgets
from genwidgets import AsyncClient, Status
from genwidgets.journal import Journal
from tests.conftest import KEYS


def make_client(sb: Any, root: Path, **options: Any) -> AsyncClient:
    options.setdefault("journal", root / "journal.sqlite")
    options.setdefault("api_keys", KEYS)
    return AsyncClient(
        base_urls=sb.urls,
        cache_dir=root / "blobs",
        poll_interval=(0.05, 0.3),
        **options,
    )


At = Callable[[Path], Any]  # the journal_at fixture's type


def request_count(sb: Any) -> int:
    return sum(sum(endpoints.values()) for endpoints in sb.stats()["requests"].values())


async def test_a_recorded_success_is_replayed_with_zero_provider_calls(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal) as client:
        first = await client.run("segmind:seedream-4.5", prompt="a red rose", seed=123)
    before = request_count(sb)
    # A new kernel, same journal and cache:
    async with make_client(sb, tmp_path, journal=journal) as client:
        again = await client.run("segmind:seedream-4.5", prompt="a red rose", seed=123)
    assert request_count(sb) == before
    assert again.replayed and again.id == first.id
    assert again.outputs[0].sha256 == first.outputs[0].sha256
    assert again.outputs[0].path.read_bytes() == first.outputs[0].path.read_bytes()


async def test_fresh_submits_again_and_other_params_are_new_requests(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal) as client:
        first = await client.run("rixapi:flux-pro", prompt="a tulip", seed=1)
        fresh = await client.run("rixapi:flux-pro", prompt="a tulip", seed=1, fresh=True)
        other = await client.run("rixapi:flux-pro", prompt="a tulip", seed=2)
    assert len({first.id, fresh.id, other.id}) == 3
    assert not fresh.replayed and not other.replayed
    assert sb.stats()["submits"]["rixapi"] == 3


async def test_replay_off_always_submits(sb: Any, tmp_path: Path, journal_at: At) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal, replay="off") as client:
        await client.run("netmind:Qwen/Qwen-Image", prompt="twice")
        await client.run("netmind:Qwen/Qwen-Image", prompt="twice")
    assert sb.stats()["submits"]["netmind"] == 2


async def test_require_fails_clearly_before_any_request(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal) as client:
        await client.run("oxen:flux-image", prompt="recorded")
    before = request_count(sb)
    async with make_client(sb, tmp_path, journal=journal, replay="require", api_keys={}) as strict:
        replayed = await strict.run("oxen:flux-image", prompt="recorded")  # no key needed
        assert replayed.replayed
        with pytest.raises(genwidgets.ReplayMissing, match="no recorded success"):
            await strict.submit("oxen:flux-image", prompt="never recorded")
    assert request_count(sb) == before


async def test_replay_finds_files_by_sha_when_the_folder_moved(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    async with make_client(sb, tmp_path / "a", journal=journal_at(tmp_path / "a")) as client:
        first = await client.run("onerouter:acme/text-to-image", prompt="portable", seed=4)
    shutil.move(tmp_path / "a", tmp_path / "b")  # e.g. a clone of the repository elsewhere
    async with make_client(sb, tmp_path / "b", journal=journal_at(tmp_path / "b")) as client:
        again = await client.run("onerouter:acme/text-to-image", prompt="portable", seed=4)
    assert again.replayed
    assert again.outputs[0].path.is_relative_to(tmp_path / "b")
    assert again.outputs[0].sha256 == first.outputs[0].sha256


async def test_rerunning_a_cell_reattaches_instead_of_resubmitting(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal) as client:
        pending = await client.submit("segmind:seedream-4.5", prompt="still running [slow]")
    # The kernel died; the notebook is re-run: same request, new process.
    async with make_client(sb, tmp_path, journal=journal) as client:
        again = await client.submit("segmind:seedream-4.5", prompt="still running [slow]")
        assert again.id == pending.id
        done = await client.download(await client.wait(again, timeout=30))
    assert done.status is Status.SUCCEEDED and done.outputs[0].path.exists()
    assert sb.stats()["submits"]["segmind"] == 1


async def test_resume_follows_unfinished_tasks_to_the_end(
    sb: Any, tmp_path: Path, journal_at: At
) -> None:
    journal = journal_at(tmp_path)
    async with make_client(sb, tmp_path, journal=journal) as client:
        for i in range(3):
            await client.submit("netmind:Qwen/Qwen-Image", prompt=f"resume {i} [slow]")
    async with make_client(sb, tmp_path, journal=journal) as client:
        tasks = client.resume()
        assert len(tasks) == 3
        for task in tasks:
            await client.download(await client.wait(task, timeout=30))
    book = Journal(journal)
    assert book.unfinished() == []
    assert {t.status for t in book.tasks()} == {Status.SUCCEEDED}
    statuses = [s for s, _ in book.status_changes("netmind", tasks[0].id)]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
