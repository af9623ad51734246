"""Code lines per provider adapter, as issue 11 counts them.

A line counts when it is not blank, not a comment, not in the module docstring (the protocol
description) and not in the model catalogue or the budget row (top-level assignments building
`ModelInfo`s or `ProviderLimits`, and the one-line helpers only they call). Three columns: every other docstring counted as code; the adapter
class's docstring (the provider's protocol facts) left out too; and no docstrings at all (radon's
SLOC).

    python scripts/adapter_lines.py [files...]   # default: every adapter in genwidgets/providers
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "genwidgets" / "providers"
SEEDS = ("onerouter", "rixapi", "segmind", "netmind", "oxen")


def adapters() -> list[Path]:
    """Every provider adapter module: public modules of providers/ but `local` (no protocol)."""
    return sorted(
        path for path in ROOT.glob("*.py") if not path.name.startswith("_") and path.stem != "local"
    )


def _docstring(node: ast.AST) -> set[int]:
    body = getattr(node, "body", None)
    first = body[0] if isinstance(body, list) and body else None
    constant = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if constant and isinstance(first.value.value, str):  # type: ignore[union-attr]
        return set(range(first.lineno, (first.end_lineno or first.lineno) + 1))  # type: ignore[union-attr]
    return set()


def _builds_models(node: ast.AST, makers: set[str]) -> bool:
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
    return any(getattr(c.func, "id", "") in makers for c in calls)


def count(path: Path) -> tuple[int, int, int]:
    """(with docstrings, without the class's protocol docstring, without any docstring)."""
    source = path.read_text()
    tree = ast.parse(source)
    skip = _docstring(tree)
    makers = {"ModelInfo", "ProviderLimits"}
    for node in tree.body:
        small = isinstance(node, ast.FunctionDef) and len(node.body) <= 2
        if small and _builds_models(node, makers):
            makers.add(node.name)  # type: ignore[union-attr]
            skip |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _builds_models(node, makers):
            skip |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    classes = {n for node in tree.body if isinstance(node, ast.ClassDef) for n in _docstring(node)}
    every = set()
    for node in ast.walk(tree):
        every |= _docstring(node)
    code = [
        number
        for number, line in enumerate(source.splitlines(), 1)
        if number not in skip and line.strip() and not line.strip().startswith("#")
    ]
    return (
        len(code),
        len([n for n in code if n not in classes]),
        len([n for n in code if n not in every]),
    )


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or adapters()
    print(f"{'adapter':24} {'code':>5} {'- class doc':>12} {'- all docs':>11}")
    for path in paths:
        code, without_class_doc, without_docs = count(path)
        print(f"{path.name:24} {code:5} {without_class_doc:12} {without_docs:11}")


if __name__ == "__main__":
    main(sys.argv[1:])
