"""2,000 OneRouter tasks against enforced limits (600 requests/min, 30 in flight), default budgets.

    .venv/bin/python benchmarks/bench_limits.py [--tasks 2000] [--task-seconds 3]
        [--max-in-flight 200] [--peer-cap 150]
    .venv/bin/python benchmarks/bench_limits.py --tiny   # 20 tasks of 0.5 s, a few seconds

What is measured: whether genwidgets' default budgets keep a batch under a provider's published
limits without giving throughput away. The sandbox (`python -m genwidgets.sandbox
--enforce-limits --task-seconds 3 --task-jitter 0.2`, its own process) answers OneRouter's own
429 past 600 requests in any 60 s window or a 31st task in flight, and counts those 429s.

Why 3 s tasks (+0.5 s queued, so 3.5 s on average): both limits bind. 600/min is 10 requests/s,
and a task costs at least 2 requests (a submit and one poll), so the account allows at most 5
tasks/s; holding 30 tasks in flight for 3.5 s would allow 8.6 tasks/s, so the request rate is the
ceiling: min(30 / 3.5, 10 / 2) = 5 tasks/s. The in-flight limit still matters: any client with
more than 30 tasks open (200 here) is refused at once, and a client that polls 30 tasks every
~2 s spends its whole request budget on polls. The ceiling a client could reach is 5 tasks/s; the
target is within 10 % of it (>= 4.5 tasks/s) with zero 429s.

genwidgets: a fresh subprocess runs `abatch` (max_in_flight=200, so the budget, not batch, holds
it back) with an `AsyncClient` given no `budgets=` and no GENWIDGETS_* variable in its
environment: the documented defaults (OneRouter 600/min, 30 in flight) apply.

Peer: the hand-written asyncio+httpx loop of bench_batch.py with the same 200 concurrency,
against a fresh enforcing sandbox process (clean windows): submit, poll every 3 s, download; a
429 is retried after `sleep(1)` as a typical script does. Its run is capped (`--peer-cap`
seconds, default 150, so the whole script stays near 10 minutes); if it has not finished, the
tasks done so far and its rate are reported and the rest extrapolated.

Prints a table and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import (
    SandboxProcess,
    endpoint_delta,
    limited_delta,
    parse_args,
    run_child,
)

RPM, IN_FLIGHT = 600, 30  # OneRouter's documented community limits (DOCUMENTED_LIMITS)
QUEUE_SECONDS = 0.5  # the sandbox CLI's default
#: Sizes of `--tiny`: every code path and every ratio, in a few seconds (tests run it).
TINY = {"tasks": 20, "task_seconds": 0.5, "peer_cap": 10.0}


def figures_for(
    name: str, n: int, child: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    requests = endpoint_delta(before, after, "onerouter")
    limited = limited_delta(before, after, "onerouter")
    refused = limited["rate"] + limited["in_flight"]
    # Result files are not API calls (not limited); a request refused for the rate does not
    # count in the provider's window, one refused for in-flight does (see sandbox State.admit).
    attempts = requests["submit"] + requests["poll"]
    accepted = attempts - refused
    ok = child["statuses"].get("succeeded", 0)
    minutes = child["seconds"] / 60
    return {
        "name": name,
        "succeeded": ok,
        "statuses": child["statuses"],
        "unfinished": child.get("unfinished", n - sum(child["statuses"].values())),
        "capped": child.get("capped", False),
        "seconds": round(child["seconds"], 1),
        "tasks_per_s": round(ok / child["seconds"], 3),
        "api_attempts": attempts,
        "api_accepted": accepted,
        "requests": dict(requests),
        "requests_per_task": round(accepted / ok, 3) if ok else None,
        "requests_per_min": round(accepted / minutes, 1),
        "attempts_per_min": round(attempts / minutes, 1),
        "server_peak_requests_per_min": after["peak_requests_per_minute"].get("onerouter"),
        "server_peak_in_flight": after["peak_in_flight"].get("onerouter"),
        "limited_429": limited,
        "limited_429_total": refused,
        "client_retries_429": child.get("retried_429"),
        "budget": child.get("budget"),
        "errors": child.get("errors", {}),
        "peak_rss_mb": round(child["rss_mb"], 1),
        "cpu_s": round(child["cpu_s"], 1),
    }


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.tasks
    mean_task = args.task_seconds + QUEUE_SECONDS
    in_flight_ceiling = IN_FLIGHT / mean_task
    request_ceiling = RPM / 60 / 2
    ceiling = min(in_flight_ceiling, request_ceiling)
    sandbox_args = [
        "--enforce-limits",
        "--task-seconds",
        str(args.task_seconds),
        "--task-jitter",
        str(args.task_jitter),
    ]
    print(
        f"{n} OneRouter tasks, {args.task_seconds:g} s +/- {args.task_jitter:.0%} (+{QUEUE_SECONDS}"
        f" s queued), sandbox enforcing {RPM} requests/min and {IN_FLIGHT} in flight; "
        f"max_in_flight {args.max_in_flight} on both sides",
        flush=True,
    )
    print(
        f"ceiling: min({IN_FLIGHT} in flight / {mean_task:g} s = {in_flight_ceiling:.2f}, "
        f"{RPM}/60 requests/s / 2 per task = {request_ceiling:.2f}) = {ceiling:.2f} tasks/s",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("genwidgets", "peer"):
            with SandboxProcess(sandbox_args, small_media=True) as sb:  # fresh windows each
                config: dict[str, Any] = {
                    "mode": name,
                    "base": sb.urls["onerouter"],
                    "tasks": n,
                    "concurrency": args.max_in_flight,
                    "tmp": str(Path(tmp) / name),
                    "tag": name,
                    "budgets": True,  # i.e. `budgets=` not passed: the defaults
                    "poll": 3.0,
                    "http_gate": 16,
                    "retry_429": True,
                    "cap": args.peer_cap if name == "peer" else None,
                }
                before = sb.stats()
                child = run_child(config, timeout=3600)
                after = sb.stats()
            rows[name] = figures_for(name, n, child, before, after)
            print(
                f"  {name}: {rows[name]['succeeded']} done in {child['seconds']:.1f} s", flush=True
            )

    ours, peer = rows["genwidgets"], rows["peer"]
    print()
    print(
        f"{'':<12}{'ok':>6}{'wall s':>8}{'tasks/s':>9}{'429 rate':>10}{'429 infl':>10}"
        f"{'req/task':>10}{'req/min':>9}{'tries/min':>10}{'peak/min':>10}{'peak infl':>11}"
        f"{'RSS MB':>8}"
    )
    for r in (ours, peer):
        print(
            f"{r['name']:<12}{r['succeeded']:>6}{r['seconds']:>8.1f}{r['tasks_per_s']:>9.3f}"
            f"{r['limited_429']['rate']:>10}{r['limited_429']['in_flight']:>10}"
            f"{_num(r['requests_per_task']):>10}{r['requests_per_min']:>9.1f}"
            f"{r['attempts_per_min']:>10.1f}"
            f"{r['server_peak_requests_per_min']!s:>10}{r['server_peak_in_flight']!s:>11}"
            f"{r['peak_rss_mb']:>8.1f}"
        )
    peer_note = ""
    if peer["capped"] or peer["succeeded"] < n:
        eta = n / peer["tasks_per_s"] if peer["tasks_per_s"] else float("inf")
        peer_note = (
            f"peer did NOT finish within its {args.peer_cap:g} s cap: {peer['succeeded']} of {n} "
            f"succeeded, {peer['unfinished']} still open; at its rate all {n} would take "
            f"~{eta:.0f} s"
        )
        print(peer_note)
    lost = {k: v for k, v in peer["statuses"].items() if k != "succeeded"}
    print(
        f"peer retried {peer['client_retries_429']} 429s (sleep 1 s each); tasks lost or "
        f"failed: {sum(lost.values())} {lost or ''}"
    )
    if ours["succeeded"] < n:
        print(f"genwidgets: statuses {ours['statuses']} errors {ours['errors']}")
    share = ours["tasks_per_s"] / ceiling
    met = {
        "zero_429": ours["limited_429_total"] == 0,
        "within_10pct_of_ceiling": share >= 0.9,
    }
    print()
    print(
        f"genwidgets 429s received: {ours['limited_429_total']} (target 0): "
        f"{'met' if met['zero_429'] else 'MISSED'}"
    )
    print(
        f"genwidgets throughput: {ours['tasks_per_s']:.3f} tasks/s = {share:.1%} of the account "
        f"ceiling {ceiling:.2f} tasks/s (target >= 90 %): "
        f"{'met' if met['within_10pct_of_ceiling'] else 'MISSED'}"
    )
    print(
        f"genwidgets requests/min: {ours['requests_per_min']:.0f} of {RPM} "
        f"({ours['requests_per_min'] / RPM:.1%}); {_num(ours['requests_per_task'])} requests per "
        f"task (2.000 at best)"
    )
    speedup = f"{ours['tasks_per_s'] / peer['tasks_per_s']:.2f}x" if peer["tasks_per_s"] else "n/a"
    print(
        f"vs peer: throughput {speedup}, 429s {ours['limited_429_total']} vs "
        f"{peer['limited_429_total']}"
    )
    return {
        "tasks": n,
        "task_seconds": args.task_seconds,
        "task_jitter": args.task_jitter,
        "max_in_flight": args.max_in_flight,
        "ceiling_tasks_per_s": round(ceiling, 3),
        "in_flight_ceiling_tasks_per_s": round(in_flight_ceiling, 3),
        "request_ceiling_tasks_per_s": round(request_ceiling, 3),
        "genwidgets": ours,
        "peer": peer,
        "genwidgets_share_of_ceiling": round(share, 3),
        "peer_note": peer_note,
        "targets_met": met,
        "ratios": {
            "throughput_vs_peer": round(ours["tasks_per_s"] / peer["tasks_per_s"], 3)
            if peer["tasks_per_s"]
            else float("inf"),
            "share_of_ceiling": round(share, 3),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--task-seconds", type=float, default=3.0)
    parser.add_argument("--task-jitter", type=float, default=0.2)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--peer-cap", type=float, default=150.0, help="seconds the peer may run")
    args = parse_args(parser, TINY)
    result = run(args)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
