"""The example plugin (tests/plugin_example, installed by scripts/setup.sh) used like a built-in:
found through its entry points, served by the sandbox, run by the client over real HTTP, listed
by `genwidgets models`, offered by the form. Its protocol round trips are the test kit's
`ProtocolSuite`, as a plugin author would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from genwidgets import AsyncClient, Status
from genwidgets.providers import get_provider_class, provider_names
from genwidgets.sandbox import PROVIDERS
from genwidgets.testing import ProtocolSuite, check_adapter

PLUGIN = Path(__file__).parents[1] / "plugin_example"
INSTALL = f"the example plugin is not installed: run scripts/setup.sh (pip install -e {PLUGIN})"


def test_the_example_plugin_is_installed_with_both_entry_points() -> None:
    names = {
        group: {p.name for p in metadata.entry_points(group=group)}
        for group in ("genwidgets.providers", "genwidgets.sandbox")
    }
    assert all("example" in found for found in names.values()), INSTALL
    assert "example" in provider_names() and "example" not in provider_names(plugins=False)
    assert "example" in PROVIDERS


def test_its_adapter_keeps_the_contract() -> None:
    cls = get_provider_class("example")
    assert cls.__module__ == "genwidgets_example.adapter"
    check_adapter(cls)


class TestExampleProtocol(ProtocolSuite):
    provider = "example"
    models = {"image": "sketch", "video": "clip"}
    params = {"clip": {"duration": 1}}
    doc_cases = PLUGIN / "fixtures"

    @pytest.fixture(scope="class")
    @classmethod
    def protocol_sandbox(cls, sandbox: Any) -> Iterator[Any]:
        yield sandbox  # the session's: the plugin's protocol is served beside the built-ins


async def test_the_async_client_runs_it_like_a_built_in(sb: Any, tmp_path: Path) -> None:
    assert sb.urls["example"] != sb.urls["segmind"]  # a port of its own
    async with AsyncClient(
        api_keys={"example": "k"}, base_urls=sb.urls, cache_dir=tmp_path, poll_interval=(0.05, 0.3)
    ) as plugin_client:
        task = await plugin_client.run("example:clip", prompt="waves", duration=2)
        assert task.status is Status.SUCCEEDED and task.provider == "example"
    assert sb.stats()["submits"] == {"example": 1}


def test_genwidgets_models_lists_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "EXAMPLE_TOKEN": "t"}
    out = subprocess.run(
        [sys.executable, "-m", "genwidgets", "models"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert "example (key set; https://api.example.invalid; plugin from " in out
    assert "example:sketch" in out and "example:clip" in out
    assert "genwidgets-example-plugin 0.1.0" in out


async def test_the_forms_model_picker_offers_it(tmp_path: Path) -> None:
    from genwidgets.widgets import SubmitForm

    async with AsyncClient(api_keys={"example": "k"}, cache_dir=tmp_path) as client:
        form = SubmitForm(client, model="example:clip")
        try:
            assert {"example:sketch", "example:clip"} <= set(form._model.options)
            model, requests = form.requests()
            assert model == "example:clip" and requests
        finally:
            form.close()


def test_gen_magic_takes_its_models() -> None:
    from genwidgets.magic import parse_gen_args

    args = parse_gen_args("example:sketch a lighthouse at dusk")
    assert args["model"] == "example:sketch" and args["prompt"] == "a lighthouse at dusk"
