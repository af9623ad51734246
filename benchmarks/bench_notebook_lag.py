"""Event-loop lag and widget traffic in a real kernel while many cards track tasks.

A kernel (jupyter_client) runs a 10 ms asyncio ticker and N live cards (`genwidgets.show`) on
sandboxed Segmind tasks of a few seconds each. We report the ticker's lag (p50/p99) and the
widget comm bytes per card-second seen on IOPub while the tasks run. The peer, in the same run
and the same kernel: the provider's own sample loop (submit, `time.sleep(2)` polling, fetch), run
in a cell for a few tasks while the same ticker runs.

The sandbox runs in its own process (`python -m genwidgets.sandbox`, as in bench_batch.py): a
real provider's work is not done in the user's kernel, and inside the kernel the sandbox's PNG
renders (~17 ms of CPU each) and HTTP servers would share the kernel's GIL and count as the
cards' lag (runs before 2026-12-01 did that).

The kernel gets no GENWIDGETS_* variable from the caller; the cell configures what is measured:
budgets off (the cards' own cost is measured, not Segmind's 5 requests/min, under which 1,000
submits take more than three hours), no journal, a temporary cache directory.

    .venv/bin/python benchmarks/bench_notebook_lag.py [--cards 1000] [--quick]
    .venv/bin/python benchmarks/bench_notebook_lag.py --tiny   # 5 cards, a few seconds (tests)

The last line is `RESULT {json}`; its "ratios" compare the peer's lag with the cards'.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import SandboxProcess, clean_env, parse_args

#: Sizes of `--tiny`: every code path and every ratio, in a few seconds (tests run it).
TINY = {"cards": 5, "task_seconds": 0.5, "peer_tasks": 1}

SETUP = """
import asyncio, statistics, time
import httpx
import genwidgets

urls = {urls!r}
client = genwidgets.configure(
    base_urls=urls, api_keys={{"segmind": "bench-key"}}, journal=False, budgets=False,
    cache_dir={cache_dir!r},
)
lags = []
stop = asyncio.Event()

last_tick = [time.monotonic()]

async def ticker():
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - t - 0.01)
        last_tick[0] = time.monotonic()

def watch_stalls(threshold=0.02, every=0.005):
    # --diagnose: while the ticker is late, sample what the kernel's main thread runs.
    import collections, sys, threading, traceback
    seen = collections.Counter()
    main = threading.main_thread().ident
    def sample():
        while not stop.is_set():
            time.sleep(every)
            if time.monotonic() - last_tick[0] < threshold:
                continue
            frame = sys._current_frames().get(main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            ours = [f for f in stack if "genwidgets" in f.filename]
            where = ours[-1] if ours else stack[-1]
            inner = stack[-1]
            seen[(f"{{where.filename.split('/')[-1]}}:{{where.lineno}} {{where.name}}",
                  f"{{inner.filename.split('/')[-1]}}:{{inner.lineno}} {{inner.name}}")] += 1
    threading.Thread(target=sample, daemon=True).start()
    return seen

def summary():
    ordered = sorted(lags)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
    return {{"ticks": len(ordered), "p50_ms": round(pick(0.5), 2), "p99_ms": round(pick(0.99), 2),
            "max_ms": round(ordered[-1] * 1000, 1)}}
"""

START_CARDS = """
lags.clear(); stop.clear()
tick = asyncio.get_event_loop().create_task(ticker())
stalls = watch_stalls() if {diagnose} else None
cards = [genwidgets.show("segmind:seedream-4.5", prompt=f"card {{i}}", seed=i) for i in range({n})]
"""

WAIT_CARDS = """
finals = await asyncio.gather(*(card.wait() for card in cards))
stop.set(); await tick
import json
print("CARDS", json.dumps({"succeeded": sum(t.status.value == "succeeded" for t in finals),
                          **summary()}))
if stalls is not None:
    print("STALLS (5 ms samples while the loop was >20 ms late: last genwidgets frame | innermost)")
    for (where, inner), n in stalls.most_common(15):
        print(f"  {n:5d}  {where:<45} | {inner}")
"""

PEER = """
lags.clear(); stop.clear()
tick = asyncio.get_event_loop().create_task(ticker())
await asyncio.sleep(0.2)
def sample_loop(prompt):
    base, headers = urls["segmind"], {{"x-api-key": "bench-key"}}
    rid = httpx.post(f"{{base}}/v2/seedream-4.5", headers=headers,
                     json={{"prompt": prompt}}).json()["request_id"]
    while True:
        status = httpx.get(f"{{base}}/v2/requests/{{rid}}/status", headers=headers).json()
        if status["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(2)
    result = httpx.get(f"{{base}}/v2/requests/{{rid}}", headers=headers).json()
    return httpx.get(result["images"][0]["url"]).content
for i in range({n}):
    sample_loop(f"peer {{i}}")
await asyncio.sleep(0.2)
stop.set(); await tick
print("PEER", json.dumps(summary()))
"""


def run_cell(kc: Any, code: str, timeout: float, on_iopub: Any = None) -> str:
    msg_id = kc.execute(code)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty as exc:
            raise TimeoutError(code[:80]) from exc
        if on_iopub is not None:
            on_iopub(msg)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"])[-3000:])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--task-seconds", type=float, default=5.0)
    parser.add_argument("--peer-tasks", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 cards, 1 peer task")
    parser.add_argument(
        "--diagnose", action="store_true", help="sample what blocks the loop during stalls"
    )
    args = parse_args(parser, TINY)
    if args.quick and not args.tiny:
        args.cards, args.peer_tasks = 100, 1
    sandbox_args = ["--task-seconds", str(args.task_seconds), "--queue-seconds", "0.5"]
    with SandboxProcess(sandbox_args) as sb, tempfile.TemporaryDirectory() as cache_dir:
        result = measure(args, sb.urls, cache_dir)
    print("RESULT " + json.dumps(result))
    return 0


def measure(args: argparse.Namespace, urls: dict[str, str], cache_dir: str) -> dict[str, Any]:
    """Run the cards and the peer in one fresh kernel; print the table, return the figures."""
    km, kc = start_new_kernel(kernel_name="python3", env=clean_env())
    traffic = {"open": 0, "updates": 0, "media": 0, "outputs": 0}
    window: dict[str, float] = {}

    def count(msg: dict[str, Any]) -> None:
        if "end" in window:
            return
        if msg["msg_type"] == "comm_open":  # widget creation, once per widget
            traffic["open"] += len(json.dumps(msg["content"]))
            traffic["media"] += sum(len(b) for b in msg["buffers"])
        elif msg["msg_type"] == "comm_msg":
            media = sum(len(b) for b in msg["buffers"])
            traffic["media"] += media  # the finished image/audio/video bytes, sent once
            traffic["updates"] += len(json.dumps(msg["content"]))
        elif msg["msg_type"] in ("display_data", "update_display_data"):
            # a finished card's static output (HTML with its media), not a widget message
            traffic["outputs"] += len(json.dumps(msg["content"]))

    try:
        run_cell(kc, SETUP.format(urls=urls, cache_dir=cache_dir), 60)
        window["start"] = time.monotonic()
        run_cell(kc, START_CARDS.format(n=args.cards, diagnose=args.diagnose), 600, count)
        cards_out = run_cell(kc, WAIT_CARDS, 1800, count)
        window["end"] = time.monotonic()
        peer_out = run_cell(kc, PEER.format(n=args.peer_tasks), 600)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    if "STALLS" in cards_out:
        print(cards_out[cards_out.index("STALLS") :].rstrip())
    cards = json.loads(cards_out.split("CARDS", 1)[1].strip().splitlines()[0])
    peer = json.loads(peer_out.split("PEER", 1)[1].strip().splitlines()[0])
    seconds = window["end"] - window["start"]
    per_card_second = traffic["updates"] / (args.cards * seconds)
    result = {
        "cards": args.cards,
        "task_seconds": args.task_seconds,
        "wall_s": round(seconds, 1),
        "succeeded": cards["succeeded"],
        "lag_p50_ms": cards["p50_ms"],
        "lag_p99_ms": cards["p99_ms"],
        "lag_max_ms": cards["max_ms"],
        "update_bytes_per_card_second": round(per_card_second, 1),
        "widget_creation_bytes_per_card": round(traffic["open"] / args.cards),
        "media_bytes_per_card": round(traffic["media"] / args.cards),
        "display_output_bytes_per_card": round(traffic["outputs"] / args.cards),
        "peer_tasks": args.peer_tasks,
        "peer_lag_p50_ms": peer["p50_ms"],
        "peer_lag_p99_ms": peer["p99_ms"],
        "peer_lag_max_ms": peer["max_ms"],
        "ratios": {
            "lag_p99_peer_vs_cards": round(peer["p99_ms"] / max(cards["p99_ms"], 0.01), 1),
        },
    }
    print(f"{args.cards} live cards, {args.task_seconds:g} s tasks, {seconds:.1f} s wall")
    print(f"  event-loop lag p50 {cards['p50_ms']} ms, p99 {cards['p99_ms']} ms (target p99 < 50)")
    print(
        f"  widget updates {per_card_second:.0f} bytes per card-second while running"
        " (target < 1024);"
        f" plus {traffic['open'] / args.cards:.0f} bytes per card to create its widgets and"
        f" {traffic['media'] / args.cards:.0f} bytes of finished media per card over the comm;"
        f" {traffic['outputs'] / args.cards:.0f} bytes per card of display outputs (static forms)"
    )
    print(
        f"peer: the provider's blocking sample loop, {args.peer_tasks} task(s) in a cell: "
        f"lag p50 {peer['p50_ms']} ms, p99 {peer['p99_ms']} ms, max {peer['max_ms']} ms"
    )
    print(f"ratio: the peer's p99 lag is {result['ratios']['lag_p99_peer_vs_cards']}x the cards'")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
