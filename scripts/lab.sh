#!/usr/bin/env bash
# Set up (scripts/setup.sh), then open the quickstart notebook in JupyterLab. Runs on the `local`
# provider: no key and no network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-root)   # JupyterLab refuses root without it
exec .venv/bin/jupyter lab "${extra[@]}" notebooks/01-quickstart.ipynb "$@"
