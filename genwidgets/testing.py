"""A test kit for provider adapters, built-in or plugin (needs pytest; see docs/adapters.md).

Three parts, each usable on its own:

- `check_adapter(cls)`: the contract an adapter class must keep (names, key variables, an origin
  as base URL, a budget row with its evidence, a status table, no IO), every problem at once.
- `check_doc_case(adapter, case)` / `doc_cases(folder)`: the provider's documented JSON shapes
  as fixtures (one ``*.json`` file each: the answer, and what the adapter must make of it).
- `ProtocolSuite`: subclass it in a test module and the real client runs over real HTTP against
  the sandbox serving your protocol: success for each media kind (downloaded and sniffed), a
  failed task, an expired one, 429s on submit and on polls, 5xx/reset/malformed polls, a bad
  key, a missing key, bad parameters, and cancel (or its refusal)::

      from genwidgets.testing import ProtocolSuite

      class TestExampleProtocol(ProtocolSuite):
          provider = "example"
          models = {"image": "sketch", "video": "clip"}
          doc_cases = Path(__file__).parent / "fixtures" / "example"

The sandbox's prompt markers drive the outcomes (``[fail]``, ``[slow]``, ``[expire]``); a
protocol module built on `ProviderApp` and `State.create_task` honours them for free.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import filetype
import pytest
import stamina

from . import _exceptions as errors
from ._limits import ProviderLimits
from ._models import Status, Task
from .providers import Provider, Response, get_provider_class

__all__ = ["ProtocolSuite", "check_adapter", "check_doc_case", "doc_cases"]

#: The request kinds a budget row may say its rate counts (the transport's kinds).
REQUEST_KINDS = frozenset({"submit", "poll", "result", "cancel", "list", "delete"})
#: Modules an adapter must not import: it translates, the client does the IO.
IMPURE_MODULES = frozenset({"httpx", "socket", "asyncio", "os", "time", "requests", "threading"})
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ENV = re.compile(r"[A-Z][A-Z0-9_]*")
THEN = datetime(2025, 5, 4, 3, 2, 1, tzinfo=timezone.utc)


def check_adapter(cls: type[Provider]) -> None:
    """Assert that `cls` keeps the adapter contract (docs/adapters.md); lists every problem."""
    problems = [*_identity(cls), *_budget(cls)]
    if cls.default_base_url:  # a remote protocol (`local` runs in this process: no wire)
        problems += [*_protocol(cls), *_purity(cls)]
    assert not problems, f"{cls.__name__} breaks the adapter contract:\n- " + "\n- ".join(problems)


def _identity(cls: type[Provider]) -> Iterator[str]:
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        yield f"{cls!r} is not a genwidgets.providers.Provider subclass"
        return
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        yield f"name {name!r} must be lower-case letters, digits and '_', starting with a letter"
    for var in ((cls.env_var,) if cls.env_var else ()) + tuple(cls.env_vars):
        if not _ENV.fullmatch(var):
            yield f"key variable {var!r} is not an environment variable name"
    if cls.env_vars and not cls.env_var:
        yield "env_vars are alternatives to env_var: set env_var first"
    url = cls.default_base_url
    if cls.env_var and not url:
        yield "a provider with a key needs a default_base_url"
    if url:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc or parts.path.strip("/") or parts.query:
            yield f"default_base_url {url!r} must be an https origin (paths go in the requests)"
    adapter = cls(api_key="sk-genwidgets-contract-check")
    if "sk-genwidgets-contract-check" in repr(adapter):
        yield "repr() shows the API key"


def _budget(cls: type[Provider]) -> Iterator[str]:
    row = cls.limits
    if row is None:
        if cls.env_var:
            yield "limits is None: declare ProviderLimits(...) with its evidence"
        return
    if not isinstance(row, ProviderLimits):
        yield f"limits must be a ProviderLimits, not {type(row).__name__}"
        return
    if row.counts is not None and not set(row.counts) <= REQUEST_KINDS:
        yield f"limits.counts {sorted(row.counts)} names kinds outside {sorted(REQUEST_KINDS)}"
    if not re.match(r"(documented|invented)\b", row.evidence or ""):
        yield "limits.evidence must start with 'documented (<where>)' or 'invented'"


def _protocol(cls: type[Provider]) -> Iterator[str]:
    ends = set(cls.statuses.values())  # a status table that can end well and badly
    for needed in (Status.SUCCEEDED, Status.FAILED):
        if needed not in ends:
            yield f"statuses maps no provider word to {needed.value}"
    first, cap = cls.poll_interval
    if not 0 < first <= cap:
        yield f"poll_interval {cls.poll_interval} must be (first > 0, cap >= first)"
    for key, info in cls(api_key=None).models.items():  # local's is a property
        if info.name != key:
            yield f"models[{key!r}] is named {info.name!r}"
    needs = {"can_cancel": "build_cancel", "can_delete": "build_delete"}
    needs["has_events"] = "build_events"
    for flag, method in needs.items():
        if getattr(cls, flag) and getattr(cls, method) is getattr(Provider, method):
            yield f"{flag} is True but {method} is not implemented"
    if cls.can_list and not cls.list_path:
        yield "can_list is True but list_path is empty"


def _purity(cls: type[Provider]) -> Iterator[str]:
    try:
        tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in IMPURE_MODULES:
                yield f"its module imports {name}: adapters do no IO (the client does)"


# ---------------------------------------------------------------------------- doc shapes
def doc_cases(folder: str | Path) -> list[Any]:
    """The ``*.json`` cases in `folder`, as `pytest.param`s named after their files."""
    paths = sorted(Path(folder).glob("*.json"))
    assert paths, f"no *.json doc cases in {folder}"
    return [pytest.param(json.loads(path.read_text()), id=path.stem) for path in paths]


def check_doc_case(adapter: Provider, case: Mapping[str, Any]) -> Task | None:
    """Feed one documented answer to `adapter` and check what it makes of it.

    A case is ``{"source": where the shape is documented, "call": "submit" | "poll" |
    "result" | "cancel", "model": "m" (optional), "http": 200, "headers": {...}, "body": <JSON>
    (or "text": "<raw body>"), "expect": {...}}``; `expect` holds ``status`` (a `Status` value),
    ``outputs`` (how many), ``error`` (a substring of the task's error), ``id``, ``cost``, or
    ``raises`` (an exception name in genwidgets) with ``match`` (a substring of its message).
    """
    model = case.get("model") or next(iter(adapter.models), "model")
    raw = case["text"].encode() if "text" in case else json.dumps(case.get("body")).encode()
    headers = {"content-type": "application/json", **case.get("headers", {})}
    answer = Response(int(case.get("http", 200)), headers, raw, received_at=THEN)
    task = Task(id="task-1", provider=adapter.name, model=model, status=Status.RUNNING)
    expect = case["expect"]
    call = case["call"]
    if "raises" in expect:
        with pytest.raises(getattr(errors, expect["raises"])) as caught:
            _parse(adapter, call, model, task, answer)
        assert expect.get("match", "") in str(caught.value), str(caught.value)
        return None
    got = _parse(adapter, call, model, task, answer)
    assert isinstance(got, Task), got
    if "status" in expect:
        assert got.status.value == expect["status"], (got.status, got.error)
    if "outputs" in expect:
        assert len(got.outputs) == expect["outputs"], got.outputs
    if "error" in expect:
        assert expect["error"] in (got.error or ""), got.error
    if "id" in expect:
        assert got.id == expect["id"], got.id
    if "cost" in expect:
        assert got.cost == expect["cost"], got.cost
    return got


def _parse(adapter: Provider, call: str, model: str, task: Task, answer: Response) -> Any:
    if call == "submit":
        return adapter.parse_submit(model, {"prompt": "x"}, answer)
    parsers = {"poll": adapter.parse_poll, "result": adapter.parse_result}
    parsers["cancel"] = adapter.parse_cancel
    return parsers[call](task, answer)


# ---------------------------------------------------------------------------- round trips
class ProtocolSuite:
    """Protocol round trips through the real `genwidgets.Client` and the sandbox.

    Set `provider`, `models` (kind -> model name: one per kind the provider serves) and, if the
    models need them, `params` (model -> extra parameters). Override `protocol_sandbox` to share
    a sandbox you already run."""

    provider: ClassVar[str]
    models: ClassVar[Mapping[str, str]]
    params: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    doc_cases: ClassVar[Path | None] = None
    api_key: ClassVar[str] = "protocol-suite-key"

    @pytest.fixture(scope="class")
    @classmethod
    def protocol_sandbox(cls) -> Iterator[Any]:
        from .sandbox import Sandbox

        with Sandbox(task_seconds=0.3, queue_seconds=0.1) as sandbox:
            yield sandbox

    @pytest.fixture
    def suite_sandbox(self, protocol_sandbox: Any) -> Iterator[Any]:
        protocol_sandbox.reset()
        protocol_sandbox.set_limits()
        assert self.provider in protocol_sandbox.urls, f"the sandbox serves no {self.provider!r}"
        yield protocol_sandbox
        protocol_sandbox.reset()

    @pytest.fixture
    def instant_retries(self) -> Iterator[None]:
        with stamina.set_testing(True, attempts=100, cap=True):
            yield

    def client(self, sandbox: Any, tmp_path: Path, key: str | None = None, **kw: Any) -> Any:
        """A blocking client pointed at the sandbox, with no journal and no budget."""
        from ._sync import Client

        options: dict[str, Any] = {"poll_interval": (0.05, 0.3), "retry_timeout": 20.0}
        return Client(
            api_keys={self.provider: key or self.api_key},
            base_urls=sandbox.urls,
            cache_dir=tmp_path / "cache",
            journal=False,
            replay="off",
            budgets=False,
            **{**options, **kw},
        )

    def model(self, kind: str | None = None) -> tuple[str, dict[str, Any]]:
        name = self.models[kind] if kind else next(iter(self.models.values()))
        return f"{self.provider}:{name}", dict(self.params.get(name, {}))

    def test_adapter_keeps_the_contract(self) -> None:
        check_adapter(get_provider_class(self.provider))

    def test_documented_shapes(self) -> None:
        if self.doc_cases is None:
            pytest.skip("no doc_cases folder set")
        adapter = get_provider_class(self.provider)(api_key=self.api_key)
        for case in doc_cases(self.doc_cases):
            check_doc_case(adapter, case.values[0])

    def test_success_for_each_media_kind(self, suite_sandbox: Any, tmp_path: Path) -> None:
        with self.client(suite_sandbox, tmp_path) as client:
            for kind in self.models:
                model, params = self.model(kind)
                task = client.run(model, prompt=f"a {kind} of a lighthouse", seed=7, **params)
                assert task.status is Status.SUCCEEDED, task
                assert task.created_at is not None and task.finished_at is not None
                done = client.download(task)
                assert done.outputs, done
                for output in done.outputs:
                    sniffed = filetype.guess(output.path.read_bytes())
                    assert sniffed is not None and sniffed.mime.split("/")[0] == kind, output

    def test_a_failed_task_says_why(self, suite_sandbox: Any, tmp_path: Path) -> None:
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            done = client.wait(client.submit(model, prompt="doomed [fail]", **params), timeout=30)
        assert done.status is Status.FAILED and done.error, done

    def test_a_task_the_provider_forgot_is_expired(
        self, suite_sandbox: Any, tmp_path: Path
    ) -> None:
        """Gone (404) while still running, so no push event can report it done first."""
        suite_sandbox.set_faults(expire_after=0.2)
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            done = client.wait(client.submit(model, prompt="gone [slow]", **params), timeout=30)
        assert done.status is Status.EXPIRED, done

    def test_429_on_submit_is_retried_once_per_task(
        self, suite_sandbox: Any, tmp_path: Path
    ) -> None:
        suite_sandbox.set_faults(submit_rate_limit_rate=0.5, retry_after=0.05, seed=3)
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            for i in range(4):
                assert client.submit(model, prompt=f"busy {i}", **params).status is not None
        prints = suite_sandbox.stats()["submit_fingerprints"]
        assert len(prints) == 4 and set(prints.values()) == {1}, prints
        assert suite_sandbox.stats()["statuses"].get("429", 0) >= 1

    @pytest.mark.usefixtures("instant_retries")
    def test_429_5xx_resets_and_malformed_polls_are_ridden_out(
        self, suite_sandbox: Any, tmp_path: Path
    ) -> None:
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            suite_sandbox.set_faults(burst_429=3, retry_after=0.1)
            assert client.run(model, prompt="patience", **params).status is Status.SUCCEEDED
            suite_sandbox.set_faults(error_rate=0.3, reset_rate=0.15, malformed_rate=0.15, seed=5)
            task = client.submit(model, prompt="flaky", **params)
            assert client.wait(task, timeout=60).status is Status.SUCCEEDED
        assert suite_sandbox.stats()["statuses"].get("429", 0) >= 1
        assert set(suite_sandbox.stats()["submit_fingerprints"].values()) == {1}

    def test_a_bad_key_is_an_auth_error(self, suite_sandbox: Any, tmp_path: Path) -> None:
        model, params = self.model()
        client = self.client(suite_sandbox, tmp_path, key="bad-key")
        with client, pytest.raises(errors.AuthError) as caught:
            client.submit(model, prompt="let me in", **params)
        assert "bad-key" not in str(caught.value)

    def test_a_missing_key_names_its_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from ._sync import Client

        cls = get_provider_class(self.provider)
        for var in ((cls.env_var,) if cls.env_var else ()) + cls.env_vars:
            monkeypatch.delenv(var, raising=False)
        model, params = self.model()
        client = Client(cache_dir=tmp_path, journal=False)
        with client, pytest.raises(errors.MissingKey, match=str(cls.env_var)):
            client.submit(model, prompt="x", **params)

    def test_bad_params_fail_before_any_request(self, suite_sandbox: Any, tmp_path: Path) -> None:
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            for bad in ({"prompt": ""}, {"prompt": "x", "seed": "abc"}):
                with pytest.raises(errors.InvalidParams):
                    client.submit(model, **{**params, **bad})
        assert suite_sandbox.stats()["submits"].get(self.provider, 0) == 0

    def test_cancel_reaches_the_server_or_is_refused(
        self, suite_sandbox: Any, tmp_path: Path
    ) -> None:
        model, params = self.model()
        with self.client(suite_sandbox, tmp_path) as client:
            task = client.submit(model, prompt="long [slow]", **params)
            if not client.can_cancel(task):
                with pytest.raises(errors.NotSupported):
                    client.cancel(task)
                return
            assert client.cancel(task).status is Status.CANCELLED
            assert client.get(task).status is Status.CANCELLED
        assert suite_sandbox.stats()["cancels"] >= 1
