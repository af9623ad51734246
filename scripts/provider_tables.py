"""The README's provider and budget tables, generated from the provider registry.

Each table sits between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers in README.md and is
rebuilt from the adapters' class attributes (key variables, base URL, cancel/list/push, the
`limits` row), so a new adapter appears by itself. Built-in providers only: the README must not
depend on which plugins the machine that ran this has installed. tests/test_readme_tables.py
fails when the README is stale.

    python scripts/provider_tables.py           # print the tables
    python scripts/provider_tables.py --write   # rewrite them in README.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT))

from genwidgets.providers import Provider, get_provider_class, provider_names  # noqa: E402


def _about(cls: type[Provider]) -> str:
    """The adapter's `about`, else the first sentence of its class docstring."""
    text = cls.about or (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.split()).removeprefix("Sans-IO adapter for ").rstrip(".")


def _keys(cls: type[Provider]) -> str:
    names = ((cls.env_var,) if cls.env_var else ()) + cls.env_vars
    return " or ".join(f"`{name}`" for name in names) or "none"


def providers_table() -> str:
    rows = [
        "| provider | key variable | base URL (override: `GENWIDGETS_<PROVIDER>_URL`) "
        "| cancel | list | push | protocol |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in provider_names(plugins=False):
        cls = get_provider_class(name)
        listing = ("yes (+delete)" if cls.can_delete else "yes") if cls.can_list else "–"
        cells = [
            f"`{name}`",
            _keys(cls),
            f"`{cls.default_base_url}`" if cls.default_base_url else "in-process",
            "yes" if cls.can_cancel else "–",
            listing,
            _push(cls),
            _about(cls),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _push(cls: type[Provider]) -> str:
    """How the provider pushes changes: one stream for all tasks, one per task, or not at all."""
    per_task = cls.build_task_events is not Provider.build_task_events
    return "yes" if cls.has_events else "per task" if per_task else "–"


def _counts(counts: frozenset[str] | None, others: float | None = None) -> str:
    if counts is None:
        return "every request"
    text = "submits only" if counts == {"submit"} else ", ".join(sorted(counts))
    return text if others is None else f"{text} (every other request: {others:g}/min)"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def budgets_table() -> str:
    rows = [
        "| provider | requests/min | counts | tasks in flight | source |",
        "|---|---|---|---|---|",
    ]
    for name in provider_names(plugins=False):
        row = get_provider_class(name).limits
        if row is None:
            rows.append(f"| `{name}` | – | – | – | no limit (in-process or none declared) |")
            continue
        cells = [
            f"`{name}`",
            _number(row.limits.requests_per_minute),
            _counts(row.counts, row.limits.other_requests_per_minute),
            _number(row.limits.max_in_flight),
            row.evidence,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


TABLES = {"provider-table": providers_table, "budget-table": budgets_table}


def updated(text: str) -> str:
    """`text` (the README) with every generated table rebuilt between its markers."""
    for marker, build in TABLES.items():
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(\n<!-- /{marker} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {marker} --> ... <!-- /{marker} --> block")
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    if "--write" in argv:
        README.write_text(updated(README.read_text()))
        return 0
    print(providers_table(), budgets_table(), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
