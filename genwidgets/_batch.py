"""Batch runs: thousands of requests from JSONL, checkpointed by the journal.

Every line is validated before anything is sent (bad lines are reported with their numbers).
Jobs are submitted with a bounded number in flight, followed to the end, downloaded as each
finishes, and written to a results manifest (JSONL). The journal is the checkpoint: re-running the
same batch after a crash replays what succeeded, re-attaches what was submitted and still runs,
and submits only the rest.

Before anything is sent the batch is planned (`AsyncClient.plan`): a run that cannot fit the
session's caps fails with `SpendCapExceeded`, and one of more than `confirm_above` paid tasks
(default 20; `local` and replayed lines are free) needs `yes=True`, `--yes` or an answer at the
CLI prompt. Tasks run under the providers' rate and concurrency budgets (`_budget`); the
progress bar counts what is waiting for a slot.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ._client import AsyncClient, get_client
from ._cost import CostPlan
from ._exceptions import ConfirmationRequired, GenError, InvalidParams
from ._models import Status, Task
from ._runner import LoopRunner

__all__ = ["abatch", "batch", "read_jobs", "summarize"]

#: Called with the plan when confirmation is needed; True submits. The CLI's prompt is one.
Confirm = Callable[[CostPlan], bool]


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


def _request(row: Mapping[str, Any], model: str | None) -> tuple[str, dict[str, Any]]:
    params = dict(row.get("params") or {})
    params.update({k: v for k, v in row.items() if k not in ("model", "params")})
    name = row.get("model") or model
    if not isinstance(name, str) or not name:
        raise InvalidParams("no model: give one per line or for the whole batch")
    return name, params


async def abatch(
    model: str | None,
    rows: Iterable[Mapping[str, Any]] | Iterable[tuple[int, Mapping[str, Any]]],
    *,
    out: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    client: AsyncClient | None = None,
    max_in_flight: int = 32,
    progress: bool = True,
    yes: bool = False,
    confirm: Confirm | None = None,
) -> list[dict[str, Any]]:
    """Run every row (`{"prompt": ..., "params": {...}, "model": ...}`) and return the manifest.

    More than `confirm_above` paid tasks need `yes=True` (or `confirm(plan)` answering True);
    otherwise `ConfirmationRequired` is raised and nothing is sent.
    """
    client = client or get_client()
    numbered = [
        row if isinstance(row, tuple) else (index, row) for index, row in enumerate(rows, start=1)
    ]
    requests, errors = [], []
    for number, row in numbered:  # everything is checked before anything is sent
        try:
            name, params = _request(row, model)
            client.validate(name, **params)
            requests.append((number, row, name, params))
        except GenError as exc:
            errors.append(f"line {number}: {exc}")
    if errors:
        raise InvalidParams("Bad lines, nothing was submitted:\n  " + "\n  ".join(errors))
    plan = client.plan((name, params) for _, _, name, params in requests)
    client.cost_guard.check(plan)
    if plan.needs_confirmation and not yes and not (confirm is not None and confirm(plan)):
        raise ConfirmationRequired(
            f"This batch would submit {plan.describe()}, more than {plan.confirm_above}: "
            "nothing was sent. Pass yes=True (CLI: --yes) to go ahead, or raise "
            "GENWIDGETS_CONFIRM_ABOVE."
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(requests), unit="task", desc="batch")
    counts: Counter[str] = Counter()
    slots = asyncio.Semaphore(max_in_flight)
    results: list[dict[str, Any]] = []
    sink = open(manifest, "a", encoding="utf-8") if manifest else None  # noqa: SIM115

    waiting: set[int] = set()

    def show_counts() -> None:
        if bar is not None:
            shown = dict(counts)
            if waiting:
                shown["waiting"] = len(waiting)
            bar.set_postfix(shown, refresh=False)

    async def one(number: int, row: Mapping[str, Any], name: str, params: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"line": number, "input": row, "model": name}

        def on_wait(_message: str) -> None:
            waiting.add(number)
            show_counts()

        async with slots:
            try:
                try:
                    task = await client.submit(name, on_wait=on_wait, **params)
                finally:
                    waiting.discard(number)
                entry["task_id"] = task.id
                task = await client.wait(task)
                if task.status is Status.SUCCEEDED:
                    task = await client.download(task, out)
                entry.update(_summary(task))
            except GenError as exc:
                entry.update(status="error", error=str(exc))
        counts[entry["status"]] += 1
        results.append(entry)
        if sink is not None:
            sink.write(json.dumps(entry, default=str) + "\n")
            sink.flush()
        if bar is not None:
            show_counts()
            bar.update(1)

    jobs = [asyncio.ensure_future(one(*request)) for request in requests]
    try:
        await asyncio.gather(*jobs)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Stop submitting; cancel what runs where the provider can (the next run submits those
        # again; the rest are re-attached from the journal).
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await asyncio.shield(client.cancel_all())
        raise
    finally:
        if bar is not None:
            bar.close()
        if sink is not None:
            sink.close()
    if bar is not None:
        print(summarize(results, client.cost_guard.currency))
    return sorted(results, key=lambda entry: entry["line"])


def summarize(results: Iterable[Mapping[str, Any]], currency: str = "$") -> str:
    """'28 succeeded, 2 failed; cost $0.56 (reported for 28 of 30 paid tasks)'."""
    rows = list(results)
    counts = Counter(str(entry["status"]) for entry in rows)
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing run"
    paid = [e for e in rows if not str(e.get("model", "")).startswith("local:")]
    paid = [e for e in paid if not e.get("replayed")]
    if paid:
        reported = [float(e["cost"]) for e in paid if e.get("cost") is not None]
        if reported:
            text += f"; cost {currency}{sum(reported):,.4g} (reported for {len(reported)} of"
            text += f" {len(paid)}"
            text += " paid tasks)"
        else:
            text += f"; cost not reported for {len(paid)} paid tasks"
    return text


def _summary(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": task.status.value,
        "replayed": task.replayed,
        "outputs": [str(o.path) if o.path else o.url for o in task.outputs],
        "sha256": [o.sha256 for o in task.outputs],
        "cost": task.cost,
        "error": task.error,
    }


def batch(
    model: str | None,
    rows: Iterable[Mapping[str, Any]],
    **options: Any,
) -> list[dict[str, Any]]:
    """Blocking `abatch`, for scripts and notebook cells."""
    return LoopRunner.shared().run(abatch(model, rows, **options))


def batch_file(path: str | os.PathLike[str], **options: Any) -> list[dict[str, Any]]:
    out = options.get("out")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    return batch(options.pop("model", None), read_jobs(path), **options)  # type: ignore[arg-type]
