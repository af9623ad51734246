"""Batches over several worker processes and machines, sharing the lines through claims.

`genwidgets batch jobs.jsonl --workers N` plans the batch once (every line checked, the cost
confirmed), registers its lines in the claims store (`_claims`) and starts N worker processes;
the same command on other machines against the same PostgreSQL journal joins the same batch
(its identity is a hash of the lines) and splits the work. Each worker claims lines as it has
room for them, runs each through the journal-backed client (replayed, re-attached or submitted,
exactly as a one-process batch), and keeps its own leases alive with a heartbeat thread (beats
do not wait for a busy event loop). A worker that dies stops beating: once its leases expire,
the others take its lines over, and the journal re-attaches every task whose id was recorded;
a request that was on the wire at the kill raises `SubmitUncertain` and its line is reported,
never resent. Every worker stays until every line of the batch has ended, so a line abandoned
late is still taken over; then the command that started writes the one manifest, from the
claims (one line per job, whichever worker ran it).

Where the claims live: `--claims` or `GENWIDGETS_CLAIMS`, else the journal's own PostgreSQL
database (`GENWIDGETS_JOURNAL=postgresql://...`), else a SQLite file beside the SQLite journal
(`<journal>-claims`), which serves workers on one machine. The journal must be on: it is what
makes a take-over safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ._batch import Confirm, Job, _entry, _job, _Progress, _run_job, plan, read_jobs
from ._claims import _HOST as claims_host
from ._claims import (
    CLAIMED,
    OPEN,
    Claims,
    batch_identity,
    is_postgres,
    open_claims,
    single_host_error,
)
from ._client import AsyncClient, get_client
from ._config import journal_off
from ._exceptions import ConfigError, GenError
from ._models import Status, Task
from ._runner import LoopRunner
from .journal import default_journal_path, fingerprint
from .providers import parse_model_id

__all__ = ["LEASE_SECONDS", "Team", "claims_location", "run_team", "uses_claims"]

log = logging.getLogger("genwidgets.batch")
T = TypeVar("T")

#: How long a worker's claim on a line lasts without a heartbeat (beats every quarter of it).
LEASE_SECONDS = 30.0


def claims_location(explicit: str | None = None) -> str | None:
    """Where the claims live (see the module docstring); None when the journal is off."""
    value = explicit or os.environ.get("GENWIDGETS_CLAIMS")
    if value:
        return value
    journal = os.environ.get("GENWIDGETS_JOURNAL", "")
    if is_postgres(journal):
        return journal
    if journal_off():
        return None
    path = default_journal_path()
    return str(path.with_name(path.name + "-claims"))


def uses_claims(workers: int, explicit: str | None = None) -> bool:
    """Whether a batch runs through claims: more than one worker, claims named, or a PostgreSQL
    journal (a one-worker command on each of several machines splits the batch too)."""
    named = explicit or os.environ.get("GENWIDGETS_CLAIMS")
    return workers > 1 or bool(named) or is_postgres(os.environ.get("GENWIDGETS_JOURNAL", ""))


@dataclass(frozen=True)
class Team:
    """How a batch is shared: the claims store, worker count, lease, and this process's role."""

    location: str
    workers: int = 1
    lease: float = LEASE_SECONDS
    spawned: bool = False  # started by another command's --workers: no plan prompt, no manifest


class _Heartbeat(threading.Thread):
    """Keeps this worker's leases alive from a thread, and notices lines it has lost."""

    def __init__(self, claims: Claims, lease: float) -> None:
        super().__init__(name="genwidgets-claims-heartbeat", daemon=True)
        self.claims, self.lease = claims, lease
        self.running: set[int] = set()  # lines this worker runs (the loop adds and removes)
        self.lost: set[int] = set()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.lease / 4):
            expected = set(self.running)
            try:
                held = self.claims.heartbeat(self.lease)
            except Exception as exc:  # a database hiccup: the next beat tries again
                log.warning("batch: heartbeat failed (%s); retrying", exc)
                continue
            self.lost |= expected & self.running - held

    def stop(self) -> None:
        self._stop.set()


def _recorded(client: AsyncClient, job: Job) -> Task | None:
    """The line's request as the journal last saw it, when it must be followed or fetched rather
    than sent: still running (a dead worker's task, or one this process stopped following when
    it lost the line's lease: `submit` would send a request its own client follows again), or
    succeeded with files not in this machine's cache (not downloaded, or run elsewhere)."""
    journal = client.journal
    provider, name = parse_model_id(job.model)
    if journal is None or provider == "local":
        return None
    last = journal.latest(fingerprint(provider, name, client.validate(job.model, **job.params)))
    if last is None or last.replayed:
        return None
    if not last.done:
        return last
    if last.status is Status.SUCCEEDED and client._replay.cached_outputs(last) is None:
        return last
    return None


async def _line(client: AsyncClient, job: Job, out: str | os.PathLike[str] | None) -> dict:
    """One claimed line's entry. A request the journal knows as running is followed, and one
    that succeeded is fetched again: never paid twice; anything else goes through the client
    (replayed, re-attached or submitted, as in a one-process batch)."""
    last = _recorded(client, job)
    if last is None:
        return await _run_job(client, job, out, _Progress(0, enabled=False))
    entry: dict[str, Any] = {"line": job.line, "input": job.row, "model": job.model}
    try:
        task = last if last.done else await client.wait(last)
        if task.status is Status.SUCCEEDED:
            task = await client.download(task, out)
        entry.update(_entry(task))
    except GenError as exc:
        entry.update(
            task_id=last.id,
            status="error",
            error=f"{exc} (task {last.id}, recorded earlier: not submitted again)",
        )
    return entry


async def _call(claims: Claims, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A claims call off the event loop, retried while the database is away (a restart, a lost
    connection): the tasks already running keep running, and nothing is claimed meanwhile."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except Exception as exc:
            if not claims.retryable(exc):
                raise
            log.warning("batch: the claims store is unavailable (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)


async def work(
    client: AsyncClient,
    jobs: Mapping[int, Job],
    claims: Claims,
    *,
    out: str | os.PathLike[str] | None,
    max_in_flight: int,
    lease: float,
) -> int:
    """Claim and run lines until every line of the batch has ended; how many this one ran."""
    beat = _Heartbeat(claims, lease)
    beat.start()
    running: dict[int, asyncio.Task[None]] = {}
    ran = 0

    async def one(line: int) -> None:
        entry = await _line(client, jobs[line], out)
        entry["worker"] = claims.worker
        if not await _call(claims, claims.finish, line, entry):
            log.warning("batch: line %d was taken over by another worker", line)

    try:
        while True:
            room = max_in_flight - len(running)
            for line in await _call(claims, claims.claim, room, lease) if room > 0 else ():
                beat.lost.discard(line)  # lost once, claimed again (its lease expired again)
                if line not in running:  # (still running here: it goes on, ours again)
                    running[line] = asyncio.ensure_future(one(line))
                    beat.running.add(line)
            if not running:
                counts = await _call(claims, claims.counts)
                if not counts.get(OPEN) and not counts.get(CLAIMED):
                    return ran
                await asyncio.sleep(min(1.0, lease / 4))  # others' lines: end, or expire
                continue
            await asyncio.wait(running.values(), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for line, task in list(running.items()):
                if line in beat.lost and not task.done():
                    log.warning("batch: lost the lease on line %d; stopping it here", line)
                    task.cancel()
                if task.done():
                    del running[line]
                    beat.running.discard(line)
                    ran += 1
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
    except (asyncio.CancelledError, KeyboardInterrupt):
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        await asyncio.shield(client.cancel_all())
        raise
    finally:
        beat.stop()
        with contextlib.suppress(Exception):
            await _call(claims, claims.release)  # lines still held go back at once


def _spawn(path: str, team: Team, options: Mapping[str, Any]) -> list[subprocess.Popen[bytes]]:
    """Start `team.workers` worker processes on this batch (the claims' location in their
    environment, not on their command line: a URL may hold a password)."""
    command = [sys.executable, "-m", "genwidgets", "batch", path, "--worker-process",
               "--lease", str(team.lease), "--max-in-flight", str(options["max_in_flight"]),
               "--out", str(options["out"])]  # fmt: skip
    if options.get("model"):
        command += ["--model", str(options["model"])]
    env = dict(os.environ, GENWIDGETS_CLAIMS=team.location)
    return [
        subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(team.workers)
    ]


async def _watch(claims: Claims, total: int, enabled: bool, stop: asyncio.Event) -> None:
    """A progress bar over every worker's lines, read from the claims."""
    if not enabled:
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="task", desc="batch") as bar:
        while True:
            counts = await _call(claims, claims.counts)
            ended = total - counts.get(OPEN, 0) - counts.get(CLAIMED, 0)
            bar.set_postfix({k: v for k, v in sorted(counts.items()) if v}, refresh=False)
            bar.update(ended - bar.n)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def _run_team(
    path: str, team: Team, options: dict[str, Any], confirm: Confirm | None
) -> tuple[list[dict[str, Any]], int]:
    client = get_client()
    if client.journal is None:
        raise ConfigError(
            "A batch shared by several workers needs the journal (a line a dead worker leaves "
            "is re-attached through it): unset GENWIDGETS_JOURNAL=off"
        )
    rows, model = read_jobs(path), options.get("model")
    try:
        jobs = [_job(client, number, row, model) for number, row in rows]
    except GenError:
        plan(client, model, rows, yes=True)  # raises naming every bad line
        raise
    lines = [(job.line, _fingerprint(client, job)) for job in jobs]
    claims = open_claims(team.location, batch_identity(lines))
    try:
        claims.single_host = client.journal.path is not None  # a local file: one machine
        others = {h for h in await _call(claims, claims.hosts) if h != claims_host}
        if claims.single_host and others:
            raise ConfigError(single_host_error(sorted(others)[0]))
        done = await _call(claims, claims.succeeded)  # the cost is what is left to run
        plan(client, model, [(n, row) for n, row in rows if n not in done],
             yes=team.spawned or bool(options.get("yes")), confirm=confirm)  # fmt: skip
        if not team.spawned:
            await _call(claims, claims.register, lines, reopen_failed=True)
        stop = asyncio.Event()
        bar = asyncio.ensure_future(
            _watch(claims, len(jobs), bool(options.get("progress")) and not team.spawned, stop)
        )
        try:
            if team.workers > 1 and not team.spawned:
                procs = _spawn(path, team, options)
                await asyncio.gather(*(asyncio.to_thread(p.wait) for p in procs))
            else:
                await work(client, {job.line: job for job in jobs}, claims,
                           out=options.get("out"), max_in_flight=options["max_in_flight"],
                           lease=team.lease)  # fmt: skip
        finally:
            stop.set()
            await bar
        if team.spawned:
            return [], len(jobs)
        entries = await _call(claims, claims.entries)
        by_line = {job.line: job for job in jobs}
        return await _here(client, by_line, entries, options.get("out")), len(jobs)
    finally:
        claims.close()


def _elsewhere(entry: Mapping[str, Any], out: str | os.PathLike[str] | None) -> bool:
    """Whether a succeeded line's files are missing from this command's `--out` (they were
    downloaded on another machine, or into another folder)."""
    if entry.get("status") != "succeeded" or out is None:
        return False
    folder = Path(out).resolve()
    paths = [Path(p) for p in entry.get("outputs") or []]
    return any(not p.is_file() or p.resolve().parent != folder for p in paths)


async def _here(
    client: AsyncClient,
    jobs: Mapping[int, Job],
    entries: list[dict[str, Any]],
    out: str | os.PathLike[str] | None,
) -> list[dict[str, Any]]:
    """The manifest's entries with every succeeded line's files in this command's `--out`: a
    line run on another machine (or into another folder) is fetched here through the journal,
    the cache and the team's store, never submitted again (`_line`)."""
    missing = [i for i, entry in enumerate(entries) if _elsewhere(entry, out)]
    gate = asyncio.Semaphore(16)

    async def fetch(index: int) -> None:
        async with gate:
            entry = await _line(client, jobs[entries[index]["line"]], out)
        entry["worker"] = entries[index].get("worker")
        entries[index] = entry

    await asyncio.gather(*(fetch(i) for i in missing))
    return entries


def _fingerprint(client: AsyncClient, job: Job) -> str:
    provider, name = parse_model_id(job.model)
    return fingerprint(provider, name, client.validate(job.model, **job.params))


def run_team(
    path: str,
    team: Team,
    *,
    manifest: str | os.PathLike[str] | None = None,
    confirm: Confirm | None = None,
    **options: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The CLI's shared batch: (manifest entries by line, number of lines). The manifest file
    is written once at the end, one line per job that ended (none by a spawned worker)."""
    out = options.get("out")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    options.setdefault("max_in_flight", 32)
    entries, total = LoopRunner.shared().run(_run_team(path, team, options, confirm))
    if manifest is not None and not team.spawned:
        Path(manifest).parent.mkdir(parents=True, exist_ok=True)
        with open(manifest, "w", encoding="utf-8") as sink:
            sink.writelines(json.dumps(e, default=str) + "\n" for e in entries)
    return entries, total
