"""A headless JupyterLab (or Notebook 7) server plus Debian Chromium, for real-browser tests.

Adapted from the recipe in the team's shared notes: token-less server on a free loopback port,
fresh workspace/settings dirs, news toast silenced, sessions deleted before and after each run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, base: str, root: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base = base
        self.root = root
        self.process = process
        self.log = log

    def delete_sessions(self, path: str | None = None) -> None:
        try:
            sessions = json.load(urllib.request.urlopen(f"{self.base}/api/sessions", timeout=10))
            for session in sessions:
                if path is None or session.get("path") == path:
                    request = urllib.request.Request(
                        f"{self.base}/api/sessions/{session['id']}", method="DELETE"
                    )
                    urllib.request.urlopen(request, timeout=30)
        except Exception:  # best effort clean-up
            pass


@contextmanager
def jupyter_server(
    workdir: Path, app: str = "lab", env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start `jupyter lab` (or `jupyter notebook`) serving `workdir/nb`; stop it by PID."""
    port = free_port()
    root = workdir / "nb"
    root.mkdir(parents=True, exist_ok=True)
    dirs = {name: workdir / name for name in ("jcfg", "jrt", "jdata", "ws", "usersettings")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    toast = dirs["usersettings"] / "@jupyterlab" / "apputils-extension"
    toast.mkdir(parents=True, exist_ok=True)
    (toast / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    full_env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["jcfg"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["jrt"]),
        "JUPYTER_DATA_DIR": str(dirs["jdata"]),
        **(env or {}),
    }
    log = workdir / f"{app}.log"
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    command = [
        jupyter,
        app,
        "--no-browser",
        "--IdentityProvider.token=",
        "--allow-root",
        "--ServerApp.password=",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.disable_check_xsrf=True",
    ]
    if app == "lab":
        command += [
            f"--LabApp.workspaces_dir={dirs['ws']}",
            f"--LabApp.user_settings_dir={dirs['usersettings']}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    server = Server(base, root, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter {app} died:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{base}/api/status", timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter {app} did not start: {log}") from None
                time.sleep(0.5)
        yield server
    finally:
        server.delete_sessions()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def open_notebook_lab(page: Any, server: Server, name: str) -> str:
    """Open `name` in JupyterLab; returns the CSS id of its panel once the kernel is idle."""
    server.delete_sessions(name)
    page.goto(f"{server.base}/lab/tree/{name}?reset", wait_until="domcontentloaded")
    tab = page.locator(
        "#jp-main-dock-panel .lm-TabBar-tab",
        has=page.locator(".lm-TabBar-tabLabel").filter(
            has_text=re.compile("^" + re.escape(name) + "$")
        ),
    ).first
    tab.wait_for()
    panel = "#" + tab.get_attribute("data-id")
    tab.click()
    page.wait_for_selector(f"{panel} .jp-Notebook .jp-Cell")
    # The toolbar says idle ~300 ms before the kernel connects; the status bar is reliable.
    page.wait_for_function(
        "name => [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')]"
        ".some(e => (e.title || '').endsWith(name) && /\\| Idle$/.test(e.textContent.trim()))",
        arg=name,
    )
    page.wait_for_selector(f"{panel} .jp-Notebook-ExecutionIndicator[data-status='idle']")
    return panel


def run_all_lab(page: Any, panel: str) -> None:
    """Run > Run All Cells, retried once if execution did not start (a known Lab race)."""
    prompts = (
        f"() => [...document.querySelectorAll('{panel} .jp-CodeCell .jp-InputArea-prompt')]"
        ".map(e => e.textContent)"
    )
    for attempt in (1, 2):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(
            ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text="Run All Cells"
        ).first.click()
        try:
            page.wait_for_function(
                f"() => ({prompts})().some(t => /\\[(\\*|\\d+)\\]/.test(t))", timeout=10_000
            )
            return
        except Exception:
            if attempt == 2:
                raise


def wait_all_executed_lab(page: Any, panel: str, timeout_ms: int = 240_000) -> None:
    n_code = page.locator(f"{panel} .jp-CodeCell").count()
    prompts = (
        f"() => [...document.querySelectorAll('{panel} .jp-CodeCell .jp-InputArea-prompt')]"
        ".map(e => e.textContent)"
    )
    page.wait_for_function(
        f"() => ({prompts})().filter(t => /\\[\\d+\\]/.test(t)).length >= {n_code}",
        timeout=timeout_ms,
    )
    page.wait_for_selector(f"{panel} .jp-Notebook-ExecutionIndicator[data-status='idle']")


def error_outputs(page: Any, scope: str) -> list[str]:
    return page.eval_on_selector_all(
        f"{scope} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']",
        "es => es.map(e => e.textContent.slice(0, 500))",
    )
