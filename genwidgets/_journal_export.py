"""The journal's provenance: one row per output file, written as JSON or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._journal_sqlite import iso
from ._models import Task

__all__ = ["provenance_rows", "write_rows"]


def provenance_rows(
    tasks: Iterable[Task], fingerprint: Callable[[str, str, Mapping[str, Any]], str]
) -> Iterator[dict[str, Any]]:
    """Each output's sha256 and everything that produced it: request, provider, seed, timings."""
    for task in tasks:
        for index, output in enumerate(task.outputs):
            yield {
                "sha256": output.sha256,
                "path": str(output.path) if output.path else None,
                "store_url": output.store_url,
                "kind": output.kind,
                "size": output.size,
                "output_index": index,
                "provider": task.provider,
                "model": task.model,
                "task_id": task.id,
                "status": task.status.value,
                "seed": task.params.get("seed"),
                "prompt": task.params.get("prompt"),
                "params": json.dumps(task.params, sort_keys=True, default=str),
                "created_at": iso(task.created_at),
                "started_at": iso(task.started_at),
                "finished_at": iso(task.finished_at),
                "cost": task.cost,
                "fingerprint": fingerprint(task.provider, task.model, task.params),
            }


def write_rows(rows: list[dict[str, Any]], target: Path) -> Path:
    """JSON for a `.json` file, CSV for any other suffix."""
    if target.suffix.lower() == ".json":
        target.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        fields = list(rows[0]) if rows else ["sha256"]
        with target.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return target
