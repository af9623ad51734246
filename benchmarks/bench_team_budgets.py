"""Three worker processes on one OneRouter key: a budget shared in PostgreSQL vs per-process ones.

    .venv/bin/python benchmarks/bench_team_budgets.py [--workers 3] [--tasks 300]
        [--task-seconds 3] [--max-in-flight 100] [--cap 300]
    .venv/bin/python benchmarks/bench_team_budgets.py --tiny   # 3 x 8 tasks of 0.5 s, seconds

What is measured: whether workers that share one key stay within the account's limits together
when their budget is the team's (`GENWIDGETS_BUDGETS_BACKEND=postgresql://...`, the rows of
`genwidgets/_team_budget.py` in a real loopback PostgreSQL), and how much of the account's ceiling
they get, against the same workers with today's per-process budgets (each believes it has the
whole account) in the same run.

The sandbox (`python -m genwidgets.sandbox --enforce-limits`, its own process, a fresh one per
side so the windows start clean) answers OneRouter's own 429 past 600 requests in any 60 s window
or a 31st task in flight. Tasks take 3 s +/- 20 % (+0.5 s queued): as in bench_limits.py the
request rate is the ceiling, min(30 in flight / 3.5 s, 10 requests/s / 2 per task) = 5 tasks/s
for the account, whoever sends. Targets: 0 responses 429 and >= 90 % of that ceiling.

Each worker is a fresh process with the documented default budgets (no `budgets=`, no other
GENWIDGETS_* variable), the same key, a start time shared by all three, and submit + wait for
each of its `--tasks` prompts, at most `--max-in-flight` at once (so the budget, not the worker,
holds it back). The aggregate throughput is all succeeded tasks over the time from the common
start to the last task's end. A side that has not finished after `--cap` seconds is stopped and
reported with what it finished.

Prints a table and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import (
    KEY,
    MODEL,
    SandboxProcess,
    clean_env,
    endpoint_delta,
    limited_delta,
    parse_args,
)

HERE = Path(__file__).resolve()
RPM, IN_FLIGHT = 600, 30  # OneRouter's documented community limits (DOCUMENTED_LIMITS)
QUEUE_SECONDS = 0.5  # the sandbox CLI's default
#: Sizes of `--tiny`: every code path and every ratio, in seconds (tests run it).
TINY = {"tasks": 8, "task_seconds": 0.5, "cap": 30.0}


# ------------------------------------------------------------------------------ one worker
async def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from genwidgets import AsyncClient

    async with AsyncClient(
        api_keys={"onerouter": KEY},
        base_urls={"onerouter": config["base"]},
        journal=False,
        cache_dir=config["cache"],
    ) as client:
        await asyncio.sleep(max(0.0, config["start_at"] - time.time()))
        statuses: Counter[str] = Counter()
        ends: list[float] = []
        slots = asyncio.Semaphore(config["concurrency"])

        async def one(i: int) -> None:
            async with slots:
                task = await client.submit(f"onerouter:{MODEL}", prompt=f"{config['tag']} {i}")
                done = await client.wait(task)
            statuses[done.status.value] += 1
            ends.append(time.time())

        jobs = [asyncio.ensure_future(one(i)) for i in range(config["tasks"])]
        _, pending = await asyncio.wait(jobs, timeout=config["cap"])
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        errors = Counter(
            f"{type(j.exception()).__name__}: {str(j.exception())[:100]}"
            for j in jobs
            if j.done() and not j.cancelled() and j.exception() is not None
        )
        budget = client.budget("onerouter")
        return {
            "statuses": dict(statuses),
            "unfinished": len(pending),
            "last_end": max(ends, default=config["start_at"]),
            "errors": dict(errors.most_common(3)),
            "budget": budget.state() if budget is not None else None,
        }


def _start_worker(config: dict[str, Any], backend: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE), "--child", json.dumps(config)],
        env=clean_env(GENWIDGETS_BUDGETS_BACKEND=backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish_worker(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}):\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------ one side
def run_side(name: str, backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Three workers against a fresh enforcing sandbox; their aggregate figures."""
    sandbox_args = ["--enforce-limits", "--task-seconds", str(args.task_seconds),
                    "--task-jitter", str(args.task_jitter)]  # fmt: skip
    with SandboxProcess(sandbox_args, small_media=True) as sb:
        before = sb.stats()
        start_at = time.time() + 4.0 + args.workers  # after every worker's imports
        procs = [
            _start_worker(
                {"base": sb.urls["onerouter"], "tasks": args.tasks, "cap": args.cap,
                 "concurrency": args.max_in_flight, "tag": f"{name} w{i}",
                 "cache": str(tmp / f"{name}{i}"), "start_at": start_at},
                backend,
            )
            for i in range(args.workers)
        ]
        workers = [_finish_worker(p, args.cap + 120) for p in procs]
        after = sb.stats()
    requests = endpoint_delta(before, after, "onerouter")
    limited = limited_delta(before, after, "onerouter")
    refused = limited["rate"] + limited["in_flight"]
    attempts = requests["submit"] + requests["poll"]
    ok = sum(w["statuses"].get("succeeded", 0) for w in workers)
    seconds = max(w["last_end"] for w in workers) - start_at
    return {
        "name": name,
        "succeeded": ok,
        "unfinished": sum(w["unfinished"] for w in workers),
        "per_worker": [w["statuses"].get("succeeded", 0) for w in workers],
        "seconds": round(seconds, 1),
        "tasks_per_s": round(ok / seconds, 3) if seconds > 0 else 0.0,
        "limited_429": limited,
        "limited_429_total": refused,
        "api_attempts": attempts,
        "requests_per_min": round((attempts - refused) / seconds * 60, 1) if seconds else 0.0,
        "requests_per_task": round((attempts - refused) / ok, 3) if ok else None,
        "server_peak_requests_per_min": after["peak_requests_per_minute"].get("onerouter"),
        "server_peak_in_flight": after["peak_in_flight"].get("onerouter"),
        "errors": [w["errors"] for w in workers if w["errors"]],
        "budgets": [w["budget"] for w in workers],
    }


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['name']:<13}{r['succeeded']:>6}{r['unfinished']:>7}{r['seconds']:>8.1f}"
        f"{r['tasks_per_s']:>9.3f}{r['limited_429']['rate']:>10}{r['limited_429']['in_flight']:>10}"
        f"{r['requests_per_min']:>9.1f}{r['server_peak_requests_per_min']!s:>10}"
        f"{r['server_peak_in_flight']!s:>11}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from genwidgets.sandbox.postgres import LocalPostgres

    mean_task = args.task_seconds + QUEUE_SECONDS
    ceiling = min(IN_FLIGHT / mean_task, RPM / 60 / 2)
    n = args.workers * args.tasks
    print(
        f"{args.workers} workers x {args.tasks} OneRouter tasks on one key, {args.task_seconds:g} s"
        f" +/- {args.task_jitter:.0%} (+{QUEUE_SECONDS} s queued), sandbox enforcing {RPM}"
        f" requests/min and {IN_FLIGHT} in flight; account ceiling {ceiling:.2f} tasks/s",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres() as pg:
        for name, backend in (("team", pg.url), ("per-process", "local")):
            rows[name] = run_side(name, backend, args, Path(tmp))
            print(f"  {name}: {rows[name]['succeeded']} of {n} in {rows[name]['seconds']} s",
                  flush=True)
    team, alone = rows["team"], rows["per-process"]
    print()
    print(f"{'':<13}{'ok':>6}{'open':>7}{'wall s':>8}{'tasks/s':>9}{'429 rate':>10}"
          f"{'429 infl':>10}{'req/min':>9}{'peak/min':>10}{'peak infl':>11}")
    print(_line(team))
    print(_line(alone))
    share = team["tasks_per_s"] / ceiling
    met = {
        "zero_429": team["limited_429_total"] == 0,
        "within_10pct_of_ceiling": share >= 0.9 and team["succeeded"] == n,
    }
    print()
    print(f"team 429s received: {team['limited_429_total']} (target 0): "
          f"{'met' if met['zero_429'] else 'MISSED'}")
    print(
        f"team throughput: {team['tasks_per_s']:.3f} tasks/s = {share:.1%} of the account "
        f"ceiling {ceiling:.2f} tasks/s (target >= 90 %): "
        f"{'met' if met['within_10pct_of_ceiling'] else 'MISSED'}"
    )
    print(f"per-process budgets: {alone['limited_429_total']} responses 429, "
          f"{alone['tasks_per_s']:.3f} tasks/s, {alone['unfinished']} unfinished at the cap")
    for side in (team, alone):
        if side["errors"]:
            print(f"{side['name']} errors: {side['errors']}")
    ratio = team["tasks_per_s"] / alone["tasks_per_s"] if alone["tasks_per_s"] else float("inf")
    return {
        "workers": args.workers,
        "tasks_per_worker": args.tasks,
        "task_seconds": args.task_seconds,
        "ceiling_tasks_per_s": round(ceiling, 3),
        "team": team,
        "per_process": alone,
        "targets_met": met,
        "ratios": {
            "throughput_vs_per_process": round(ratio, 3),
            "share_of_ceiling": round(share, 3),
            "per_process_share_of_ceiling": round(alone["tasks_per_s"] / ceiling, 3),
        },
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_worker(json.loads(sys.argv[2])))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=300, help="tasks per worker")
    parser.add_argument("--task-seconds", type=float, default=3.0)
    parser.add_argument("--task-jitter", type=float, default=0.2)
    parser.add_argument("--max-in-flight", type=int, default=100, help="per worker")
    parser.add_argument("--cap", type=float, default=300.0, help="seconds a side may run")
    args = parse_args(parser, TINY)
    result = run(args)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
