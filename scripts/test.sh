#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, then run the whole test suite: unit, real HTTP against the
# sandbox, notebooks in a real kernel (nbval), and widgets in a real browser (JupyterLab + Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check genwidgets tests benchmarks
# Tests that need a real server (PostgreSQL, S3) fail here instead of skipping when it is missing.
export GENWIDGETS_REQUIRE_SERVERS=1
export GENWIDGETS_CACHE_DIR=${GENWIDGETS_CACHE_DIR:-$PWD/.e2e/cache}
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
