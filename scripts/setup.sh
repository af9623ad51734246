#!/usr/bin/env bash
# Set up everything genwidgets needs on a fresh Debian-like machine: system packages (Chromium for
# the browser tests, espeak-ng for local speech, PostgreSQL for the team backend's tests), then a
# virtualenv in .venv with the package.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# PostgreSQL's server binaries for the team backend's tests (Debian keeps them off PATH).
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "== installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "== note: no apt-get; install ${need[*]} yourself (browser tests are skipped without chromium)"
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# The server extension that saves a still-running card as its static form (genwidgets.widgets.
# _saved): a wheel install puts this file in etc/jupyter itself, an editable install does not.
mkdir -p .venv/etc/jupyter/jupyter_server_config.d
cp jupyter-config/jupyter_server_config.d/genwidgets.json .venv/etc/jupyter/jupyter_server_config.d/
# The example provider plugin (its own package, with entry points): the tests use it like a
# third-party plugin (tests/plugins).
.venv/bin/python -m pip install -q -e tests/plugin_example
echo "== ready: $(.venv/bin/python --version), genwidgets $(.venv/bin/python -c 'import genwidgets; print(genwidgets.__version__)')"
