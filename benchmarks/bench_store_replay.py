"""Replay from the team's object store on a fresh machine: re-showing a 50-output notebook.

    .venv/bin/python benchmarks/bench_store_replay.py [--outputs 50] [--task-seconds 2]
        [--io-objects 500]
    .venv/bin/python benchmarks/bench_store_replay.py --tiny    # 6 outputs, a few seconds

What is measured: what a colleague pays to re-show your notebook. A sandbox (`python -m
genwidgets.sandbox`, its own process) serves the providers; an S3-compatible server (moto's, its
own process, `genwidgets.sandbox.s3.LocalS3`) is the team's bucket. The "notebook" is 50 requests
(alternately a Segmind image and a OneRouter video, distinct prompts), run concurrently with
`asyncio.gather(client.run(...))`, each client an `AsyncClient(budgets=False,
journal=<shared sqlite>, store="s3://team/outputs", cache_dir=<its own>)`:

1. first run (machine A): submits, waits, downloads, uploads each output to the store;
2. fresh machine (B): A's cache removed, a new client with an empty cache and the same journal
   and store: every request is answered from the journal, its file fetched from the store once;
3. same machine again (B, warm): served from B's cache, no request anywhere.

Figures per phase: wall time, requests to the providers (sandbox counters) and to the store
(the S3 server's counters, by method), and bytes of outputs. Then the store alone (`throughput`):
500 objects of 64 KiB uploaded and fetched by one client from 6 threads, objects per second
(moto's in-memory server on this machine, not S3's service limits). The peer is the first run of the
same benchmark: without the store, a fresh machine would have to run it all again at the
providers. Ratios: first-run time over each replay's time, and the provider requests saved per
output (the first run's; the replay makes none). Prints a table and a last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import KEY, SandboxProcess, parse_args

from genwidgets import AsyncClient, Output, Task
from genwidgets._cache import Cache
from genwidgets.sandbox.s3 import LocalS3

MODELS = ("segmind:seedream-4.5", "onerouter:bytedance/seedance")
#: Sizes of `--tiny`: every code path and every ratio, in a few seconds (tests run it).
TINY = {"outputs": 6, "task_seconds": 0.3, "io_objects": 12}


def provider_requests(sb: SandboxProcess) -> int:
    return sum(sum(endpoints.values()) for endpoints in sb.stats()["requests"].values())


async def show(
    sb: SandboxProcess, root: Path, cache: Path, outputs: int, store: str
) -> tuple[float, list[Task]]:
    """Run (or replay) the notebook's requests at once; seconds and the tasks."""
    async with AsyncClient(
        api_keys={"segmind": KEY, "onerouter": KEY},
        base_urls=sb.urls,
        cache_dir=cache,
        journal=root / "team-journal.sqlite",
        store=store,
        budgets=False,
        poll_interval=(0.1, 1.0),
    ) as client:
        started = time.perf_counter()
        tasks = await asyncio.gather(
            *(
                client.run(MODELS[i % len(MODELS)], prompt=f"figure {i} of the paper", seed=i)
                for i in range(outputs)
            )
        )
        return time.perf_counter() - started, list(tasks)


async def phase(
    name: str, sb: SandboxProcess, s3: LocalS3, run: Any
) -> tuple[dict[str, Any], list[Task]]:
    before = provider_requests(sb)
    s3.requests(reset=True)  # from here, the store's counters are this phase's alone
    seconds, tasks = await run
    store = s3.requests()
    return {
        "phase": name,
        "seconds": round(seconds, 3),
        "provider_requests": provider_requests(sb) - before,
        "store_requests": dict(sorted(store.items())),
        "replayed": sum(t.replayed for t in tasks),
        "bytes": sum(o.path.stat().st_size for t in tasks for o in t.outputs if o.path),
    }, tasks


async def measure(args: argparse.Namespace, sb: SandboxProcess, s3: LocalS3) -> dict[str, Any]:
    store = "s3://team/outputs"
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        a, b = root / "a" / "cache", root / "b" / "cache"
        first, tasks = await phase(
            "first run (machine A)", sb, s3, show(sb, root, a, args.outputs, store)
        )
        originals = {t.outputs[0].sha256: t.outputs[0].path.read_bytes() for t in tasks}
        shutil.rmtree(a)  # machine B has none of A's files
        fresh, again = await phase(
            "fresh machine B (empty cache)", sb, s3, show(sb, root, b, args.outputs, store)
        )
        warm, _ = await phase(
            "machine B again (warm cache)", sb, s3, show(sb, root, b, args.outputs, store)
        )
        identical = all(
            t.outputs[0].path.read_bytes() == originals[t.outputs[0].sha256] for t in again
        )
        return {"phases": [first, fresh, warm], "byte_identical": identical}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def throughput(objects: int, size: int, threads: int) -> dict[str, Any]:
    """What one client moves through the store alone: `objects` distinct files of `size` bytes
    uploaded (`Store.put`, as after a download) and then fetched into an empty cache
    (`Cache.fetch`, sha256 checked), each from `threads` worker threads (the client's default
    executor has min(32, cores + 4))."""
    root = Path(tempfile.mkdtemp(prefix="bench-store-io-"))
    try:
        source, target = Cache(root / "a", store="s3://team/io"), Cache(root / "b", "s3://team/io")
        outputs = []
        for i in range(objects):
            path, digest, _ = source.put(i.to_bytes(8, "big") * (size // 8), "image/png")
            outputs.append(Output(kind="image", path=path, sha256=digest))
        assert source.store is not None and target.store is not None
        source.store.has(outputs[0].sha256 or "")  # open both clients before the clock starts
        target.store.has(outputs[0].sha256 or "")
        with ThreadPoolExecutor(threads) as pool:
            started = time.perf_counter()
            list(pool.map(lambda o: source.store.put(o.path, o.sha256), outputs))  # type: ignore[union-attr]
            uploaded = time.perf_counter() - started
            started = time.perf_counter()
            fetched = list(pool.map(target.fetch, outputs))
            downloaded = time.perf_counter() - started
        assert all(path is not None for path in fetched)
        return {
            "objects": objects,
            "object_bytes": size,
            "threads": threads,
            "uploads_per_s": round(objects / uploaded, 1),
            "fetches_per_s": round(objects / downloaded, 1),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    first, fresh, warm = result["phases"]
    print(f"{args.outputs} outputs, sandbox task time {args.task_seconds} s, budgets off")
    print(f"{'phase':32} {'seconds':>8} {'provider req':>12} {'replayed':>8}  store requests")
    for row in result["phases"]:
        print(
            f"{row['phase']:32} {row['seconds']:8.3f} {row['provider_requests']:12d} "
            f"{row['replayed']:8d}  {row['store_requests']}"
        )
    print(f"outputs: {first['bytes']:,} bytes; fresh machine byte-identical: "
          f"{result['byte_identical']}")  # fmt: skip
    io = result["store_alone"]
    print(f"store alone: {io['objects']} objects of {io['object_bytes'] // 1024} KiB, "
          f"{io['threads']} threads: {io['uploads_per_s']} uploads/s, "
          f"{io['fetches_per_s']} fetches/s (checked) from one client")  # fmt: skip
    return {
        "first_run_over_fresh_replay_time": round(first["seconds"] / fresh["seconds"], 2),
        "first_run_over_warm_replay_time": round(first["seconds"] / warm["seconds"], 2),
        # Requests a fresh machine saves per output (the replay's own are in its phase: 0).
        "provider_requests_saved_per_output": round(
            (first["provider_requests"] - fresh["provider_requests"]) / args.outputs, 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=int, default=50)
    parser.add_argument("--task-seconds", type=float, default=2.0)
    parser.add_argument("--io-objects", type=int, default=500)
    args = parse_args(parser, TINY)
    sandbox_args = ["--task-seconds", str(args.task_seconds), "--queue-seconds", "0.1"]
    with SandboxProcess(sandbox_args) as sb, LocalS3() as s3:
        os.environ.update(s3.env)  # the standard variables s3fs reads: endpoint and key
        s3.create_bucket("team")
        result = asyncio.run(measure(args, sb, s3))
        result["store_alone"] = throughput(args.io_objects, 64 * 1024, threads=6)
    ratios = report(result, args)
    fresh = result["phases"][1]
    ok = result["byte_identical"] and fresh["provider_requests"] == 0
    print("RESULT " + json.dumps({**result, "ratios": ratios, "ok": ok}))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
