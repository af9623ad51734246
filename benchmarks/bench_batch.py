"""10,000 tasks through `genwidgets.abatch` with budgets off, vs a hand-written asyncio+httpx loop.

    .venv/bin/python benchmarks/bench_batch.py [--tasks 10000] [--max-in-flight 1000]
        [--task-seconds 10] [--task-jitter 0.2] [--peer-poll 3] [--peer-http-gate 16]
        [--provider onerouter] [--provider fal ...]   # or --provider all
    .venv/bin/python benchmarks/bench_batch.py --tiny    # 20 tasks of 0.5 s, a few seconds

`--provider` (repeatable; default `onerouter`, `all` = every protocol in `PROTOCOLS`) runs the
same comparison on each provider's sandbox protocol in turn, one table and one ratio line each.
For the providers added after the seeds (fal, Replicate, Runway, Luma, OpenRouter videos, Veo)
the peer is the same 3 s loop over the same wire, spoken through genwidgets' sans-IO adapter
(`build_submit`/`parse_submit`, `build_poll`/`parse_poll`, `build_result` where the status
endpoint carries no outputs, as fal's; redirects followed by hand, the key sent only to the
provider's own origin, as Veo's file downloads need): its requests are the loop's, but its RSS and
CPU include genwidgets' imports, so only throughput and requests per task compare there. fal's
result fetch (`GET response_url`, once per task) is not a status request: it is reported as
"other/task". Runway's sandbox queues tasks past 2 per key (THROTTLED, Tier 1); the benchmark
raises that to the number in flight (a higher tier), else both sides would measure the queue.
Models: see `PROTOCOLS` (catalogued image or video models; Replicate's is outside the catalogue,
so creates are plain, not held by `Prefer: wait`).

What is measured: the client itself. A sandbox (`python -m genwidgets.sandbox`, in its own
process, so the client's RSS and CPU are its own) runs OneRouter tasks of 10 s +/- 20 % (plus its
default 0.5 s queue). Its CLI has no flag for the media size, so the sandbox process is started
through the same CLI `main()` with `Sandbox(media=MediaSizes(image=32, video=32,
video_seconds=0.125))` patched in: Seedance is a video model, so each output is a one-frame
32 px MP4 (~2 KB, ~2 ms to encode); the default 128 px 1 s video costs the sandbox ~12 ms of
CPU each (a 256 px PNG ~17 ms), which on this 2-core machine would measure the sandbox's
renderer instead of the client. (Runs before 2026-12-01 got 32 px PNGs: the sandbox answered
Seedance with an image then.)

genwidgets: a fresh subprocess runs `genwidgets.abatch("onerouter:bytedance/seedance", rows,
client=AsyncClient(budgets=False, journal=<temp sqlite>, cache_dir=<temp>), max_in_flight=1000,
progress=False, out=<temp>, yes=True)`; batch downloads every output (`yes=True` answers the
cost guard's confirmation for more than 20 paid tasks). Budgets are off so nothing but the
client limits the run (OneRouter's documented 30 in flight would otherwise).

Peer: another fresh subprocess with the loop a user would write: the same concurrency (an
`asyncio.Semaphore(1000)`), one `httpx.AsyncClient` with the same pool size as genwidgets' (200
connections, 50 kept alive); per task: submit, then `sleep(3)` + poll until done (the providers'
docs advise polling every few seconds), then download the output to disk. Its submits and polls
pass a second semaphore of 16 (`--peer-http-gate`), the gate genwidgets puts in front of httpx
(`max_connections_per_provider=16`): without it (`--peer-http-gate 0`) the naive loop queues up to
1000 requests inside httpcore's pool, whose bookkeeping is quadratic in the queue, and on this
machine every task was lost to `PoolTimeout` with the client's CPU pegged (2,000 tasks: 600
submits reached the server, 0 succeeded). The gated loop is the fair, working peer.

Figures: wall time, tasks/s, peak RSS of each subprocess (`ru_maxrss`), its CPU seconds, and
requests per task from the sandbox's per-endpoint counters (delta over each run): submits, status
requests (OneRouter's poll endpoint; it has no separate result call), downloads, and the rest;
and how late each client knew a task ended (mean, p50, p95): when it recorded the terminal status
(genwidgets: the first terminal status change in its journal; the loop: its own clock) minus when
the sandbox turned the task terminal (`GET /_sandbox/finished`, the same machine's clock).
Targets (issue): throughput >= the loop's, status requests <= 1/3 of the loop's, RSS < 150 MB.
Prints a table and a last line `RESULT {json}`. The helpers here are shared with
bench_limits.py and bench_cancel.py (sandbox process, children, the peer loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

MODEL = "bytedance/seedance"  # the docs' example (a video model)
KEY = "bench-key"


@dataclass(frozen=True)
class Protocol:
    """What the benchmark runs on one provider's sandbox protocol."""

    label: str
    model: str  # without the provider's prefix
    key: str  # a key of the shape the provider's sandbox accepts
    params: dict[str, Any] = field(default_factory=dict)
    status: tuple[str, ...] = ("poll",)  # the sandbox's names of its status endpoints
    downloads: tuple[str, ...] = ("files",)  # ... and of its output downloads


PROTOCOLS: dict[str, Protocol] = {
    "onerouter": Protocol("OneRouter", MODEL, KEY),
    "fal": Protocol("fal", "fal-ai/flux/dev", "bench-id:bench-secret", status=("status",)),
    "replicate": Protocol("Replicate", "acme/bench-image", "r8_bench-key"),
    "runway": Protocol("Runway", "text_to_image/gen4_image", "bench-key-runway"),
    "luma": Protocol("Luma", "photon-flash-1", "bench-key-luma"),
    "openrouter": Protocol(
        "OpenRouter videos", "google/veo-3.1", "sk-or-bench-key", {"duration": 1}, ("poll",),
        ("content",),
    ),
    "veo": Protocol(
        "Veo", "veo-3.0-fast-generate-001", "AIza-bench-key", {"durationSeconds": 4}, ("poll",),
        ("download",),
    ),
}
HERE = Path(__file__).resolve()
_PROVIDERS = ("onerouter", "segmind", "rixapi", "netmind", "oxen")  # the seed providers' URLs
#: Sizes of `--tiny`: every code path and every ratio, in a few seconds (tests run it).
TINY = {
    "tasks": 20,
    "max_in_flight": 20,
    "task_seconds": 0.5,
    "provider": ["onerouter", "fal", "veo"],
}

#: Runs the sandbox CLI unchanged except for smaller rendered media (the CLI has no flag for it).
SMALL_MEDIA_LAUNCHER = """
import functools, sys
import genwidgets.sandbox.__main__ as cli
from genwidgets.sandbox import MediaSizes
from genwidgets.sandbox._runway import Runway
cli.Sandbox = functools.partial(
    cli.Sandbox, media=MediaSizes(image=32, video=32, video_seconds=0.125)
)
Runway.concurrency = 100_000  # a tier above any batch here: no THROTTLED queue to measure
sys.exit(cli.main(sys.argv[1:]))
"""


# ------------------------------------------------------------------------------ sandbox process
def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any GENWIDGETS_* setting or provider key, plus `extra`."""
    drop = ("GENWIDGETS_", "ONEROUTER_", "SEGMIND_", "RIXAPI_", "NETMIND_", "OXEN_", "FAL_")
    drop += ("REPLICATE_", "RUNWAYML_", "LUMAAI_", "OPENROUTER_", "GEMINI_", "GOOGLE_API_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def parse_args(parser: argparse.ArgumentParser, tiny: dict[str, Any]) -> argparse.Namespace:
    """The benchmark's arguments, `--tiny` applied, in an environment of its own.

    `--tiny` (the sizes in `tiny`) runs every code path and prints every ratio in a few seconds;
    tests/test_benchmarks.py runs each script that way.
    """
    parser.add_argument("--tiny", action="store_true", help=f"a few seconds: {tiny}")
    args = parser.parse_args()
    if args.tiny:
        vars(args).update(tiny)
    own_environment()
    return args


def own_environment() -> None:
    """Drop every GENWIDGETS_* setting and provider key from this process's environment.

    A benchmark states what it runs under (budgets, journal, cache) in its own code; a variable
    left in the caller's shell (or set by the test suite, which turns budgets off) must not
    change what is measured.
    """
    kept = clean_env()
    os.environ.clear()
    os.environ.update(kept)


class SandboxProcess:
    """`python -m genwidgets.sandbox ARGS --port-base 0` in a subprocess, driven over HTTP.

    Its ports are ephemeral; `urls` (provider -> origin) is read from the `export
    GENWIDGETS_<PROVIDER>_URL=...` lines it prints when it is ready.
    """

    def __init__(
        self,
        args: list[str],
        *,
        small_media: bool = False,
        log: Path | None = None,
        needs: list[str] | None = None,
    ) -> None:
        self.args = list(args)
        self.needs = set(_PROVIDERS) | set(needs or ())  # whose URLs to wait for
        self.small_media = small_media
        self.urls: dict[str, str] = {}
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._http = httpx.Client(timeout=60.0)

    @property
    def command(self) -> list[str]:
        head = ["-c", SMALL_MEDIA_LAUNCHER] if self.small_media else ["-m", "genwidgets.sandbox"]
        return [sys.executable, *head, *self.args, "--port-base", "0"]

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            text=True,
        )
        assert self.proc.stdout is not None
        banner: list[str] = []
        for line in self.proc.stdout:  # the banner ends with the export lines
            banner.append(line)
            match = re.match(r"export GENWIDGETS_([A-Z_]+)_URL=(\S+)", line.strip())
            if match:
                self.urls[match.group(1).lower()] = match.group(2)
            elif self.urls:
                break
            if self.needs <= set(self.urls):
                break
        if not self.needs <= set(self.urls):
            raise RuntimeError("the sandbox did not start:\n" + "".join(banner[-20:]))
        self._drain = threading.Thread(target=self._keep_reading, args=(banner,), daemon=True)
        self._drain.start()
        self.stats()
        return self

    def _keep_reading(self, banner: list[str]) -> None:
        """Empty the pipe (so the sandbox never blocks on it) into the log, if there is one."""
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log or os.devnull, "w") as sink:
            sink.writelines(banner)
            for line in self.proc.stdout:
                sink.write(line)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._drain is not None:
            self._drain.join(5)

    def stats(self) -> dict[str, Any]:
        response = self._http.get(f"{self.urls['onerouter']}/_sandbox/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def finished(self, provider: str) -> dict[str, float]:
        """Task id -> when the sandbox turned it terminal, as `time.time()` (`GET
        /_sandbox/finished`): how late a client knew is its own time minus this."""
        url = f"{self.urls[provider]}/_sandbox/finished"
        answer = self._http.get(url, params={"provider": provider}).raise_for_status()
        ends: dict[str, float] = answer.json().get(provider, {})
        return ends

    def reset(self) -> None:
        self._http.post(f"{self.urls['onerouter']}/_sandbox/reset").raise_for_status()


def endpoint_delta(before: dict[str, Any], after: dict[str, Any], provider: str) -> Counter[str]:
    """Requests per endpoint of `provider` between two stats snapshots."""
    old = Counter(before["requests"].get(provider, {}))
    new = Counter(after["requests"].get(provider, {}))
    new.subtract(old)
    return new


def limited_delta(before: dict[str, Any], after: dict[str, Any], provider: str) -> dict[str, int]:
    """429s the enforced limits sent to `provider`'s clients between two snapshots."""
    old = before["limited"].get(provider, {})
    new = after["limited"].get(provider, {})
    return {why: new.get(why, 0) - old.get(why, 0) for why in ("rate", "in_flight")}


# ------------------------------------------------------------------------------ children
def run_child(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run this file as a fresh child on `config`; its last stdout line is JSON figures."""
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {config['mode']} failed ({done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


async def _genwidgets_child(config: dict[str, Any]) -> dict[str, Any]:
    import genwidgets
    from genwidgets import AsyncClient

    tmp = Path(config["tmp"])
    provider = config.get("provider", "onerouter")  # bench_limits.py runs this child too
    protocol = PROTOCOLS[provider]
    options: dict[str, Any] = {
        "api_keys": {provider: protocol.key},
        "base_urls": {provider: config["base"]},
        "journal": tmp / "journal.sqlite",
        "cache_dir": tmp / "cache",
    }
    if not config["budgets"]:
        options["budgets"] = False  # else: not passed at all, the documented defaults apply
    rows = [
        {"prompt": f"{config['tag']} row {i}", "params": protocol.params}
        for i in range(config["tasks"])
    ]
    if "yes" in inspect.signature(genwidgets.abatch).parameters:
        options_batch: dict[str, Any] = {"yes": True}  # the cost guard's confirmation (> 20)
    else:
        options_batch = {}
    before = _usage()
    started = time.perf_counter()
    async with AsyncClient(**options) as client:
        results = await genwidgets.abatch(
            f"{provider}:{protocol.model}",
            rows,
            client=client,
            max_in_flight=config["concurrency"],
            progress=False,
            out=tmp / "out",
            **options_batch,
        )
        budget = client.budget(provider)
        budget_state = budget.state() if budget is not None else None
    elapsed = time.perf_counter() - started
    known = journal_known(tmp / "journal.sqlite")
    statuses = Counter(entry["status"] for entry in results)
    files = sum(1 for entry in results for path in entry.get("outputs", []) if path)
    errors = Counter(str(entry.get("error"))[:120] for entry in results if entry.get("error"))
    return {
        "seconds": elapsed,
        "statuses": dict(statuses),
        "files": files,
        "errors": dict(errors.most_common(5)),
        "baseline_rss_mb": before["rss_mb"],
        "budget": budget_state,
        "known": known,
        **_usage(),
    }


def journal_known(path: Path) -> dict[str, float]:
    """Task id -> when this client first knew it ended (`time.time()`): the time of the
    snapshot that recorded its terminal status in the journal's status changes."""
    import sqlite3
    from datetime import datetime

    terminal = ("succeeded", "failed", "cancelled", "expired")
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            f"SELECT id, MIN(at) FROM status_changes WHERE status IN ({','.join('?' * 4)})"
            " GROUP BY id",
            terminal,
        ).fetchall()
    return {tid: datetime.fromisoformat(at).timestamp() for tid, at in rows}


async def _peer_child(config: dict[str, Any]) -> dict[str, Any]:
    """The loop a user writes: submit, sleep-and-poll, download; 429s retried after 1 s."""
    base, poll_every = config["base"], float(config["poll"])
    retry_429 = bool(config.get("retry_429"))
    out = Path(config["tmp"]) / "out"
    out.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": KEY}
    counts: Counter[str] = Counter()
    known: dict[str, float] = {}  # task id -> when the loop saw it end
    slots = asyncio.Semaphore(config["concurrency"])
    gate_size = int(config.get("http_gate") or 0)
    gate: contextlib.AbstractAsyncContextManager[Any] = (
        asyncio.Semaphore(gate_size) if gate_size else contextlib.nullcontext()
    )

    async def send(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
        while True:
            async with gate:
                response = await http.request(method, url, headers=headers, **kw)
            if response.status_code != 429 or not retry_429:
                return response
            counts["429"] += 1
            await asyncio.sleep(1.0)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        async with slots:
            try:
                body = {"model": MODEL, "content": [{"type": "text", "text": f"peer row {i}"}]}
                r = await send(http, "POST", f"{base}/v1/images/generations", json=body)
                r.raise_for_status()
                data = r.json()["data"]
                poll_url = data["urls"]["get"]
                while True:
                    await asyncio.sleep(poll_every)
                    r = await send(http, "GET", poll_url)
                    r.raise_for_status()
                    data = r.json()["data"]
                    if data["status"] in ("completed", "failed"):
                        known[data["task_id"]] = time.time()
                        break
                if data["status"] != "completed":
                    counts["failed"] += 1
                    return
                r = await http.get(data["outputs"][0])
                r.raise_for_status()
                (out / f"{data['task_id']}.mp4").write_bytes(r.content)
                counts["succeeded"] += 1
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                counts["lost: " + type(exc).__name__] += 1

    before = _usage()
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        jobs = [asyncio.ensure_future(one(http, i)) for i in range(config["tasks"])]
        _, pending = await asyncio.wait(jobs, timeout=config.get("cap"))
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "statuses": {k: v for k, v in counts.items() if k != "429"},
        "unfinished": len(pending),
        "capped": bool(pending),
        "retried_429": counts["429"],
        "known": known,
        "files": len(list(out.iterdir())),
        "baseline_rss_mb": before["rss_mb"],
        **_usage(),
    }


async def _adapter_peer_child(config: dict[str, Any]) -> dict[str, Any]:
    """The same 3 s loop on another provider's wire, through its sans-IO adapter (module doc)."""
    from genwidgets import GenError, Status
    from genwidgets.providers import get_provider_class
    from genwidgets.providers._fields import same_origin
    from genwidgets.providers._wire import Request as WireRequest
    from genwidgets.providers._wire import Response as WireResponse

    provider, protocol = config["provider"], PROTOCOLS[config["provider"]]
    adapter = get_provider_class(provider)(api_key=protocol.key, base_url=config["base"])
    poll_every = float(config["poll"])
    out = Path(config["tmp"]) / "out"
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    known: dict[str, float] = {}  # task id -> when the loop saw it end
    slots = asyncio.Semaphore(config["concurrency"])
    gate = asyncio.Semaphore(int(config.get("http_gate") or 0) or 1_000_000)

    async def send(http: httpx.AsyncClient, request: WireRequest) -> WireResponse:
        async with gate:
            r = await http.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                json=request.json,
                params=request.params,
            )
        return WireResponse(r.status_code, dict(r.headers), r.content, str(r.url))

    async def download(http: httpx.AsyncClient, url: str) -> bytes:
        for _ in range(5):  # the key only on the provider's own origin, at every hop
            keyed = adapter.authenticated_downloads and same_origin(url, adapter.base_url)
            r = await http.get(url, headers=adapter.auth_headers() if keyed else {})
            if not r.is_redirect:
                r.raise_for_status()
                return r.content
            url = str(r.url.join(r.headers["location"]))
        raise httpx.TooManyRedirects("more than 5 redirects", request=r.request)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        params = {"prompt": f"peer row {i}", **protocol.params}
        async with slots:
            try:
                request = adapter.build_submit(protocol.model, params)
                task = adapter.parse_submit(protocol.model, params, await send(http, request))
                while not task.done:
                    await asyncio.sleep(poll_every)
                    task = adapter.parse_poll(task, await send(http, adapter.build_poll(task)))
                known[task.id] = time.time()
                result = adapter.build_result(task) if not task.outputs else None
                if task.status is Status.SUCCEEDED and result is not None:
                    task = adapter.parse_result(task, await send(http, result))
                if task.status is not Status.SUCCEEDED or not task.outputs:
                    counts[f"ended {task.status.value}"] += 1
                    return
                url = task.outputs[0].url
                assert url is not None
                (out / f"{i}.bin").write_bytes(await download(http, url))
                counts["succeeded"] += 1
            except (httpx.HTTPError, GenError) as exc:
                counts["lost: " + type(exc).__name__] += 1

    before = _usage()
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        await asyncio.gather(*(one(http, i) for i in range(config["tasks"])))
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "statuses": dict(counts),
        "files": len(list(out.iterdir())),
        "known": known,
        "baseline_rss_mb": before["rss_mb"],
        **_usage(),
    }


def child_main(raw: str) -> int:
    config = json.loads(raw)
    peer = _peer_child if config.get("provider", "onerouter") == "onerouter" else None
    runner = {
        "genwidgets": _genwidgets_child,
        "peer": peer or _adapter_peer_child,
    }[config["mode"]]
    print(json.dumps(asyncio.run(runner(config))), flush=True)
    return 0


# ------------------------------------------------------------------------------ the benchmark
def measure(
    sandbox: SandboxProcess, config: dict[str, Any], timeout: float
) -> tuple[dict[str, Any], Counter[str], dict[str, Any], dict[str, Any]]:
    """Run one child against `sandbox`; its figures, endpoint deltas, and both stats snapshots."""
    before = sandbox.stats()
    figures = run_child(config, timeout)
    after = sandbox.stats()
    provider = config.get("provider", "onerouter")
    return figures, endpoint_delta(before, after, provider), before, after


def row(
    name: str,
    n: int,
    figures: dict[str, Any],
    requests: Counter[str],
    protocol: Protocol = PROTOCOLS["onerouter"],
) -> dict[str, Any]:
    ok = figures["statuses"].get("succeeded", 0)
    status = sum(requests[e] for e in protocol.status)
    downloads = sum(requests[e] for e in protocol.downloads)
    other = sum(requests.values()) - requests["submit"] - status - downloads
    return {
        "name": name,
        "succeeded": ok,
        "seconds": round(figures["seconds"], 1),
        "tasks_per_s": round(ok / figures["seconds"], 2),
        "peak_rss_mb": round(figures["rss_mb"], 1),
        "baseline_rss_mb": round(figures["baseline_rss_mb"], 1),
        "cpu_s": round(figures["cpu_s"], 1),
        "submits_per_task": round(requests["submit"] / n, 3),
        "status_per_task": round(status / n, 3),
        "downloads_per_task": round(downloads / n, 3),
        "other_per_task": round(other / n, 3),
        "requests": dict(requests),
    }


def lag_figures(known: dict[str, float], finished: dict[str, float]) -> dict[str, Any]:
    """How late a client knew its tasks ended: the mean, median and 95th percentile of its
    time minus the sandbox's finish time (same machine, same wall clock). A client's task id
    may be a resource name ending in the sandbox's id (Veo's `models/.../operations/ID`)."""
    ends = {tid.rsplit("/", 1)[-1]: at for tid, at in known.items()}
    lags = sorted(at - finished[tid] for tid, at in ends.items() if tid in finished)
    if not lags:
        return {"lag_mean_s": None, "lag_p50_s": None, "lag_p95_s": None, "lag_tasks": 0}
    return {
        "lag_mean_s": round(sum(lags) / len(lags), 3),
        "lag_p50_s": round(lags[len(lags) // 2], 3),
        "lag_p95_s": round(lags[min(len(lags) - 1, int(0.95 * len(lags)))], 3),
        "lag_tasks": len(lags),
    }


def _ratio(a: float, b: float, digits: int) -> float:
    return round(a / b, digits) if b else float("inf")


def main_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Each provider's comparison in turn, on one sandbox; the first one's figures on top."""
    sandbox_args = [
        "--task-seconds",
        str(args.task_seconds),
        "--task-jitter",
        str(args.task_jitter),
    ]
    providers = list(PROTOCOLS) if "all" in args.provider else list(dict.fromkeys(args.provider))
    results: dict[str, dict[str, Any]] = {}
    with SandboxProcess(sandbox_args, small_media=True, needs=providers) as sb:
        for provider in providers:
            results[provider] = compare(sb, provider, args)
    first = results[providers[0]]
    return {**first, "providers": results} if len(providers) > 1 else first


def compare(sb: SandboxProcess, provider: str, args: argparse.Namespace) -> dict[str, Any]:
    """genwidgets, then the 3 s loop, on `provider`'s protocol; prints their table."""
    n, protocol = args.tasks, PROTOCOLS[provider]
    print(
        f"{n} {protocol.label} tasks ({provider}:{protocol.model}), {args.task_seconds:g} s "
        f"+/- {args.task_jitter:.0%} each (+0.5 s queued), {args.max_in_flight} in flight, "
        f"sandbox in its own process (32 px media), each client in a fresh subprocess; "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as t:
        common = {"base": sb.urls[provider], "tasks": n, "concurrency": args.max_in_flight}
        for name in ("genwidgets", "peer"):
            sb.reset()
            config = {**common, "mode": name, "tmp": str(Path(t) / name), "tag": name}
            config.update(budgets=False, poll=args.peer_poll, http_gate=args.peer_http_gate)
            config["provider"] = provider
            figures, requests, _, after = measure(sb, config, timeout=1800)
            rows[name] = row(name, n, figures, requests, protocol)
            rows[name].update(lag_figures(figures.get("known", {}), sb.finished(provider)))
            rows[name]["statuses"] = figures["statuses"]
            rows[name]["errors"] = figures.get("errors", {})
            rows[name]["server_peak_in_flight"] = after["peak_in_flight"].get(provider)
            print(f"  {name}: done in {figures['seconds']:.1f} s", flush=True)
    return report(provider, n, rows["genwidgets"], rows["peer"], args)


def report(
    provider: str,
    n: int,
    ours: dict[str, Any],
    peer: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Print one provider's table and ratio lines; its RESULT figures."""
    ratios = {
        "throughput_vs_peer": _ratio(ours["tasks_per_s"], peer["tasks_per_s"], 3),
        "status_requests_vs_peer": _ratio(ours["status_per_task"], peer["status_per_task"], 3),
        "rss_vs_peer": _ratio(ours["peak_rss_mb"], peer["peak_rss_mb"], 2),
        "cpu_vs_peer": _ratio(ours["cpu_s"], peer["cpu_s"], 2),
    }
    print()
    header = (
        f"{'':<12}{'ok':>7}{'wall s':>9}{'tasks/s':>9}{'peak RSS MB':>13}{'CPU s':>8}"
        f"{'submit/task':>13}{'status/task':>13}{'files/task':>12}{'other/task':>12}"
    )
    print(header)
    for r in (ours, peer):
        print(
            f"{r['name']:<12}{r['succeeded']:>7}{r['seconds']:>9.1f}{r['tasks_per_s']:>9.2f}"
            f"{r['peak_rss_mb']:>13.1f}{r['cpu_s']:>8.1f}{r['submits_per_task']:>13.3f}"
            f"{r['status_per_task']:>13.3f}{r['downloads_per_task']:>12.3f}"
            f"{r['other_per_task']:>12.3f}"
        )
    print(
        f"(peak RSS after imports, before any task: genwidgets {ours['baseline_rss_mb']} MB, "
        f"peer {peer['baseline_rss_mb']} MB; server-side peak in flight: "
        f"{ours['server_peak_in_flight']} / {peer['server_peak_in_flight']})"
    )
    for r in (ours, peer):
        if r.get("lag_tasks"):
            print(
                f"  {r['name']}: knew a task ended {r['lag_mean_s']:.2f} s after the server "
                f"(mean; p50 {r['lag_p50_s']:.2f} s, p95 {r['lag_p95_s']:.2f} s, "
                f"{r['lag_tasks']} tasks)"
            )
    for r in (ours, peer):
        if r["succeeded"] != n:
            print(f"  {r['name']}: statuses {r['statuses']} errors {r['errors']}")
    met = {
        "throughput": ratios["throughput_vs_peer"] >= 1.0,
        "status_requests": ratios["status_requests_vs_peer"] <= 1 / 3,
        "rss": ours["peak_rss_mb"] < 150,
    }
    print()
    print(
        f"{provider}: throughput genwidgets/peer   {ratios['throughput_vs_peer']:.3f}x  "
        f"(target >= 1): {'met' if met['throughput'] else 'MISSED'}"
    )
    print(
        f"{provider}: status requests/task ratio   {ratios['status_requests_vs_peer']:.3f}   "
        f"(target <= 0.333): {'met' if met['status_requests'] else 'MISSED'}"
    )
    print(
        f"{provider}: peak RSS genwidgets          {ours['peak_rss_mb']:.1f} MB (target < 150 MB):"
        f" {'met' if met['rss'] else 'MISSED'}; peer {peer['peak_rss_mb']:.1f} MB"
    )
    print(f"{provider}: CPU genwidgets/peer          {ratios['cpu_vs_peer']:.2f}x", flush=True)
    print()
    return {
        "provider": provider,
        "tasks": n,
        "task_seconds": args.task_seconds,
        "task_jitter": args.task_jitter,
        "max_in_flight": args.max_in_flight,
        "genwidgets": ours,
        "peer": peer,
        "ratios": ratios,
        "targets_met": met,
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child_main(sys.argv[2])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--max-in-flight", type=int, default=1000)
    parser.add_argument("--task-seconds", type=float, default=10.0)
    parser.add_argument("--task-jitter", type=float, default=0.2)
    parser.add_argument("--peer-poll", type=float, default=3.0, help="the loop's poll period")
    parser.add_argument(
        "--provider",
        action="append",
        choices=[*PROTOCOLS, "all"],
        help="a protocol to run on (repeatable; default onerouter; all: every one)",
    )
    parser.add_argument(
        "--peer-http-gate",
        type=int,
        default=16,
        help="the loop's cap on API requests at once (genwidgets': 16 per provider); 0: none",
    )
    args = parse_args(parser, TINY)
    args.provider = args.provider or ["onerouter"]
    result = main_batch(args)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
