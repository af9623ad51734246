"""`python -m genwidgets.sandbox` (also `genwidgets sandbox`): serve the sandbox until Ctrl-C.

Prints the base URLs and the `export GENWIDGETS_<PROVIDER>_URL=...` lines to paste into the
shell that starts Jupyter. Every `FaultConfig` field is a flag (`--error-rate 0.1`,
`--one-shot-urls`, ...); faults can also be changed later over HTTP at `/_sandbox/faults`.
`--enforce-limits` applies the providers' published per-key limits (`DOCUMENTED_LIMITS`),
`--limit PROVIDER=RPM/INFLIGHT` sets others; both can be changed at `/_sandbox/limits`.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from ._faults import FaultConfig
from ._limits import DOCUMENTED_LIMITS, ServerLimits, parse_limit_spec
from ._server import DEFAULT_PORTS, PROVIDERS, Sandbox

__all__ = ["limits_from_args", "main"]

_BOOL_FAULTS = {"one_shot_urls", "hostile_names", "stream_stall"}
_INT_FAULTS = {"burst_429", "seed", "stream_cut_after"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genwidgets sandbox",
        description="Serve the providers' async protocols on 127.0.0.1, with fault injection.",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=8100,
        help="first port: "
        + ", ".join(f"{name} +{offset}" for name, offset in _offsets().items())
        + " (0: ephemeral ports; default 8100)",
    )
    parser.add_argument(
        "--task-seconds", type=float, default=2.0, help="running time of a task (default 2)"
    )
    parser.add_argument(
        "--queue-seconds", type=float, default=0.5, help="time a task waits queued (default 0.5)"
    )
    parser.add_argument(
        "--keepalive", type=float, default=15.0, help="Oxen SSE keep-alive period (default 15)"
    )
    parser.add_argument(
        "--retention", type=float, default=3600.0, help="Segmind retention window (default 3600)"
    )
    parser.add_argument(
        "--big-bytes", type=int, default=2**30, help="size of 'big-video' results (default 1 GiB)"
    )
    parser.add_argument("--no-callbacks", action="store_true", help="never POST RixAPI callbacks")
    parser.add_argument(
        "--task-jitter",
        type=_jitter,
        default=0.0,
        metavar="J",
        help="scale each task's run time by a seeded uniform(1-J, 1+J), 0..1 (default 0: exact)",
    )
    _add_limit_flags(parser)
    _add_fault_flags(parser)
    return parser


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("limits per API key (none by default)")
    limits.add_argument(
        "--enforce-limits",
        action="store_true",
        help="enforce the published limits: "
        + ", ".join(
            f"{name} {lim.requests_per_minute}/min and {lim.max_in_flight} in flight"
            for name, lim in DOCUMENTED_LIMITS.items()
        ),
    )
    limits.add_argument(
        "--limit",
        action="append",
        type=_limit_spec,
        default=[],
        metavar="PROVIDER=RPM/INFLIGHT",
        help="limit a provider per key (repeatable; overrides --enforce-limits for it); either "
        "number may be left empty, e.g. segmind=50 or oxen=/4",
    )


def _add_fault_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `FaultConfig` field, so a new fault is a flag without touching the CLI."""
    faults = parser.add_argument_group("faults (all off by default)")
    for field in dataclasses.fields(FaultConfig):
        flag = "--" + field.name.replace("_", "-")
        doc = _field_help(field.name)
        if field.name in _BOOL_FAULTS:
            faults.add_argument(flag, action="store_true", help=doc)
        elif field.name in _INT_FAULTS:
            faults.add_argument(flag, type=int, default=None, help=doc)
        else:
            faults.add_argument(flag, type=float, default=None, metavar="S_OR_P", help=doc)


def _jitter(text: str) -> float:
    """`--task-jitter`: a fraction in 0..1 (above 1 a run time could go negative)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value


def _limit_spec(text: str) -> tuple[str, ServerLimits]:
    """`--limit`: parsed at argument time, so a typo is a usage error, not a late traceback."""
    try:
        provider, limits = parse_limit_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if provider not in PROVIDERS:
        raise argparse.ArgumentTypeError(
            f"unknown provider {provider!r} in {text!r}; known: {', '.join(PROVIDERS)}"
        )
    return provider, limits


def limits_from_args(args: argparse.Namespace) -> dict[str, ServerLimits]:
    """The limits the flags ask for: the documented ones if enforced, then each `--limit`."""
    limits: dict[str, ServerLimits] = dict(DOCUMENTED_LIMITS) if args.enforce_limits else {}
    for provider, value in args.limit:
        limits[provider] = value
    return limits


def _field_help(name: str) -> str:
    helps = {
        "latency": "seconds added to every response",
        "error_rate": "probability of a 5xx on a poll",
        "rate_limit_rate": "probability of a 429 on a poll",
        "retry_after": "seconds announced on 429s (default: no header)",
        "submit_rate_limit_rate": "probability of a 429 on a submit (nothing created)",
        "submit_error_rate": "probability of a 5xx on a submit after the task was created",
        "reset_rate": "probability that a poll's connection drops mid-response",
        "malformed_rate": "probability of a 200 with truncated JSON on a poll",
        "fail_rate": "probability that a task fails",
        "expire_after": "seconds after creation when tasks start to 404",
        "one_shot_urls": "result URLs work once, then 403",
        "hostile_names": "NetMind file_name values try path traversal and markup",
        "burst_429": "the next N polls get 429",
        "stream_error_rate": "probability that opening a task's status stream (fal) gets a 5xx",
        "stream_cut_after": "a task's status stream (fal) drops after N events",
        "stream_stall": "a task's status stream (fal) goes silent after its first event",
        "seed": "seed of the fault RNG",
    }
    return helps.get(name, name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(FaultConfig)
        if getattr(args, f.name) not in (None, False)
    }
    faults = FaultConfig()
    faults.update(**changes)
    base = args.port_base
    ports = {name: (base + offset if base else 0) for name, offset in _offsets().items()}
    sandbox = Sandbox(
        ports=ports,
        faults=faults,
        task_seconds=args.task_seconds,
        queue_seconds=args.queue_seconds,
        sse_keepalive=args.keepalive,
        segmind_retention=args.retention,
        big_bytes=args.big_bytes,
        callbacks=not args.no_callbacks,
        limits=limits_from_args(args),
        task_jitter=args.task_jitter,
    )
    try:
        sandbox.start()
    except OSError as exc:
        print(
            f"genwidgets sandbox: cannot bind 127.0.0.1 ports from {base}: {exc}", file=sys.stderr
        )
        return 1
    _print_banner(sandbox, changes, args.task_jitter)
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C / kill -INT
        # is the documented way to stop the sandbox.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        while sandbox.running:
            time.sleep(0.25)
        return 1  # the server thread died
    except KeyboardInterrupt:
        print("stopping the sandbox", flush=True)
        return 0
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _offsets() -> dict[str, int]:
    """Each port name's offset from --port-base (the defaults start at 8100), in port order."""
    ports = sorted(DEFAULT_PORTS.items(), key=lambda item: item[1])
    return {name: port - 8100 for name, port in ports}


def _or_unlimited(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_banner(sandbox: Sandbox, faults: dict[str, object], jitter: float = 0.0) -> None:
    lines = ["genwidgets sandbox on loopback (Ctrl-C to stop)"]
    for name, url in sandbox.urls.items():
        line = f"  {name:<10} {url}"
        if name == "onerouter":
            line += f"  (polls at {sandbox.onerouter_poll_url})"
        lines.append(line)
    lines.append(
        "Any non-empty API key works; 'bad-key' is refused, 'no-quota-key' has no credits."
    )
    lines.append("Prompt markers: [fail] fails, [slow] takes 10x longer, [expire] 404s once done.")
    if faults:
        lines.append("Faults: " + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())))
    if sandbox.limits:
        lines.append(
            "Limits per key: "
            + ", ".join(
                f"{name} {_or_unlimited(lim.requests_per_minute)}/min "
                f"{_or_unlimited(lim.max_in_flight)} in flight"
                for name, lim in sorted(sandbox.limits.items())
            )
        )
    if jitter:
        lines.append(f"Task run times vary by +/-{jitter:.0%}.")
    first = sandbox.urls["onerouter"]
    lines.append(
        f"Admin on any port: GET/POST {first}/_sandbox/faults, GET {first}/_sandbox/stats, "
        f"POST {first}/_sandbox/reset, GET/POST/DELETE {first}/_sandbox/limits"
    )
    lines.append("")
    lines.extend(f"export {key}={value}" for key, value in sandbox.env.items())
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
