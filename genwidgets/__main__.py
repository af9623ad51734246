"""The `genwidgets` command line: run a model, start the sandbox, list models."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._cost import CostPlan, shared_guard
from ._exceptions import GenError
from ._limits import ProviderLimits

__all__ = ["main"]


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the CLI's one-line form (exit code 2, as argparse's own)."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see {self.prog} --help)")
        raise SystemExit(2)


def _fail(message: str) -> int:
    """Print an error as one line on stderr; the exit code of every CLI error, 2."""
    first, *rest = [line.strip() for line in str(message).splitlines() if line.strip()] or [""]
    print(f"error: {first} {'; '.join(rest)}".rstrip(), file=sys.stderr)
    return 2


#: Environment variables whose values are secrets wherever they appear: provider keys
#: (`SEGMIND_API_KEY`, `FAL_KEY`, `REPLICATE_API_TOKEN`...), storage and database passwords.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CONNECTION_STRING")
#: Settings that may be URLs holding a password.
_URL_SETTINGS = [f"GENWIDGETS_{name}" for name in ("JOURNAL", "CLAIMS", "BUDGETS", "STORE")]


class _Scrubbed(logging.Formatter):
    """A warning as the CLI prints it, ``warning: <message>``, with every database URL it uses
    shown redacted (`_postgres.scrub`) and every secret variable's value as ***."""

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        self.urls = [url for url in urls if url]

    def format(self, record: logging.LogRecord) -> str:
        from ._postgres import scrub

        text = f"{record.levelname.lower()}: {super().format(record)}"
        for url in self.urls:
            text = scrub(text, url)
        secrets = [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8]
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return scrub(text)


@contextlib.contextmanager
def _warnings_shown(args: argparse.Namespace) -> Iterator[None]:
    """The library's warnings on stderr while a command runs: a line taken over from a dead
    worker, a lost lease, a claims store or journal that went away. The library logs to no
    handler of its own (`genwidgets/__init__`); the CLI is the application that shows them. A
    spawned worker's stderr is its starter's, so the user sees every worker's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    urls = [os.environ.get(name, "") for name in _URL_SETTINGS]
    handler.setFormatter(_Scrubbed([*urls, getattr(args, "claims", None) or ""]))
    logger = logging.getLogger("genwidgets")
    level = logger.level
    if not level or level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="genwidgets",
        description="Generate images, video and audio through one task client.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="submit a task, follow it, save its outputs")
    run.add_argument("model", help="provider:model, e.g. local:image or segmind:seedream-4.5")
    run.add_argument("--prompt", "-p", help="what to generate")
    run.add_argument("--seed", type=int, help="random seed")
    run.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a model parameter (JSON values are decoded: 5, true, "5"); repeatable',
    )
    run.add_argument("--out", default=".", help="folder for the outputs (default: .)")
    run.add_argument(
        "--timeout",
        type=float,
        help="deadline in seconds: then the task is cancelled where the provider can cancel",
    )

    _add_batch(sub)
    sub.add_parser("models", help="list providers and known models")
    sandbox = sub.add_parser(
        "sandbox", help="serve the five providers' protocols on loopback", add_help=False
    )
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _add_batch(sub: Any) -> None:
    """The `batch` command's options."""
    batch = sub.add_parser(
        "batch",
        help="run every request of a JSONL file (resumable; --workers N shares it out)",
        description="Run every line of a JSONL file: checked first, then submitted within the "
        "budgets, each output downloaded as it finishes, a manifest line per job. Re-running "
        "the same command after a crash replays, re-attaches or skips what was done. With "
        "--workers N (or a postgresql:// GENWIDGETS_JOURNAL, shared by several machines), "
        "worker processes claim the lines, and a dead worker's lines are taken over once its "
        "leases expire.",
    )
    batch.add_argument("jobs", help='JSONL: one {"model", "prompt", "params"} object a line')
    batch.add_argument("--out", default="outputs", help="folder for the outputs")
    batch.add_argument("--model", help="model for lines that name none")
    batch.add_argument("--manifest", help="results JSONL (default: OUT/manifest.jsonl)")
    batch.add_argument("--max-in-flight", type=int, default=32, help="per worker (default 32)")
    batch.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on this machine sharing the lines (default 1); the same command "
        "on several machines against one postgresql:// GENWIDGETS_JOURNAL splits the batch",
    )
    batch.add_argument(
        "--claims",
        metavar="URL_OR_PATH",
        help="where workers claim lines (default: the journal's PostgreSQL database, or a file "
        "beside a SQLite journal; env GENWIDGETS_CLAIMS)",
    )
    batch.add_argument(
        "--lease",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a dead worker's lines are taken over after this long (default 30)",
    )
    batch.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)
    batch.add_argument(
        "--yes",
        action="store_true",
        help="submit without asking, however many paid tasks (default: ask above "
        "GENWIDGETS_CONFIRM_ABOVE, 20)",
    )


def _run(args: argparse.Namespace) -> int:
    from ._client import Client

    params = dict(args.param)
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.seed is not None:
        params["seed"] = args.seed
    with Client() as client:
        task = client.submit(args.model, deadline=args.timeout, **params)
        print(f"submitted {task.name} as {task.id}", flush=True)
        try:
            last = None
            for snapshot in client.updates(task):
                line = snapshot.status.value
                if snapshot.progress is not None:
                    line += f" {snapshot.progress:.0%}"
                if snapshot.queue_position is not None:
                    line += f" (queue position {snapshot.queue_position})"
                if line != last:
                    print(f"  {line}", flush=True)
                    last = line
                task = snapshot
        except KeyboardInterrupt:
            if client.can_cancel(task) and not task.done:
                print("interrupted: cancelling the task", file=sys.stderr, flush=True)
                client.cancel(task)
            raise
        if task.status.value != "succeeded":
            print(f"{task.status.value}: {task.error or 'no detail given'}", file=sys.stderr)
            return 1
        task = client.download(task, dest=args.out)
        for output in task.outputs:
            print(output.path)
    return 0


def _models() -> int:
    """Every provider the registry knows (plugins too), its key's state and its catalogue."""
    from ._config import api_key
    from .providers import BrokenPlugin, _registry, get_provider_class, provider_names

    for name in provider_names():
        entry = _registry.entries()[name]
        plugin = "" if entry.builtin else f"; plugin from {entry.origin}"
        try:
            cls = get_provider_class(name)
        except BrokenPlugin as exc:
            print(f"{name} (cannot be used{plugin}): {exc.message}")
            continue
        if cls.env_var:
            keys = " or ".join((cls.env_var, *cls.env_vars))
            ready = "key set" if cls.key_from_env(api_key) else f"set {keys}"
        else:
            ready = "no key needed"
        print(f"{name} ({ready}; {cls.default_base_url or 'in-process'}{plugin})")
        if cls.limits is not None:
            print(_budget_line(cls.limits))
        for info in cls(api_key=None).models.values():
            print(f"  {name}:{info.name:<45} {info.kind:<6} {info.description}")
        if cls.open_catalogue:
            print(f"  (other {name} models are passed through by name)")
    for why in _registry.refused():
        print(f"ignored plugin: {why}")
    return 0


def _budget_line(row: ProviderLimits) -> str:
    """An adapter's default budget and what it rests on, for `genwidgets models`."""
    counted = ", ".join(sorted(row.counts)) + " only" if row.counts else "every request"
    rpm = row.limits.requests_per_minute or "no limit of"
    cap = row.limits.max_in_flight or "no cap on"
    line = f"  budget: {rpm} requests/min counting {counted}, {cap} tasks in flight"
    if row.limits.other_requests_per_minute:
        line += f", {row.limits.other_requests_per_minute:g}/min for every other request"
    return f"{line}\n    ({row.evidence})"


def _ask(plan: CostPlan) -> bool:
    """The CLI's confirmation: a y/N prompt on the terminal (no terminal: `--yes` is needed)."""
    answer = input(f"Submit {plan.describe()}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _team_batch(args: argparse.Namespace) -> int:
    """A batch shared by worker processes (`--workers`) or machines (a PostgreSQL journal)."""
    from ._batch import summarize
    from ._workers import Team, claims_location, run_team

    location = claims_location(args.claims)
    if location is None:
        return _fail("--workers needs the journal: unset GENWIDGETS_JOURNAL=off")
    if args.workers < 1 or args.lease <= 0:
        return _fail("--workers must be at least 1 and --lease more than 0")
    team = Team(location, args.workers, args.lease, spawned=args.worker_process)
    results, total = run_team(
        args.jobs,
        team,
        out=args.out,
        model=args.model,
        manifest=args.manifest or str(Path(args.out) / "manifest.jsonl"),
        max_in_flight=args.max_in_flight,
        yes=args.yes,
        confirm=_ask if sys.stdin.isatty() and not args.worker_process else None,
        progress=not args.worker_process,
    )
    if args.worker_process:
        return 0
    print(summarize(results, shared_guard().currency))
    if len(results) < total:
        print(f"{total - len(results)} lines did not end (every worker stopped): run the same "
              "command again to finish them", file=sys.stderr)  # fmt: skip
    counts = {str(entry["status"]) for entry in results}
    return 0 if counts <= {"succeeded"} and len(results) == total else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    with _warnings_shown(args):
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "batch":
            from ._workers import uses_claims

            if uses_claims(args.workers, args.claims) or args.worker_process:
                return _team_batch(args)
            from ._batch import batch_file, summarize

            results = batch_file(
                args.jobs,
                out=args.out,
                model=args.model,
                manifest=args.manifest or str(Path(args.out) / "manifest.jsonl"),
                max_in_flight=args.max_in_flight,
                yes=args.yes,
                confirm=_ask if sys.stdin.isatty() else None,
            )
            print(summarize(results, shared_guard().currency))
            counts = {str(entry["status"]) for entry in results}
            return 0 if counts <= {"succeeded"} else 1
        if args.command == "models":
            return _models()
        if args.command == "sandbox":
            from .sandbox.__main__ import main as sandbox_main

            return sandbox_main(args.rest)
    except GenError as exc:  # several lines (a jobs file's bad lines) are joined into one
        return _fail(str(exc))
    except OSError as exc:  # a jobs file that is not there, an --out folder that cannot be made
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or type(exc).__name__}{where}")
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return 2


if __name__ == "__main__":
    sys.exit(main())
