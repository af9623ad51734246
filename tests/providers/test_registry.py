"""The provider registry: built-ins found by module, plugins by entry point, both lazily.

Plugins here are real distributions: a package and its ``.dist-info`` (METADATA and
entry_points.txt) written to a folder put on ``sys.path``, which `importlib.metadata` finds
exactly as it finds a pip-installed one.
"""

from __future__ import annotations

import pkgutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import genwidgets.providers as providers
from genwidgets import AsyncClient, ConfigError, Status, UnknownProvider
from genwidgets._budget import DEFAULT_LIMITS, PROVIDER_LIMITS, resolve_limits
from genwidgets.providers import (
    BrokenPlugin,
    Limits,
    ProviderLimits,
    _registry,
    get_provider_class,
    parse_model_id,
    provider_names,
)
from genwidgets.testing import check_adapter

ADAPTER = '''
from genwidgets.providers import Limits, Provider, ProviderLimits

class {cls}(Provider):
    name = "{name}"
    env_var = "{env}"
    default_base_url = "https://api.{name}.invalid"
    limits = ProviderLimits(Limits(42, 3), frozenset({{"submit"}}), "invented: a test plugin")
'''

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a distribution into a fresh sys.path folder: `install(dist, {entry: target},
    {module: source})`; the registry forgets it again after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def _install(dist: str, points: dict[str, str], modules: dict[str, str]) -> None:
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in points.items())
        (info / "entry_points.txt").write_text(f"[genwidgets.providers]\n{lines}")
        _registry.refresh()

    yield _install
    for module in [m for m in sys.modules if m.startswith("gw_test_")]:
        del sys.modules[module]
    monkeypatch.undo()
    _registry.refresh()


def test_every_module_of_the_package_is_a_provider_without_a_table() -> None:
    modules = {m.name for m in pkgutil.iter_modules(providers.__path__) if m.name[0] != "_"}
    assert set(provider_names(plugins=False)) == modules
    assert provider_names(plugins=False)[0] == "local"  # the one that needs no key comes first
    for name in modules:
        assert get_provider_class(name).name == name


def test_a_plugin_is_used_like_a_built_in(install: Install) -> None:
    install(
        "gw-test-ok",
        {"acme": "gw_test_ok:AcmeProvider"},
        {"gw_test_ok": ADAPTER.format(cls="AcmeProvider", name="acme", env="ACME_KEY")},
    )
    assert "gw_test_ok" not in sys.modules  # listing names imports nothing
    builtins = provider_names(plugins=False)
    assert "acme" in provider_names() and "acme" not in builtins
    assert provider_names()[: len(builtins)] == builtins  # plugins come after the built-ins
    assert "gw_test_ok" not in sys.modules
    assert parse_model_id("acme:v1") == ("acme", "v1")
    cls = get_provider_class("acme")
    assert cls.__module__ == "gw_test_ok" and cls.name == "acme"
    # its budget row joins the table; the usual env override works for any provider name
    assert PROVIDER_LIMITS["acme"].evidence == "invented: a test plugin"
    assert DEFAULT_LIMITS["acme"].requests_per_minute == 42
    assert "acme" in list(DEFAULT_LIMITS)


def test_a_plugin_budget_takes_the_usual_env_override(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        "gw-test-env",
        {"acme": "gw_test_env:AcmeProvider"},
        {"gw_test_env": ADAPTER.format(cls="AcmeProvider", name="acme", env="ACME_KEY")},
    )
    monkeypatch.delenv("GENWIDGETS_BUDGETS", raising=False)
    assert resolve_limits("acme").max_in_flight == 3
    monkeypatch.setenv("GENWIDGETS_ACME_RPM", "7")
    assert resolve_limits("acme").requests_per_minute == 7


def test_a_broken_plugin_names_itself_and_breaks_nothing_else(install: Install) -> None:
    install(
        "gw-test-broken",
        {"wobbly": "gw_test_broken:WobblyProvider"},
        {"gw_test_broken": "import gw_test_no_such_dependency\n"},
    )
    assert "wobbly" in provider_names()  # listed: it is installed
    with pytest.raises(BrokenPlugin) as caught:
        get_provider_class("wobbly")
    text = str(caught.value)
    assert "wobbly = gw_test_broken:WobblyProvider" in text
    assert "gw-test-broken 0.1" in text and "gw_test_no_such_dependency" in text
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(BrokenPlugin):  # the same answer every time, no re-import
        get_provider_class("wobbly")
    assert get_provider_class("segmind").name == "segmind"
    assert "wobbly" not in PROVIDER_LIMITS and "wobbly" not in list(PROVIDER_LIMITS)


async def test_a_client_skips_a_broken_plugin_in_menus_and_explains_on_use(
    install: Install, tmp_path: Path
) -> None:
    install(
        "gw-test-broken2",
        {"wobbly": "gw_test_broken2:WobblyProvider"},
        {"gw_test_broken2": "raise RuntimeError('half-installed')\n"},
    )
    async with AsyncClient(cache_dir=tmp_path / "cache", api_keys={"wobbly": "k"}) as client:
        assert "local" in client.configured_providers()
        assert "wobbly" not in client.configured_providers()
        assert "local" in client.available_models()
        with pytest.raises(BrokenPlugin, match="half-installed"):
            client.validate("wobbly:m", prompt="x")


def test_a_plugin_must_point_at_an_adapter_named_like_its_entry_point(install: Install) -> None:
    install(
        "gw-test-names",
        {
            "acme": "gw_test_names:AcmeProvider",
            "notanadapter": "gw_test_names:helper",
        },
        {"gw_test_names": ADAPTER.format(cls="AcmeProvider", name="acne", env="K") + "helper=1\n"},
    )
    with pytest.raises(BrokenPlugin, match="adapter's name is 'acne', not 'acme'"):
        get_provider_class("acme")
    with pytest.raises(BrokenPlugin, match="not a genwidgets Provider subclass"):
        get_provider_class("notanadapter")


def test_a_plugin_never_shadows_a_built_in_and_bad_names_are_refused(install: Install) -> None:
    install(
        "gw-test-shadow",
        {"segmind": "gw_test_shadow:Fake", "Bad-Name": "gw_test_shadow:Fake"},
        {"gw_test_shadow": ADAPTER.format(cls="Fake", name="segmind", env="K")},
    )
    assert get_provider_class("segmind").__module__ == "genwidgets.providers.segmind"
    assert "Bad-Name" not in provider_names() and "bad-name" not in provider_names()
    refused = " | ".join(_registry.refused())
    shadow = "segmind = gw_test_shadow:Fake (from gw-test-shadow 0.1) is ignored: a built-in"
    assert shadow in refused
    assert "Bad-Name" in refused and "lower-case letters" in refused
    with pytest.raises(UnknownProvider):
        parse_model_id("Bad-Name:x")


@pytest.mark.parametrize("name", provider_names(plugins=False))
def test_every_built_in_keeps_the_adapter_contract(name: str) -> None:
    check_adapter(get_provider_class(name))


def test_the_contract_check_names_each_problem() -> None:
    class Sloppy(get_provider_class("segmind")):  # type: ignore[misc,valid-type]
        env_vars = ("lower_case",)
        default_base_url = "http://api.example.invalid/v1"
        limits = ProviderLimits(Limits(5, None), frozenset({"submits"}), "a guess")
        statuses = {"OK": Status.SUCCEEDED}
        can_cancel = True

    with pytest.raises(AssertionError) as caught:
        check_adapter(Sloppy)
    said = str(caught.value)
    for problem in (
        "'lower_case' is not an environment variable name",
        "must be an https origin",
        "names kinds outside",
        "must start with 'documented (<where>)' or 'invented'",
        "statuses maps no provider word to failed",
        "can_cancel is True but build_cancel is not implemented",
    ):
        assert problem in said
