"""Every benchmark still runs: each `benchmarks/bench_*.py` in its `--tiny` mode, as a subprocess.

Benchmarks are not tests, so they rotted silently: `bench_client.py overhead` as the README gave
it stopped finishing once a default Segmind budget (5 requests/min) arrived after it. Here each
script found by the glob (a new one cannot be forgotten) runs at a size of a few seconds, in an
environment without any GENWIDGETS_* variable or provider key (the suite's own settings, e.g.
budgets off, must not be what makes a benchmark work), and must exit 0 with a last line
`RESULT {json}` whose "ratios" hold at least one figure against the peer of the same run. The
figures themselves are not judged: at this size they mean nothing.

The scripts run concurrently (they mostly wait on their sandboxes), so the whole file costs about
as long as the slowest one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("bench_*.py"))
TIMEOUT = 180.0
DROP = ("GENWIDGETS_", "ONEROUTER_", "SEGMIND_", "RIXAPI_", "NETMIND_", "OXEN_")

pytestmark = pytest.mark.slow


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every benchmark started at once, in its own working directory; killed if left running."""
    started: dict[str, subprocess.Popen[str]] = {}
    for script in SCRIPTS:
        folder = tmp_path_factory.mktemp(script.stem)
        started[script.name] = subprocess.Popen(
            [sys.executable, str(script), "--tiny"],
            cwd=folder,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_glob_finds_the_benchmarks() -> None:
    names = {script.name for script in SCRIPTS}
    assert {"bench_batch.py", "bench_cancel.py", "bench_client.py", "bench_limits.py"} <= names
    assert "bench_notebook_lag.py" in names


def _ratios(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("RESULT "), f"no RESULT line; stdout ends {lines[-3:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    ratios = result.get("ratios")
    assert isinstance(ratios, dict) and ratios, f"no ratios in {sorted(result)}"
    return ratios


@pytest.mark.parametrize("name", [script.name for script in SCRIPTS])
def test_benchmark_runs_tiny_and_prints_a_ratio(
    runs: dict[str, subprocess.Popen[str]], name: str
) -> None:
    proc = runs[name]
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"{name} --tiny did not finish in {TIMEOUT:g} s:\n{stdout[-2000:]}")
    assert proc.returncode == 0, f"{name} --tiny exited {proc.returncode}:\n{stderr[-3000:]}"
    ratios = _ratios(stdout)
    for key, value in ratios.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value >= 0, (key, value)
