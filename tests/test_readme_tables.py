"""The README's provider and budget tables are the registry's: rebuilt from the adapters by
scripts/provider_tables.py, so a new adapter shows up by itself (and a stale README fails here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from genwidgets.providers import get_provider_class, provider_names

ROOT = Path(__file__).parents[1]


def _tables() -> ModuleType:
    path = ROOT / "scripts" / "provider_tables.py"
    spec = importlib.util.spec_from_file_location("provider_tables", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_are_current() -> None:
    readme = (ROOT / "README.md").read_text()
    fix = "README.md is stale: run python scripts/provider_tables.py --write"
    assert _tables().updated(readme) == readme, fix


def test_every_built_in_provider_has_a_row_in_both_tables() -> None:
    tables = _tables()
    providers, budgets = tables.providers_table(), tables.budgets_table()
    for name in provider_names(plugins=False):
        assert f"| `{name}` |" in providers and f"| `{name}` |" in budgets
        row = get_provider_class(name).limits
        if row is not None:
            assert row.evidence in budgets
    assert "example" not in providers  # installed plugins stay out of the README
