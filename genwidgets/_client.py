"""`AsyncClient`: submit, follow, cancel and download tasks; a façade over the client's parts.

Each part is a small module with one job: `_accounts` (adapters, keys, budgets), `_transport`
(HTTP under the budget, retries, the submit path), `_operations` (one request about one task),
`_following` (the poll loop and deadlines), `_tracking` (one record per followed task), `_events`
(push events), `_downloads` (outputs into the cache), `_replay` (what the journal already knows).
`Client`, the blocking twin, runs the very same coroutines (`_sync`); `get_client`/`configure`
keep the process defaults (`_defaults`); `_config` reads the environment.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import httpx

from ._accounts import Accounts
from ._budget import Budget, BudgetSetting
from ._cache import DEFAULT_MAX_BYTES, Cache
from ._config import replay_mode
from ._cost import CostGuard, CostPlan, shared_guard
from ._defaults import cancel_all, configure, get_client, run
from ._downloads import Downloads, copy_outputs
from ._exceptions import ReplayMissing, SubmitUncertain, TaskCancelled, TaskExpired, TaskFailed
from ._following import Following
from ._models import Status, Task
from ._operations import Operations
from ._replay import JournalSetting, Replay
from ._store import StoreSetting
from ._sync import Client
from ._tracking import DeadlineSetting, Tracker
from ._transport import Transport, new_http_client
from .journal import Journal
from .providers import ModelInfo, Provider, parse_model_id

__all__ = ["AsyncClient", "Client", "cancel_all", "configure", "get_client", "run"]

log = logging.getLogger("genwidgets")
TaskObserver = Callable[[Task], None]
WaitNotice = Callable[[str], None]


class AsyncClient:
    """Submit, poll, cancel and download generation tasks at any provider, asynchronously.

    >>> async with AsyncClient() as client:
    ...     task = await client.run("local:image", prompt="a red rose", seed=3)
    ...     task.outputs[0].path

    Keys come from `api_keys={"segmind": ...}` or the provider's environment variable
    (`SEGMIND_API_KEY`, ...), read when a provider is first used. Base URLs come from
    `base_urls={...}` or `GENWIDGETS_<PROVIDER>_URL` (point them at `genwidgets.sandbox`).

    `budgets` sets each provider account's requests/min and tasks in flight (`genwidgets.Limits`;
    defaults from the providers' documented limits, `False` turns them off), see `_budget`.
    `cost_guard` counts paid submits against caps and prices (`genwidgets.CostGuard`; default: the
    session's, from `GENWIDGETS_PRICES`, `GENWIDGETS_MAX_PAID_TASKS`, `GENWIDGETS_MAX_SPEND`).
    `store` (default `GENWIDGETS_STORE`; `s3://bucket/prefix`, `gs://`, `az://`, a shared folder)
    keeps every output by sha256 for a team: the cache fetches from it what the journal knows.
    """

    def __init__(
        self,
        *,
        api_keys: Mapping[str, str] | None = None,
        base_urls: Mapping[str, str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        max_connections_per_provider: int = 16,
        poll_interval: tuple[float, float] | None = None,
        retry_attempts: int = 6,
        retry_timeout: float = 120.0,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        http_client: httpx.AsyncClient | None = None,
        journal: JournalSetting = None,
        replay: str | None = None,
        default_deadline: DeadlineSetting = 3600.0,
        budgets: BudgetSetting = None,
        cost_guard: CostGuard | None = None,
        store: StoreSetting = None,
    ) -> None:
        self.cache = Cache(cache_dir, store)
        self._own_http = http_client is None
        self._http = http_client or new_http_client(timeout)
        self._accounts = Accounts(api_keys, base_urls, budgets)
        self._transport = Transport(
            self._http,
            self._accounts.budget,
            attempts=retry_attempts,
            retry_timeout=retry_timeout,
            max_per_provider=max_connections_per_provider,
        )
        self._operations = Operations(self._http, self._accounts, self._transport, self.cache)
        refresh, headers = self._operations.refresh_output, self._operations.download_headers
        self._downloads = Downloads(self._transport, self.cache, refresh, headers)
        self.max_download_bytes = max_download_bytes
        self._replay = Replay(self.cache, journal, replay_mode(replay))
        self._tracker = Tracker(default_deadline, self._replay.durations)
        self._following = Following(
            self, (self._accounts, self._operations, self._tracker), self._seen, poll_interval
        )
        self._observers: builtins.list[TaskObserver] = []
        self.add_observer(self._replay.record)  # the journal records every snapshot
        self._cost_guard = cost_guard
        self._closed = False

    # ------------------------------------------------------------------ set-up and introspection
    def provider(self, name: str) -> Provider:
        """The adapter instance for `name`, with its key and base URL resolved (once)."""
        return self._accounts.adapter(name)

    def configured_providers(self) -> builtins.list[str]:
        """Providers usable right now: `local` plus every provider with a key configured."""
        return self._accounts.configured()

    def available_models(self) -> dict[str, builtins.list[ModelInfo]]:
        """Known models of the usable providers (remote catalogues are open: others work too)."""
        return {
            name: builtins.list(self._accounts.catalogue(name).models.values())
            for name in self.configured_providers()
        }

    def model_info(self, model: str) -> ModelInfo | None:
        provider, name = parse_model_id(model)
        return self._accounts.catalogue(provider).model_info(name)

    def validate(self, model: str, **params: Any) -> dict[str, Any]:
        """Check a request exactly as `submit` would, sending nothing; returns the clean params."""
        provider, name = parse_model_id(model)
        return self._accounts.catalogue(provider).validate(name, params)

    def can_cancel(self, task: Task | str) -> bool:
        name = task.provider if isinstance(task, Task) else parse_model_id(task)[0]
        return self._accounts.catalogue(name).can_cancel

    def budget(self, provider: str) -> Budget | None:
        """The rate/concurrency budget this client's `provider` account spends (None: unlimited).

        Budgets are per loop: call this from a coroutine, or after a first task has run.
        """
        return self._accounts.budget(provider)

    @property
    def cost_guard(self) -> CostGuard:
        """The guard this client's paid submits go through (the session's unless given)."""
        return self._cost_guard if self._cost_guard is not None else shared_guard()

    @property
    def journal(self) -> Journal | None:
        """The task journal (opened on first use); None when disabled."""
        return self._replay.journal

    @property
    def replay(self) -> str:
        """The replay mode: auto, off or require (see `submit`)."""
        return self._replay.mode

    def add_observer(self, callback: TaskObserver) -> None:
        """Call `callback(task)` with every new snapshot this client sees (the journal uses it)."""
        self._observers.append(callback)

    def _seen(self, task: Task) -> Task:
        """Every snapshot passes here: the tracker, budgets, costs, then the observers (the
        journal first)."""
        self._tracker.seen(task)
        if task.done:
            budget = self._accounts.known_budget(task.provider)
            if budget is not None:
                budget.release(task.id)
            if task.provider != "local" and not task.replayed:
                self.cost_guard.settle(task)
        for callback in self._observers:
            try:
                callback(task)
            except Exception:  # an observer must never break the task it observes
                log.exception("task observer failed")
        return task

    # ------------------------------------------------------------------ the task lifecycle
    async def submit(
        self,
        model: str,
        *,
        fresh: bool = False,
        deadline: float | timedelta | None = None,
        on_wait: WaitNotice | None = None,
        **params: Any,
    ) -> Task:
        """Validate locally, then send one submit request. Returns the first snapshot.

        Replay (`GENWIDGETS_REPLAY`, default auto): a request that already succeeded is answered
        from the journal and the cache with no provider call, and one still running from an
        earlier kernel is re-attached instead of submitted again; `fresh=True` always submits.

        A submit is never retried after the request may have reached the provider (it could bill
        twice): a 5xx or a timeout while waiting for the answer raises `SubmitUncertain`.

        `deadline` (seconds or a timedelta; default `default_deadline`, one hour) bounds the whole
        call from now, waiting and submit retries included: once it passes, following the task
        cancels it where the provider can cancel and raises `DeadlineExceeded`.

        When the provider account's budget is full (tasks in flight, or its rate limit), the
        submit waits locally; `on_wait(message)` says what for and until about when (cards show
        "waiting for a slot: 5 of 5 segmind tasks in flight").
        """
        provider_name, name = parse_model_id(model)
        clean = self._accounts.catalogue(provider_name).validate(name, params)
        ends = self._tracker.deadline(provider_name, deadline)
        recorded = await self._replay.answer(
            provider_name, name, clean, fresh=fresh, following=self._tracker
        )
        if recorded is not None:
            if not recorded.done:
                self._tracker.follow(recorded, ends)
            return recorded  # replay needs no key: nothing is sent
        adapter = self.provider(provider_name)
        self._replay.refuse_orphaned(provider_name, name, clean, fresh)
        guard = self.cost_guard
        paid = guard.is_paid(f"{provider_name}:{name}")
        estimate = guard.reserve(f"{provider_name}:{name}") if paid else 0.0  # may refuse: caps
        try:
            with self._replay.submit_note(provider_name, name, clean) as note:
                until = None if ends is None else ends[0]
                task = await self._operations.submit(
                    adapter.name, name, clean, note, on_wait, until, self._seen
                )
                await note.answered(task)  # durable now: a hard kill must not lose a billed task
        except SubmitUncertain:
            if paid:  # it may have been accepted, and billed: count it as spent
                guard.absorb(estimate)
            raise
        except BaseException:
            if paid:
                guard.release(estimate)
            raise
        if paid:
            guard.bind(task.provider, task.id, estimate)
        self._tracker.follow(task, ends, submitted=True, sent_at=note.sent_at)
        return task

    def resume(self) -> builtins.list[Task]:
        """Tasks the journal holds as unfinished (running, or succeeded but not downloaded),
        e.g. after a kernel restart. Follow them with `wait`/`updates` and `download`."""
        tasks = [t for t in self._replay.unfinished() if (t.provider, t.id) not in self._tracker]
        for task in tasks:
            self._tracker.follow(task, self._tracker.deadline(task.provider, None))
        return tasks

    def live_tasks(self) -> builtins.list[Task]:
        """Newest snapshots of the tasks this client follows that have not ended."""
        return self._tracker.live()

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every live task this client follows, where its provider can cancel."""
        targets = [t for t in self.live_tasks() if self.can_cancel(t)]
        results = await asyncio.gather(*(self.cancel(t) for t in targets), return_exceptions=True)
        return [r for r in results if isinstance(r, Task)]

    def plan(self, requests: Iterable[tuple[str, Mapping[str, Any]]]) -> CostPlan:
        """What submitting these `(model, params)` requests would cost, sending nothing: every
        request is validated, and one the journal would replay (or re-attach) counts as free."""
        paid_models: builtins.list[str] = []
        replayed = 0
        for model, params in requests:
            provider_name, name = parse_model_id(model)
            clean = self._accounts.catalogue(provider_name).validate(name, dict(params))
            try:
                recorded = self._replay.recorded(  # a plan fetches nothing from the store
                    provider_name, name, clean, fresh=False, following=self._tracker, fetch=False
                )
            except ReplayMissing:
                recorded = None
            if recorded is not None:
                replayed += 1
            else:
                paid_models.append(f"{provider_name}:{name}")
        return self.cost_guard.plan(paid_models, free=replayed)

    async def get(self, task: Task) -> Task:
        """One fresh snapshot (polls the provider; fetches the result when it is ready)."""
        if task.done and (task.outputs or task.status is not Status.SUCCEEDED):
            return task
        sent = time.monotonic()
        new = await self._operations.poll(task)
        self._tracker.polled(new, time.monotonic(), sent=sent)
        return self._seen(new)

    def updates(self, task: Task) -> AsyncIterator[Task]:
        """Yield `task` and then every changed snapshot until (and including) a terminal one.

        Polls are timed from the task's own clock (when it was submitted, last polled and
        expected to finish), not from when this call started: a task that finished while nobody
        waited is polled at once."""
        return self._following.updates(task)

    async def wait(self, task: Task, timeout: float | timedelta | None = None) -> Task:
        """Wait until `task` is terminal and return that snapshot (any terminal status).

        `timeout` bounds only the waiting: `WaitTimeout` is raised and the task keeps running.
        """
        return await self._following.wait(task, timeout)

    async def cancel(self, task: Task) -> Task:
        """Ask the provider to stop the task; returns the resulting snapshot."""
        if task.done:
            return task
        return self._seen(await self._operations.cancel(task))

    async def download(self, task: Task, dest: str | os.PathLike[str] | None = None) -> Task:
        """Fetch every output into the cache (outputs gain `.path` and `.sha256`), and into the
        object store when there is one (`.store_url`).

        With `dest`, the files are also copied there, named after the task, never after a name the
        server chose.
        """
        task = await self._downloads.task(task, self.max_download_bytes, self._seen)
        return task if dest is None else await asyncio.to_thread(copy_outputs, task, dest)

    async def run(
        self,
        model: str,
        *,
        timeout: float | timedelta | None = None,
        dest: str | os.PathLike[str] | None = None,
        **params: Any,
    ) -> Task:
        """Submit, wait, download. Raises `TaskFailed`/`TaskCancelled`/`TaskExpired` if it did not
        succeed.

        `timeout` is the task's deadline: when it passes the remote job is cancelled where the
        provider can cancel, and `DeadlineExceeded` is raised. An interrupt (Jupyter's Stop,
        Ctrl-C) also cancels the job it submitted, then propagates.
        """
        task = await self.submit(model, deadline=timeout, **params)
        try:
            task = await self.wait(task)
        except (asyncio.CancelledError, KeyboardInterrupt):
            latest = self._tracker.latest(task)
            if not latest.done and self.can_cancel(latest):
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.cancel(latest))
            raise
        if task.status is Status.SUCCEEDED:
            return await self.download(task, dest)
        raise {Status.CANCELLED: TaskCancelled, Status.EXPIRED: TaskExpired}.get(
            task.status, TaskFailed
        )(task)

    async def list(self, provider: str, **filters: str) -> builtins.list[Task]:
        """Tasks the provider reports (NetMind: generations; Oxen: active queue)."""
        return await self._operations.list(provider, **filters)

    async def delete(self, task: Task) -> None:
        """Delete the task at the provider (NetMind), e.g. after its outputs are downloaded."""
        await self._operations.delete(task)

    # ------------------------------------------------------------------ lifetime
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self.live_tasks():  # nobody follows them any more: free their slots
            budget = self._accounts.known_budget(task.provider)
            if budget is not None:
                budget.release(task.id)
        await self._operations.aclose()
        if self._own_http:
            await self._http.aclose()
        await self._replay.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient providers={self._accounts.names()}>"

    # Tests and benchmarks reach these: the local engine, started on first use.
    @property
    def _local(self) -> Any:
        return self._operations.local

    def _local_engine(self) -> Any:
        return self._operations.local_engine()
