"""Batch runs: thousands of requests from JSONL, checkpointed by the journal.

A batch is three steps, each a function:

- `plan`: every line is validated before anything is sent (bad lines are reported with their
  numbers), and the whole run is checked against the session's cost guard (`AsyncClient.plan`):
  one that cannot fit the caps fails with `SpendCapExceeded`, and one of more than
  `confirm_above` paid tasks (default 20; `local` and replayed lines are free) needs `yes=True`,
  `--yes` or an answer at the CLI prompt.
- `run`: jobs are submitted with a bounded number in flight, within the providers' rate and
  concurrency budgets (`_budget`), followed to the end and downloaded as each finishes; a tqdm
  bar counts them by status, and what is waiting for a slot.
- the manifest: one JSON line per job as it ends (`Manifest`), and `summarize` for the counts
  and cost (the CLI prints it; library code prints nothing).

The journal is the checkpoint: re-running the same batch after a crash replays what succeeded,
re-attaches what was submitted and still runs, and submits only the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._client import AsyncClient, get_client
from ._cost import CostPlan, cost_summary
from ._exceptions import ConfirmationRequired, GenError, InvalidParams
from ._models import Status, Task
from ._runner import LoopRunner

__all__ = ["Job", "Manifest", "abatch", "batch", "plan", "read_jobs", "run", "summarize"]

log = logging.getLogger("genwidgets.batch")

#: Called with the plan when confirmation is needed; True submits. The CLI's prompt is one.
Confirm = Callable[[CostPlan], bool]
Rows = Iterable[Mapping[str, Any]] | Iterable[tuple[int, Mapping[str, Any]]]


@dataclass(frozen=True)
class Job:
    """One checked line of a batch: its number, the object as given, the model and params."""

    line: int
    row: Mapping[str, Any]
    model: str
    params: dict[str, Any]


def read_jobs(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; `InvalidParams` lists every bad line."""
    rows, errors = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                errors.append(f"line {number}: not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                errors.append(f"line {number}: expected a JSON object")
                continue
            rows.append((number, row))
    if errors:
        raise InvalidParams("Bad lines in " + str(path) + ":\n  " + "\n  ".join(errors))
    return rows


def _job(client: AsyncClient, number: int, row: Mapping[str, Any], model: str | None) -> Job:
    params = dict(row.get("params") or {})
    params.update({k: v for k, v in row.items() if k not in ("model", "params")})
    name = row.get("model") or model
    if not isinstance(name, str) or not name:
        raise InvalidParams("no model: give one per line or for the whole batch")
    client.validate(name, **params)
    return Job(number, row, name, params)


# ---------------------------------------------------------------------------------- plan
def plan(
    client: AsyncClient,
    model: str | None,
    rows: Rows,
    *,
    yes: bool = False,
    confirm: Confirm | None = None,
) -> list[Job]:
    """Check every row and the cost of the whole run; nothing is sent. Raises `InvalidParams`
    (every bad line), `SpendCapExceeded`, or `ConfirmationRequired` (more than `confirm_above`
    paid tasks without `yes` or a `confirm(plan)` answering True)."""
    jobs, errors = [], []
    for index, item in enumerate(rows, start=1):
        number, row = item if isinstance(item, tuple) else (index, item)
        try:
            jobs.append(_job(client, number, row, model))
        except GenError as exc:
            errors.append(f"line {number}: {exc}")
    if errors:
        raise InvalidParams("Bad lines, nothing was submitted:\n  " + "\n  ".join(errors))
    cost = client.plan((job.model, job.params) for job in jobs)
    client.cost_guard.check(cost)
    if cost.needs_confirmation and not yes and not (confirm is not None and confirm(cost)):
        raise ConfirmationRequired(
            f"This batch would submit {cost.describe()}, more than {cost.confirm_above}: "
            "nothing was sent. Pass yes=True (CLI: --yes) to go ahead, or raise "
            "GENWIDGETS_CONFIRM_ABOVE."
        )
    return jobs


# ---------------------------------------------------------------------------------- run
class _Progress:
    """The tqdm bar: jobs done, counts per status, and how many wait for a budget slot."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.counts: Counter[str] = Counter()
        self.waiting: set[int] = set()
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="task", desc="batch")

    def show(self) -> None:
        if self._bar is not None:
            shown: dict[str, int] = dict(self.counts)
            if self.waiting:
                shown["waiting"] = len(self.waiting)
            self._bar.set_postfix(shown, refresh=False)

    def wait_notice(self, line: int) -> Callable[[str], None]:
        def on_wait(_message: str) -> None:
            self.waiting.add(line)
            self.show()

        return on_wait

    def ended(self, entry: Mapping[str, Any]) -> None:
        self.counts[str(entry["status"])] += 1
        if self._bar is not None:
            self.show()
            self._bar.update(1)

    def close(self, summary: str | None = None) -> None:
        if self._bar is not None:
            if summary is not None:
                self._bar.set_postfix_str(summary, refresh=False)
            self._bar.close()


async def _run_job(
    client: AsyncClient, job: Job, out: str | os.PathLike[str] | None, progress: _Progress
) -> dict[str, Any]:
    """Submit, follow and download one job; its manifest entry (errors become entries)."""
    entry: dict[str, Any] = {"line": job.line, "input": job.row, "model": job.model}
    try:
        try:
            task = await client.submit(
                job.model, on_wait=progress.wait_notice(job.line), **job.params
            )
        finally:
            progress.waiting.discard(job.line)
        entry["task_id"] = task.id
        task = await client.wait(task)
        if task.status is Status.SUCCEEDED:
            task = await client.download(task, out)
        entry.update(_entry(task))
    except GenError as exc:
        entry.update(status="error", error=str(exc))
    return entry


async def run(
    client: AsyncClient,
    jobs: list[Job],
    *,
    out: str | os.PathLike[str] | None = None,
    max_in_flight: int = 32,
    progress: bool = True,
    on_entry: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run planned jobs, at most `max_in_flight` at once; each entry goes to `on_entry` as its
    job ends. Cancelled (Ctrl-C): stop submitting and cancel what runs where the provider can
    (the next run submits those again; the rest are re-attached from the journal)."""
    bar = _Progress(len(jobs), progress)
    slots = asyncio.Semaphore(max_in_flight)
    results: list[dict[str, Any]] = []

    async def one(job: Job) -> None:
        async with slots:
            entry = await _run_job(client, job, out, bar)
        results.append(entry)
        if on_entry is not None:
            on_entry(entry)
        bar.ended(entry)

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    summary = None
    try:
        await asyncio.gather(*tasks)
        summary = summarize(results, client.cost_guard.currency)
        log.info("batch: %s", summary)
    except (asyncio.CancelledError, KeyboardInterrupt):
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.shield(client.cancel_all())
        raise
    finally:
        bar.close(summary)
    return sorted(results, key=lambda entry: entry["line"])


# ---------------------------------------------------------------------------------- manifest
class Manifest:
    """The results manifest: one JSON line per job, appended and flushed as each job ends, so
    a crash keeps every line written before it (a re-run appends; the last line of a job wins)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self._sink: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, entry: Mapping[str, Any]) -> None:
        if self._sink is not None:
            self._sink.write(json.dumps(entry, default=str) + "\n")
            self._sink.flush()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


def _entry(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": task.status.value,
        "replayed": task.replayed,
        "outputs": [str(o.path) if o.path else o.url for o in task.outputs],
        "sha256": [o.sha256 for o in task.outputs],
        "cost": task.cost,
        "error": task.error,
    }


def summarize(results: Iterable[Mapping[str, Any]], currency: str = "$") -> str:
    """'28 succeeded, 2 failed; cost $0.56 (reported for 28 of 30 paid tasks)'."""
    rows = list(results)
    counts = Counter(str(entry["status"]) for entry in rows)
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing run"
    # Only what the cost summary reads: provider, cost, replayed (as the gallery's tasks).
    spent = [
        Task.model_construct(
            provider=str(e.get("model", "")).partition(":")[0],
            cost=e.get("cost"),
            replayed=bool(e.get("replayed")),
        )
        for e in rows
    ]
    if any(task.provider != "local" and not task.replayed for task in spent):
        text += "; " + cost_summary(spent, currency)
    return text


# ---------------------------------------------------------------------------------- entry points
async def abatch(
    model: str | None,
    rows: Rows,
    *,
    out: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    client: AsyncClient | None = None,
    max_in_flight: int = 32,
    progress: bool = True,
    yes: bool = False,
    confirm: Confirm | None = None,
) -> list[dict[str, Any]]:
    """Run every row (`{"prompt": ..., "params": {...}, "model": ...}`) and return the manifest
    entries, by line: `plan`, then `run` writing each entry to the `manifest` file.

    More than `confirm_above` paid tasks need `yes=True` (or `confirm(plan)` answering True);
    otherwise `ConfirmationRequired` is raised and nothing is sent.
    """
    client = client or get_client()
    jobs = plan(client, model, rows, yes=yes, confirm=confirm)
    with closing(Manifest(manifest)) as sink:
        return await run(
            client,
            jobs,
            out=out,
            max_in_flight=max_in_flight,
            progress=progress,
            on_entry=sink.write,
        )


def batch(
    model: str | None,
    rows: Rows,
    **options: Any,
) -> list[dict[str, Any]]:
    """Blocking `abatch`, for scripts and notebook cells."""
    return LoopRunner.shared().run(abatch(model, rows, **options))


def batch_file(path: str | os.PathLike[str], **options: Any) -> list[dict[str, Any]]:
    """The CLI's batch: the jobs of a JSONL file, outputs (and manifest) into `out`."""
    out = options.get("out")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    return batch(options.pop("model", None), read_jobs(path), **options)
