"""Sandbox protocols are found like adapters: built-in modules, then plugins' entry points.

Plugins here are real distributions written to a folder on ``sys.path`` (see
tests/providers/test_registry.py); the installed example plugin is tests/plugins'."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from genwidgets.sandbox import DEFAULT_PORTS, DOCUMENTED_LIMITS, PROVIDERS, Sandbox, _protocols

Install = Callable[[str, dict[str, str], dict[str, str]], None]

PROTOCOL = '''
from starlette.responses import JSONResponse
from genwidgets.sandbox.protocol import ProviderApp

class Echo(ProviderApp):
    name = "{name}"
    ROUTES = (("GET", "/hello", "hello"),)

    def error(self, status, kind, message):
        return JSONResponse({{"oops": message}}, status)

    async def hello(self, request):
        return JSONResponse({{"hello": "{name}"}})

APPS = {{"{name}": Echo}}
PORTS = {ports}
LIMITS = {limits}
'''


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    monkeypatch.syspath_prepend(str(tmp_path))

    def _install(dist: str, points: dict[str, str], modules: dict[str, str]) -> None:
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in points.items())
        (info / "entry_points.txt").write_text(f"[genwidgets.sandbox]\n{lines}")
        _protocols.refresh()

    yield _install
    for module in [m for m in sys.modules if m.startswith("gw_sb_")]:
        del sys.modules[module]
    monkeypatch.undo()
    _protocols.refresh()


def test_the_seed_protocols_keep_their_ports() -> None:
    seeds = {"onerouter": 8100, "segmind": 8101, "rixapi": 8102, "netmind": 8103, "oxen": 8104}
    assert {name: DEFAULT_PORTS[name] for name in seeds} == seeds
    assert DEFAULT_PORTS["onerouter_poll"] == 8105
    assert set(seeds) <= set(PROVIDERS) and "onerouter_poll" not in PROVIDERS
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS)  # every port its own


def test_a_plugin_protocol_is_served_on_its_own_port(install: Install) -> None:
    source = PROTOCOL.format(name="echo", ports={}, limits=(60, 2))
    install("gw-sb-echo", {"echo": "gw_sb_echo"}, {"gw_sb_echo": source})
    assert "echo" in _protocols.protocol_names()
    assert _protocols.default_ports()["echo"] >= _protocols.FIRST_FREE_PORT
    assert DOCUMENTED_LIMITS["echo"] == (60, 2)  # its published limits come with it
    with Sandbox() as sb:
        answer = httpx.get(f"{sb.urls['echo']}/hello", headers={"Authorization": "Bearer k"})
        assert answer.json() == {"hello": "echo"}
        assert sb.env["GENWIDGETS_ECHO_URL"] == sb.urls["echo"]
        assert sb.stats()["requests"]["echo"]["hello"] == 1  # through the shared pipeline


def test_a_broken_plugin_protocol_is_skipped_with_a_warning(install: Install) -> None:
    install(
        "gw-sb-broken",
        {"wobbly": "gw_sb_broken", "clash": "gw_sb_clash"},
        {
            "gw_sb_broken": "raise ImportError('no starlette today')\n",
            "gw_sb_clash": PROTOCOL.format(name="clash", ports={"clash": 8101}, limits=None),
        },
    )
    with pytest.warns(RuntimeWarning) as caught:
        names = _protocols.protocol_names()
    said = " | ".join(str(w.message) for w in caught)
    assert "'wobbly' protocol (from gw-sb-broken 0.1) is not served" in said
    assert "no starlette today" in said
    assert "'clash' protocol" in said and "'segmind'" in said  # port 8101 is segmind's
    assert "wobbly" not in names and "clash" not in names and "segmind" in names


def test_a_protocol_must_declare_its_apps(install: Install) -> None:
    install("gw-sb-empty", {"empty": "gw_sb_empty"}, {"gw_sb_empty": "APPS = {}\n"})
    with pytest.warns(RuntimeWarning, match="declares no APPS mapping with a 'empty' port"):
        assert "empty" not in _protocols.protocol_names()
