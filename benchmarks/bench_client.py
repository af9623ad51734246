"""Task-client benchmarks against the sandbox, each with a peer measured in the same run.

    .venv/bin/python benchmarks/bench_client.py throughput [--tasks 1000] [--peer-tasks 10]
    .venv/bin/python benchmarks/bench_client.py overhead [--calls 2000]
    .venv/bin/python benchmarks/bench_client.py rss [--megabytes 1024]
    .venv/bin/python benchmarks/bench_client.py waits [--images 8]
    .venv/bin/python benchmarks/bench_client.py --tiny      # all three, a few seconds (tests)

Each sets what it measures under, whatever the environment says (GENWIDGETS_* variables are
dropped): budgets off for throughput, overhead and rss (the client itself is measured, not
Segmind's 5 requests/min; with the default budget 2,000 overhead calls would take hours), the
default budgets for waits (that is what it measures), no journal unless the row says so, a
temporary cache directory.

throughput: N tasks with 0.5 s of server time each through genwidgets (all in flight at once) vs
  the providers' own sample code (Segmind's doc: submit, `time.sleep(2)` polling, fetch the
  result, download), which is strictly sequential: it is measured on --peer-tasks tasks and its
  per-task time extrapolated to N (stated in the output).
overhead: one status call through `AsyncClient.get` vs raw httpx on the same endpoint, same pool.
rss: peak RSS growth of a fresh process while genwidgets downloads a large output, vs
  `httpx.get(url).content` in another fresh process.
waits: N Segmind images (2 s each) submitted at once, then waited on one after another, with the
  DEFAULT budgets (what a user gets): how long after the later of (the server finished it, the
  caller began waiting on it) each `wait()` returns, vs Segmind's sample loop (sleep 2 s between
  status polls) on the same images; also how long the submits took under the budget. (The issue
  measured 25-47 s for four images under the old default budget.)
Each prints a table and a last line `RESULT {json}` whose "ratios" compare genwidgets with its peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import clean_env, parse_args

from genwidgets import AsyncClient
from genwidgets.sandbox import Sandbox

KEY = {"segmind": "bench-key"}
HEADERS = {"x-api-key": "bench-key"}
#: Sizes of `--tiny`: enough to run every code path and print every ratio, in a few seconds.
TINY = {
    "tasks": 20,
    "peer_tasks": 1,
    "calls": 200,
    "megabytes": 16,
    "images": 1,  # one submit: more would wait 12 s each on Segmind's default 5/min budget
    "image_seconds": 0.5,
}



def sample_code(base: str, prompt: str, folder: Path) -> None:
    """The provider's documented pattern, with httpx sync in place of requests."""
    rid = httpx.post(f"{base}/v2/seedream-4.5", headers=HEADERS, json={"prompt": prompt}).json()[
        "request_id"
    ]
    while True:
        status = httpx.get(f"{base}/v2/requests/{rid}/status", headers=HEADERS).json()
        if status["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(2)
    result = httpx.get(f"{base}/v2/requests/{rid}", headers=HEADERS).json()
    (folder / f"{rid}.png").write_bytes(httpx.get(result["images"][0]["url"]).content)


async def genwidgets_many(sb: Sandbox, n: int, folder: Path) -> float:
    async with AsyncClient(
        api_keys=KEY, base_urls=sb.urls, cache_dir=folder, journal=False, budgets=False
    ) as client:
        started = time.perf_counter()
        tasks = await asyncio.gather(
            *(client.submit("segmind:seedream-4.5", prompt=f"bench {i}") for i in range(n))
        )

        async def follow(task: Any) -> Any:
            return await client.download(await client.wait(task))

        done = await asyncio.gather(*(follow(t) for t in tasks))
        elapsed = time.perf_counter() - started
    assert all(t.status.value == "succeeded" and t.outputs[0].path for t in done)
    return elapsed


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    with Sandbox(task_seconds=0.5, queue_seconds=0.0) as sb, tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(genwidgets_many(sb, args.tasks, Path(tmp)))
        stats = sb.stats()
        requests = sum(stats["requests"]["segmind"].values())
        sb.reset()
        started = time.perf_counter()
        for i in range(args.peer_tasks):
            sample_code(sb.urls["segmind"], f"peer {i}", Path(tmp))
        peer_per_task = (time.perf_counter() - started) / args.peer_tasks
    peer_total = peer_per_task * args.tasks
    result = {
        "tasks": args.tasks,
        "genwidgets_s": round(ours, 2),
        "genwidgets_tasks_per_s": round(args.tasks / ours, 1),
        "genwidgets_requests_per_task": round(requests / args.tasks, 2),
        "peer_measured_tasks": args.peer_tasks,
        "peer_s_per_task": round(peer_per_task, 3),
        "peer_extrapolated_s": round(peer_total, 1),
        "peer_tasks_per_s": round(1 / peer_per_task, 3),
        "speedup": round(peer_total / ours, 1),
        "ratios": {"throughput_speedup_vs_sample_code": round(peer_total / ours, 2)},
    }
    print(f"{args.tasks} tasks, 0.5 s server time each (Segmind protocol on the sandbox)")
    print(
        f"  genwidgets      {ours:8.1f} s  {args.tasks / ours:7.1f} tasks/s  "
        f"{requests / args.tasks:.2f} requests/task (submit + polls + result + download)"
    )
    print(
        f"  sample code     {peer_total:8.1f} s  {1 / peer_per_task:7.3f} tasks/s  "
        f"(sequential: {args.peer_tasks} tasks measured, {peer_per_task:.2f} s each, x{args.tasks})"
    )
    print(f"  ratio           {peer_total / ours:.1f}x (target >= 20x)")
    return result


async def overhead_run(sb: Sandbox, calls: int, journal: bool, folder: Path) -> tuple[float, float]:
    async with AsyncClient(
        api_keys=KEY,
        base_urls=sb.urls,
        cache_dir=folder,
        journal=(folder / "j.sqlite") if journal else False,
        budgets=False,
    ) as client:
        task = await client.submit("segmind:seedream-4.5", prompt="stay running [slow]")
        url = task.provider_data["status_url"]
        raw = client._http  # the same pooled connections
        ours, theirs = [], []
        for _ in range(calls // 100):  # interleaved rounds cancel drift
            for _ in range(100):
                t = time.perf_counter()
                await client.get(task)
                ours.append(time.perf_counter() - t)
            for _ in range(100):
                t = time.perf_counter()
                (await raw.get(url, headers=HEADERS)).json()
                theirs.append(time.perf_counter() - t)
    return statistics.median(ours), statistics.median(theirs)


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    with Sandbox(task_seconds=3600, queue_seconds=0.0) as sb, tempfile.TemporaryDirectory() as tmp:
        ours, raw = asyncio.run(overhead_run(sb, args.calls, False, Path(tmp)))
        ours_j, raw_j = asyncio.run(overhead_run(sb, args.calls, True, Path(tmp)))
    result = {
        "calls": args.calls,
        "genwidgets_p50_ms": round(ours * 1000, 3),
        "httpx_p50_ms": round(raw * 1000, 3),
        "ratio": round(ours / raw, 2),
        "ratio_with_journal": round(ours_j / raw_j, 2),
        "ratios": {
            "status_call_vs_raw_httpx": round(ours / raw, 3),
            "status_call_with_journal_vs_raw_httpx": round(ours_j / raw_j, 3),
        },
    }
    print(
        f"status call, median of {args.calls}: genwidgets {ours * 1000:.3f} ms, raw httpx "
        f"{raw * 1000:.3f} ms, ratio {ours / raw:.2f}x (target <= 1.2x); "
        f"with the journal on: {ours_j / raw_j:.2f}x"
    )
    return result


def _late(finished: float | None, asked: float) -> float:
    """How long after the later of (the server finished, the caller started waiting) it knew."""
    return time.time() - max(finished if finished is not None else float("nan"), asked)


async def waits_genwidgets(sb: Sandbox, n: int, folder: Path) -> tuple[list[float], float]:
    """Lateness of each `wait()`, one after another, and how long the n submits took."""
    late = []
    async with AsyncClient(api_keys=KEY, base_urls=sb.urls, cache_dir=folder, journal=False) as c:
        started = time.perf_counter()
        tasks = await asyncio.gather(
            *(c.submit("segmind:seedream-4.5", prompt=f"wait {i}") for i in range(n))
        )
        submitting = time.perf_counter() - started
        for task in tasks:
            asked = time.time()
            await c.wait(task)
            late.append(_late(sb.finished_at("segmind", task.id), asked))
    return late, submitting


def waits_peer(sb: Sandbox, n: int) -> list[float]:
    """The same with Segmind's sample loop: submit all, then poll each every 2 s until done."""
    base, late = sb.urls["segmind"], []
    submit, status = f"{base}/v2/seedream-4.5", f"{base}/v2/requests/{{}}/status"
    rids = [
        httpx.post(submit, headers=HEADERS, json={"prompt": f"peer {i}"}).json()["request_id"]
        for i in range(n)
    ]
    for rid in rids:
        asked = time.time()
        while True:
            state = httpx.get(status.format(rid), headers=HEADERS).json()["status"]
            if state in ("COMPLETED", "FAILED"):
                break
            time.sleep(2)
        late.append(_late(sb.finished_at("segmind", rid), asked))
    return late


def waits(args: argparse.Namespace) -> dict[str, Any]:
    with (
        Sandbox(task_seconds=args.image_seconds, queue_seconds=0.0) as sb,
        tempfile.TemporaryDirectory() as tmp,
    ):
        ours, submitting = asyncio.run(waits_genwidgets(sb, args.images, Path(tmp)))
        peer = waits_peer(sb, args.images)
    p50, peer_p50 = statistics.median(ours), statistics.median(peer)
    mean, peer_mean = statistics.fmean(ours), statistics.fmean(peer)
    result = {
        "images": args.images,
        "image_seconds": args.image_seconds,
        "budgets": "default",
        "genwidgets_submits_s": round(submitting, 2),
        "genwidgets_late_s": [round(x, 2) for x in ours],
        "peer_late_s": [round(x, 2) for x in peer],
        "genwidgets_late_p50_s": round(p50, 2),
        "genwidgets_late_max_s": round(max(ours), 2),
        "peer_late_p50_s": round(peer_p50, 2),
        "peer_late_max_s": round(max(peer), 2),
        "genwidgets_late_mean_s": round(mean, 2),
        "peer_late_mean_s": round(peer_mean, 2),
        "ratios": {"waits_lateness_mean_vs_sample_loop": round(mean / max(peer_mean, 0.001), 2)},
    }
    print(
        f"{args.images} Segmind images ({args.image_seconds:g} s each), default budgets: the"
        f" submits took {submitting:.1f} s; waited on one after another, each was known done"
        f" {p50:.2f} s (p50), {max(ours):.2f} s (max) after the later of its finish and the wait"
        f" call; sample loop: {peer_p50:.2f} s (p50), {max(peer):.2f} s (max)"
    )
    return result


RSS_CHILD = """
import asyncio, json, resource, sys, time, httpx
from pathlib import Path
from genwidgets import AsyncClient, Output, Status, Task
url, folder, mode, size = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "genwidgets":
    async def go():
        task = Task(id="big", provider="segmind", model="m", status=Status.SUCCEEDED,
                    outputs=(Output(kind="video", url=url),))
        async with AsyncClient(cache_dir=folder, journal=False, budgets=False,
                               max_download_bytes=2 * size) as c:
            done = await c.download(task)
        return done.outputs[0].size
    got = asyncio.run(go())
else:
    body = httpx.get(url, timeout=600).content
    (folder / "naive.mp4").write_bytes(body)
    got = len(body)
elapsed = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": got, "growth_mb": (after - before) / 1024, "seconds": elapsed,
                  "peak_before_mb": before / 1024, "peak_after_mb": after / 1024}))
"""


def rss(args: argparse.Namespace) -> dict[str, Any]:
    size = args.megabytes * 1024 * 1024
    out: dict[str, Any] = {"megabytes": args.megabytes}
    with Sandbox() as sb:
        url = f"{sb.urls['segmind']}/files/big?bytes={size}"
        for mode in ("genwidgets", "naive"):
            with tempfile.TemporaryDirectory() as tmp:
                done = subprocess.run(
                    [sys.executable, "-c", RSS_CHILD, url, tmp, mode, str(size)],
                    capture_output=True,
                    text=True,
                    timeout=1200,
                    check=True,
                    env=clean_env(),
                )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            assert figures["bytes"] == size, figures
            out[f"{mode}_growth_mb"] = round(figures["growth_mb"], 1)
            out[f"{mode}_peak_mb"] = round(figures["peak_after_mb"], 1)
            out[f"{mode}_baseline_mb"] = round(figures["peak_before_mb"], 1)
            out[f"{mode}_mb_per_s"] = round(args.megabytes / figures["seconds"], 1)
    # Growth is measured in KB steps; a naive growth of 0 cannot happen for a download of size
    # > 0 that is held in memory, but guard the division anyway.
    growth = out["genwidgets_growth_mb"] / max(out["naive_growth_mb"], 0.1)
    out["ratios"] = {"rss_growth_vs_httpx_content": round(growth, 4)}
    print(
        f"downloading {args.megabytes} MB: genwidgets peak RSS growth "
        f"{out['genwidgets_growth_mb']} MB ({out['genwidgets_mb_per_s']} MB/s; target < 64 MB); "
        f"httpx .content: {out['naive_growth_mb']} MB ({out['naive_mb_per_s']} MB/s)"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "which",
        nargs="?",
        choices=("throughput", "overhead", "rss", "waits", "all"),
        default="all",
    )
    parser.add_argument("--tasks", type=int, default=1000, help="throughput: tasks")
    parser.add_argument("--peer-tasks", type=int, default=10, help="throughput: sample-code tasks")
    parser.add_argument("--calls", type=int, default=2000, help="overhead: status calls")
    parser.add_argument("--megabytes", type=int, default=1024, help="rss: output size")
    parser.add_argument("--images", type=int, default=8, help="waits: images")
    parser.add_argument("--image-seconds", type=float, default=2.0, help="waits: server time")
    args = parse_args(parser, TINY)
    runs = {"throughput": throughput, "overhead": overhead, "rss": rss, "waits": waits}
    chosen = list(runs) if args.which == "all" else [args.which]
    results = {name: runs[name](args) for name in chosen}
    result = results[chosen[0]] if len(chosen) == 1 else dict(results)
    if len(chosen) > 1:
        result["ratios"] = {k: v for r in results.values() for k, v in r["ratios"].items()}
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
