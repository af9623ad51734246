"""Time from a deadline or an interrupt to the provider seeing the cancel (target < 1 s), on Oxen.

    .venv/bin/python benchmarks/bench_cancel.py [--deadlines 20] [--interrupts 10] [--peers 3]
        [--deadline 2] [--watch 10]
    .venv/bin/python benchmarks/bench_cancel.py --tiny   # 2 + 2 deadlines, 1 + 1 interrupts

What is measured: how long a job the user gave up on keeps running at the provider. The sandbox
(`python -m genwidgets.sandbox --task-seconds 2`, its own process) records every accepted
`DELETE /api/ai/queue/{id}` with its wall-clock time (`stats()["cancel_times"]`); prompts carry
"[slow]", so each job would run 20 s.

(a) deadline: in this process, with the default budgets (whatever `AsyncClient` defaults to for
    Oxen: what a user gets; `journal=False`, a temporary cache), `AsyncClient(...).run(
    "oxen:kling-video-v2-6-pro-text-to-video", prompt="... [slow]", timeout=2.0)`, sequentially;
    `DeadlineExceeded` is expected. Latency = server cancel time - (wall time the submit was
    answered + 2.0 s): the deadline counts from the submit's answer (`submit(deadline=...)`);
    the time is taken by a client observer that sees the first snapshot. Also shown: the same
    from the moment `run` was called, and (a') the same runs with `budgets=False`: the cancel
    spends from the same rate budget as the polls.
(b) interrupt: `python -m genwidgets run oxen:... --prompt "... [slow]"` as a subprocess
    (GENWIDGETS_OXEN_URL, OXEN_API_KEY, GENWIDGETS_JOURNAL=off, GENWIDGETS_CACHE_DIR=<temp>, and
    no other GENWIDGETS_* variable); once the sandbox has its submit
    (stats polled every 20 ms) and a further random 0.2-1.5 s (so the signal lands anywhere in the
    wait), SIGINT; latency = server cancel time - SIGINT wall time.
Peer: Oxen's sample loop (submit, then `time.sleep(3)` + poll, httpx sync), interrupted the same
    way: it has no cancel, so the server is watched for 10 s (`--watch`) after the SIGINT; no
    cancel in that window is reported as "never" (the job runs on, and bills, to its end). The
    ratio is then a lower bound: the watch window over genwidgets' interrupt p50.

Prints p50/p95/max per case and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import KEY, SandboxProcess, clean_env, parse_args

from genwidgets import AsyncClient, DeadlineExceeded, Task

MODEL = "kling-video-v2-6-pro-text-to-video"  # Oxen's catalogue video model (cancellable)
#: Sizes of `--tiny`: every code path and every ratio, in a few seconds (tests run it).
TINY = {"deadlines": 2, "interrupts": 1, "peers": 1, "deadline": 0.5, "watch": 2.0}

PEER_LOOP = """
import sys, time, httpx
base, key, prompt, model = sys.argv[1:5]
headers = {"Authorization": f"Bearer {key}"}
r = httpx.post(f"{base}/api/ai/queue", headers=headers, json={"model": model, "prompt": prompt})
gid = r.json()["generations"][0]["generation_id"]
print("submitted", gid, flush=True)
while True:
    time.sleep(3)
    status = httpx.get(f"{base}/api/ai/queue/{gid}", headers=headers).json()["status"]
    if status in ("succeeded", "failed", "cancelled"):
        break
print(status)
"""


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 (nearest rank) and max, in milliseconds."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000

    return {
        "p50_ms": round(rank(0.50), 1),
        "p95_ms": round(rank(0.95), 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def cancel_times(sb: SandboxProcess) -> dict[str, float]:
    return {tid: at for provider, tid, at in sb.stats()["cancel_times"] if provider == "oxen"}


# ------------------------------------------------------------------------------ (a) deadlines
async def deadlines(
    sb: SandboxProcess, runs: int, folder: Path, deadline: float, *, budgets: bool = True
) -> dict[str, Any]:
    answered: dict[str, float] = {}
    outcomes: list[dict[str, Any]] = []

    def first_seen(task: Task) -> None:
        answered.setdefault(task.id, time.time())

    options: dict[str, Any] = {} if budgets else {"budgets": False}
    async with AsyncClient(
        api_keys={"oxen": KEY},
        base_urls={"oxen": sb.urls["oxen"]},
        cache_dir=folder,
        journal=False,
        **options,
    ) as client:
        client.add_observer(first_seen)
        for i in range(runs):
            called = time.time()
            entry: dict[str, Any] = {"called": called}
            try:
                await client.run(f"oxen:{MODEL}", prompt=f"deadline {i} [slow]", timeout=deadline)
                entry["outcome"] = "returned"
            except DeadlineExceeded as exc:
                entry.update(outcome="DeadlineExceeded", task_id=exc.task_id)
            except Exception as exc:  # reported, not hidden
                entry.update(outcome=type(exc).__name__, task_id=getattr(exc, "task_id", None))
            entry["raised"] = time.time()
            outcomes.append(entry)
    seen = cancel_times(sb)
    latencies, from_call, raise_lag, missing = [], [], [], 0
    for entry in outcomes:
        tid = entry.get("task_id")
        if tid is None or tid not in seen or tid not in answered:
            missing += 1
            continue
        start = answered[tid] + deadline
        latencies.append(seen[tid] - start)
        from_call.append(seen[tid] - (entry["called"] + deadline))
        raise_lag.append(entry["raised"] - start)
    return {
        "runs": runs,
        "outcomes": _tally(e["outcome"] for e in outcomes),
        "no_cancel_seen": missing,
        "latency": percentiles(latencies),
        "latency_from_call": percentiles(from_call),
        "raise_after_deadline": percentiles(raise_lag),
        "raw_s": [round(x, 4) for x in latencies],
    }


def _tally(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# ------------------------------------------------------------------------------ (b) interrupts
def interrupted(
    sb: SandboxProcess, command: list[str], env: dict[str, str], rng: random.Random, watch: float
) -> dict[str, Any]:
    """Start `command`, SIGINT it once its submit reached the sandbox; when was it cancelled?"""
    submits = sb.stats()["submits"].get("oxen", 0)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while sb.stats()["submits"].get("oxen", 0) <= submits:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no submit seen: {proc.communicate()}")
                time.sleep(0.02)
            time.sleep(rng.uniform(0.2, 1.5))
            sent = time.time()
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    task_id = next(
        (line.split()[-1] for line in stdout.splitlines() if line.startswith("submitted ")), None
    )
    until = sent + watch
    seen: dict[str, float] = {}
    while True:
        seen = cancel_times(sb)
        if task_id in seen or time.time() > until:
            break
        time.sleep(0.1)
    at = seen.get(task_id) if task_id else None
    return {
        "task_id": task_id,
        "exit_code": proc.returncode,
        "latency": None if at is None else at - sent,
        "stderr_tail": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    deadline, watch = args.deadline, args.watch
    result: dict[str, Any] = {"deadline_s": deadline, "watch_s": watch, "model": f"oxen:{MODEL}"}
    with SandboxProcess(["--task-seconds", "2"]) as sb, tempfile.TemporaryDirectory() as tmp:
        print(f"(a) {args.deadlines} x run(timeout={deadline:g}) on 20 s Oxen jobs", flush=True)
        result["deadline"] = asyncio.run(deadlines(sb, args.deadlines, Path(tmp), deadline))
        print(f"(a') the same with budgets=False ({args.deadlines} runs)", flush=True)
        result["deadline_no_budget"] = asyncio.run(
            deadlines(sb, args.deadlines, Path(tmp), deadline, budgets=False)
        )

        env = clean_env(
            GENWIDGETS_OXEN_URL=sb.urls["oxen"],
            OXEN_API_KEY=KEY,
            GENWIDGETS_JOURNAL="off",
            GENWIDGETS_CACHE_DIR=str(Path(tmp) / "cli-cache"),
        )
        cli = [sys.executable, "-m", "genwidgets", "run", f"oxen:{MODEL}", "--prompt"]
        print(f"(b) {args.interrupts} x SIGINT to `genwidgets run`", flush=True)
        runs = [
            interrupted(sb, [*cli, f"interrupt {i} [slow]"], env, rng, watch=watch)
            for i in range(args.interrupts)
        ]
        lat = [r["latency"] for r in runs if r["latency"] is not None]
        result["interrupt"] = {
            "runs": len(runs),
            "no_cancel_seen": sum(r["latency"] is None for r in runs),
            "exit_codes": _tally(str(r["exit_code"]) for r in runs),
            "latency": percentiles(lat),
            "raw_s": [None if r["latency"] is None else round(r["latency"], 4) for r in runs],
            "stderr_examples": runs[0]["stderr_tail"] if runs else [],
        }

        print(f"peer: {args.peers} x SIGINT to Oxen's sample loop, watched {watch:g} s each")
        peer_cmd = [sys.executable, "-c", PEER_LOOP, sb.urls["oxen"], KEY]
        peers = [
            interrupted(sb, [*peer_cmd, f"peer {i} [slow]", MODEL], clean_env(), rng, watch=watch)
            for i in range(args.peers)
        ]
        result["peer"] = {
            "runs": len(peers),
            "cancels_seen_within_watch": sum(p["latency"] is not None for p in peers),
            "latency": "never"
            if all(p["latency"] is None for p in peers)
            else percentiles([p["latency"] for p in peers if p["latency"] is not None]),
        }

    d, i, p = result["deadline"], result["interrupt"], result["peer"]
    d0 = result["deadline_no_budget"]
    print()
    print(f"{'case':<34}{'n':>4}{'no cancel':>11}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for name, block in (
        ("deadline -> server cancel", d),
        ("  (counted from run() call)", {**d, "latency": d["latency_from_call"]}),
        ("  (deadline -> error raised)", {**d, "latency": d["raise_after_deadline"]}),
        ("deadline, budgets=False", d0),
        ("SIGINT -> server cancel (CLI)", i),
    ):
        lat = block["latency"]
        print(
            f"{name:<34}{block['runs']:>4}{block['no_cancel_seen']:>11}{lat['p50_ms']!s:>9}"
            f"{lat['p95_ms']!s:>9}{lat['max_ms']!s:>9}"
        )
    peer_text = "never" if p["latency"] == "never" else json.dumps(p["latency"])
    print(
        f"{'peer: SIGINT -> server cancel':<34}{p['runs']:>4}"
        f"{p['runs'] - p['cancels_seen_within_watch']:>11}   {peer_text}"
        f" (no cancel within {watch:g} s)"
    )
    print(f"deadline outcomes: {d['outcomes']}; CLI exit codes: {i['exit_codes']}")
    worst = max(
        (x for x in (d["latency"]["max_ms"], i["latency"]["max_ms"]) if x is not None), default=None
    )
    met = {
        "deadline_p95_under_1s": d["latency"]["p95_ms"] is not None
        and d["latency"]["p95_ms"] < 1000
        and d["no_cancel_seen"] == 0,
        "interrupt_p95_under_1s": i["latency"]["p95_ms"] is not None
        and i["latency"]["p95_ms"] < 1000
        and i["no_cancel_seen"] == 0,
    }
    print(
        f"target < 1 s: deadline {'met' if met['deadline_p95_under_1s'] else 'MISSED'}, "
        f"interrupt {'met' if met['interrupt_p95_under_1s'] else 'MISSED'} "
        f"(worst of both: {worst} ms)"
    )
    result["targets_met"] = met
    ours_p50 = i["latency"]["p50_ms"]
    if p["latency"] == "never":
        bound = round(watch * 1000 / ours_p50, 1) if ours_p50 else None
        result["ratios"] = {"interrupt_cancel_speedup_vs_sample_loop_at_least": bound}
    else:
        peer_p50 = p["latency"]["p50_ms"]
        speedup = round(peer_p50 / ours_p50, 1) if ours_p50 and peer_p50 is not None else None
        result["ratios"] = {"interrupt_cancel_speedup_vs_sample_loop": speedup}
    print(f"ratio (peer / genwidgets, same run): {result['ratios']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deadlines", type=int, default=20)
    parser.add_argument("--interrupts", type=int, default=10)
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=2.0, help="run(timeout=...) seconds")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds to watch for a cancel")
    args = parse_args(parser, TINY)
    result = run(args)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
