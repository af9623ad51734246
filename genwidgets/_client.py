"""The only module that does IO: HTTP to the providers, SSE, downloads, and the local engine.

Adapters (genwidgets/providers) describe requests and read responses; `AsyncClient` sends them on
one pooled `httpx.AsyncClient`, retries what is safe to retry (stamina, idempotent GETs only),
paces polls (`_policy.PollSchedule`), listens to push events where a provider has them, and streams
outputs into the content-addressed cache as soon as a task succeeds, because result URLs expire.
`Client` is the blocking twin: it runs the very same coroutines (see `_runner`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import stamina
from httpx_sse import aconnect_sse

from ._budget import Budget, BudgetSetting, Limits, budget_for, resolve_limits
from ._cache import DEFAULT_MAX_BYTES, Cache
from ._config import replay_mode
from ._cost import CostGuard, CostPlan, shared_guard
from ._exceptions import (
    DeadlineExceeded,
    DownloadError,
    GenError,
    MissingKey,
    ReplayMissing,
    SubmitUncertain,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TransportError,
    WaitTimeout,
)
from ._models import Output, Status, Task
from ._policy import (
    DurationEstimate,
    PollSchedule,
    is_transient,
    retry_decision,
    snapshot_changed,
)
from ._replay import Replay
from ._runner import LoopRunner
from .journal import Journal
from .providers import (
    ModelInfo,
    Provider,
    Request,
    Response,
    base_url_for,
    get_provider_class,
    parse_model_id,
    provider_names,
)

__all__ = ["AsyncClient", "Client", "cancel_all", "configure", "get_client", "run"]

log = logging.getLogger("genwidgets")
T = TypeVar("T")
TaskObserver = Callable[[Task], None]
WaitNotice = Callable[[str], None]

USER_AGENT = "genwidgets/0.1 (+https://github.com/genwidgets/genwidgets)"


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
        journal: Journal | str | os.PathLike[str] | bool | None = None,
        replay: str | None = None,
        default_deadline: float | Mapping[str, float | None] | None = 3600.0,
        budgets: BudgetSetting = None,
        cost_guard: CostGuard | None = None,
    ) -> None:
        self._api_keys = dict(api_keys or {})
        self._base_urls = dict(base_urls or {})
        self.cache = Cache(cache_dir)
        self._poll_interval = poll_interval
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self.max_download_bytes = max_download_bytes
        self._max_per_provider = max_connections_per_provider
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self._providers: dict[str, Provider] = {}
        self._catalogues: dict[str, Provider] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._events: dict[str, _EventStream] = {}
        self._local: Any = None  # LocalEngine, created on first local task
        self._observers: list[TaskObserver] = []
        self._closed = False
        self._replay = Replay(self.cache, journal, replay_mode(replay))
        self.add_observer(self._replay.record)  # the journal records every snapshot
        # Tasks this client follows (submitted, re-attached or resumed), by (provider, id): the
        # newest snapshot, so `cancel_all` can reach them; and their deadlines (loop time).
        self._live: dict[tuple[str, str], Task] = {}
        self._deadlines: dict[tuple[str, str], tuple[float, float]] = {}
        self._default_deadline = default_deadline
        # Rate and concurrency budgets (`_budget`), shared per provider account by every client
        # on the loop; None for a provider means unlimited.
        self._budget_setting = budgets
        self._cost_guard = cost_guard
        self._budgets: dict[str, Budget | None] = {}
        self._submitted_at: dict[tuple[str, str], float] = {}
        self._seen_running: dict[tuple[str, str], float] = {}  # last poll that found it running
        self._durations: dict[tuple[str, str], DurationEstimate] = {}

    # ------------------------------------------------------------------ set-up and introspection
    def provider(self, name: str) -> Provider:
        """The adapter instance for `name`, with its key and base URL resolved (once)."""
        adapter = self._providers.get(name)
        if adapter is None:
            cls = get_provider_class(name)
            key = self._api_keys.get(name)
            if key is None and cls.env_var:
                key = os.environ.get(cls.env_var) or None
            if cls.env_var and not key:
                raise MissingKey(name, cls.env_var)
            base = self._base_urls.get(name) or base_url_for(name, cls.default_base_url)
            adapter = cls(api_key=key, base_url=base)
            self._providers[name] = adapter
        return adapter

    def _catalogue(self, name: str) -> Provider:
        """A keyless adapter: enough to validate and to read the catalogue, never to send."""
        adapter = self._catalogues.get(name)
        if adapter is None:
            adapter = self._catalogues[name] = get_provider_class(name)(api_key=None)
        return adapter

    def configured_providers(self) -> builtins.list[str]:
        """Providers usable right now: `local` plus every provider with a key configured."""
        usable = []
        for name in provider_names():
            cls = get_provider_class(name)
            if not cls.env_var or self._api_keys.get(name) or os.environ.get(cls.env_var):
                usable.append(name)
        return usable

    def available_models(self) -> dict[str, builtins.list[ModelInfo]]:
        """Known models of the usable providers (remote catalogues are open: others work too)."""
        return {
            name: builtins.list(self._catalogue(name).models.values())
            for name in self.configured_providers()
        }

    def model_info(self, model: str) -> ModelInfo | None:
        provider, name = parse_model_id(model)
        return self._catalogue(provider).model_info(name)

    def validate(self, model: str, **params: Any) -> dict[str, Any]:
        """Check a request exactly as `submit` would, sending nothing; returns the clean params."""
        provider, name = parse_model_id(model)
        return self._catalogue(provider).validate(name, params)

    def can_cancel(self, task: Task | str) -> bool:
        name = task.provider if isinstance(task, Task) else parse_model_id(task)[0]
        return get_provider_class(name).can_cancel

    def add_observer(self, callback: TaskObserver) -> None:
        """Call `callback(task)` with every new snapshot this client sees (the journal uses it)."""
        self._observers.append(callback)

    @property
    def journal(self) -> Journal | None:
        """The task journal (opened on first use); None when disabled."""
        return self._replay.journal

    @property
    def replay(self) -> str:
        """The replay mode: auto, off or require (see `submit`)."""
        return self._replay.mode

    def _seen(self, task: Task) -> Task:
        key = (task.provider, task.id)
        if key in self._live:
            self._live[key] = task
            if task.done:  # ended: nothing left to cancel or time out (and no unbounded growth)
                self._deadlines.pop(key, None)
                del self._live[key]
        if task.done:
            self._task_ended(task)
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

        `deadline` (seconds or a timedelta; default `default_deadline`, one hour): once it passes,
        following the task cancels it where the provider can cancel and raises `DeadlineExceeded`.

        When the provider account's budget is full (tasks in flight), the submit waits locally for
        a slot; `on_wait(message)` is called once if it has to (cards show "waiting for a slot").
        """
        provider_name, name = parse_model_id(model)
        clean = self._catalogue(provider_name).validate(name, params)
        recorded = self._replay.recorded(
            provider_name, name, clean, fresh=fresh, following=self._live
        )
        if recorded is not None:
            if not recorded.done:
                self._follow(recorded, deadline)
            return recorded  # replay needs no key: nothing is sent
        adapter = self.provider(provider_name)
        self._replay.refuse_orphaned(provider_name, name, clean, fresh)
        guard = self.cost_guard
        paid = guard.is_paid(f"{provider_name}:{name}")
        estimate = guard.reserve(f"{provider_name}:{name}") if paid else 0.0  # may refuse: caps
        budget = self.budget(provider_name)
        try:
            # The note is kept only on SubmitUncertain: a later run must not resend it blindly.
            with self._replay.submit_note(provider_name, name, clean) as note:
                if budget is not None:
                    await budget.reserve(on_wait)
                try:
                    task = await self._submit(adapter, name, clean, on_wait, note.sending)
                except BaseException:
                    if budget is not None:
                        budget.unreserve()
                    raise
        except SubmitUncertain:
            if paid:  # it may have been accepted, and billed: count it as spent
                guard.absorb(estimate)
            raise
        except BaseException:
            if paid:
                guard.release(estimate)
            raise
        # `_submit` recorded the task before the note went: a crash between loses nothing
        if paid:
            guard.bind(task.provider, task.id, estimate)
        if budget is not None:
            budget.bind(task.id)
            if task.done:
                budget.release(task.id)
        self._submitted_at[(task.provider, task.id)] = time.monotonic()
        self._follow(task, deadline)
        return task

    def resume(self) -> builtins.list[Task]:
        """Tasks the journal holds as unfinished (running, or succeeded but not downloaded),
        e.g. after a kernel restart. Follow them with `wait`/`updates` and `download`."""
        tasks = [t for t in self._replay.unfinished() if (t.provider, t.id) not in self._live]
        for task in tasks:
            self._follow(task, None)
        return tasks

    def _follow(self, task: Task, deadline: float | timedelta | None) -> None:
        key = (task.provider, task.id)
        self._live[key] = task
        seconds = deadline.total_seconds() if isinstance(deadline, timedelta) else deadline
        if seconds is None:
            default = self._default_deadline
            seconds = default.get(task.provider) if isinstance(default, Mapping) else default
        if seconds is not None:
            self._deadlines[key] = (time.monotonic() + seconds, seconds)

    def live_tasks(self) -> builtins.list[Task]:
        """Newest snapshots of the tasks this client follows that have not ended."""
        return [t for t in self._live.values() if not t.done]

    async def cancel_all(self) -> builtins.list[Task]:
        """Cancel every live task this client follows, where its provider can cancel."""
        targets = [t for t in self.live_tasks() if self.can_cancel(t)]
        results = await asyncio.gather(*(self.cancel(t) for t in targets), return_exceptions=True)
        return [r for r in results if isinstance(r, Task)]

    async def _enforce_deadline(self, task: Task) -> Task:
        """The deadline passed: cancel where possible, record why, raise `DeadlineExceeded`."""
        _, seconds = self._deadlines.pop((task.provider, task.id))
        reason = f"deadline of {seconds:g} s passed"
        if self.can_cancel(task):
            stopped = await self.cancel(task)
            if stopped.status is Status.CANCELLED:
                self._seen(stopped.evolve(error=reason))
            raise DeadlineExceeded(
                f"Task cancelled: {reason}",
                provider=task.provider,
                model=task.model,
                task_id=task.id,
            )
        budget = self._budgets.get(task.provider)
        if budget is not None:  # we stop following it; the provider's own limit may still count it
            budget.release(task.id)
        raise DeadlineExceeded(
            f"{reason}; {task.provider} cannot cancel, so the task may still run and bill: its "
            f"id {task.id} is kept (journal) to fetch or resume it later",
            provider=task.provider,
            model=task.model,
            task_id=task.id,
        )

    def _task_ended(self, task: Task) -> None:
        """Free the task's budget slot; learn how long its model takes (to time first polls)."""
        key = (task.provider, task.id)
        budget = self._budgets.get(task.provider)
        if budget is not None:
            budget.release(task.id)
        if task.provider != "local" and not task.replayed:
            self.cost_guard.settle(task)
        started = self._submitted_at.pop(key, None)
        still_running = self._seen_running.pop(key, None)
        if started is not None and task.status is Status.SUCCEEDED:
            # Done somewhere between the last poll that found it running and now: the midpoint
            # (when a poll found it running) keeps poll lag from inflating the estimate.
            now = time.monotonic()
            end = now if still_running is None else (still_running + now) / 2
            self._duration_estimate(task).observe(end - started)

    @property
    def cost_guard(self) -> CostGuard:
        """The guard this client's paid submits go through (the session's unless given)."""
        return self._cost_guard if self._cost_guard is not None else shared_guard()

    def plan(self, requests: Iterable[tuple[str, Mapping[str, Any]]]) -> CostPlan:
        """What submitting these `(model, params)` requests would cost, sending nothing: every
        request is validated, and one the journal would replay (or re-attach) counts as free."""
        paid_models: builtins.list[str] = []
        replayed = 0
        for model, params in requests:
            provider_name, name = parse_model_id(model)
            clean = self._catalogue(provider_name).validate(name, dict(params))
            try:
                recorded = self._replay.recorded(
                    provider_name, name, clean, fresh=False, following=self._live
                )
            except ReplayMissing:
                recorded = None
            if recorded is not None:
                replayed += 1
            else:
                paid_models.append(f"{provider_name}:{name}")
        return self.cost_guard.plan(paid_models, free=replayed)

    def _duration_estimate(self, task: Task) -> DurationEstimate:
        """How long tasks of this model take: learned in this process, seeded from the journal
        (so a notebook re-run tomorrow times its first polls from today's runs)."""
        key = (task.provider, task.model)
        estimate = self._durations.get(key)
        if estimate is None:
            estimate = self._durations[key] = DurationEstimate()
            for seconds in self._replay.durations(task.provider, task.model, estimate.window):
                estimate.observe(seconds)
        return estimate

    def budget(self, provider: str) -> Budget | None:
        """The rate/concurrency budget this client's `provider` account spends (None: unlimited).

        Budgets are per loop: call this from a coroutine, or after a first task has run.
        """
        if provider not in self._budgets:
            if provider == "local":
                self._budgets[provider] = None
            else:
                adapter = self.provider(provider)
                limits: Limits = resolve_limits(provider, self._budget_setting)
                self._budgets[provider] = budget_for(provider, adapter.account, limits)
        return self._budgets[provider]

    def _deadline_left(self, task: Task) -> float | None:
        entry = self._deadlines.get((task.provider, task.id))
        return None if entry is None else entry[0] - time.monotonic()

    async def _submit(
        self,
        adapter: Provider,
        name: str,
        clean: dict[str, Any],
        on_wait: WaitNotice | None = None,
        sending: Callable[[], None] | None = None,
    ) -> Task:
        if adapter.name == "local":
            return self._seen(await self._local_engine().submit(name, clean))
        if adapter.has_events:
            # Oxen broadcasts completion once, with no replay: listen before enqueueing.
            await self._event_stream(adapter).ensure_connected()
        request = adapter.build_submit(name, clean)
        response = await self._send_submit(adapter, request, name, on_wait, sending)
        return self._seen(adapter.parse_submit(name, clean, response))

    async def get(self, task: Task) -> Task:
        """One fresh snapshot (polls the provider; fetches the result when it is ready)."""
        if task.done and (task.outputs or task.status is not Status.SUCCEEDED):
            return task
        if task.provider == "local":
            return self._seen(self._local_engine().get(task))
        adapter = self.provider(task.provider)
        new = await self._call(
            adapter, adapter.build_poll(task), lambda r: adapter.parse_poll(task, r)
        )
        return self._seen(await self._complete(adapter, new))

    async def updates(self, task: Task) -> AsyncIterator[Task]:
        """Yield `task` and then every changed snapshot until (and including) a terminal one."""
        yield task
        if task.done and (task.outputs or task.status is not Status.SUCCEEDED):
            return  # nothing left to ask the provider (also: replayed tasks need no key)
        adapter = self.provider(task.provider)
        budget = self.budget(task.provider)
        if budget is not None and not task.done:
            budget.adopt(task.id)  # re-attached or resumed tasks are in flight too
        if task.status is Status.SUCCEEDED and not task.outputs:  # resumed before its result
            completed = await self.get(task)
            if snapshot_changed(task, completed):
                yield completed
        first, cap = self._poll_interval or adapter.poll_interval
        schedule = PollSchedule(first=first, cap=cap)
        stream = self._event_stream(adapter) if adapter.has_events else None
        while not task.done:
            left = self._deadline_left(task)
            if left is not None and left <= 0:
                await self._enforce_deadline(task)
            new = await self._next_snapshot(adapter, task, schedule, stream, left)
            if snapshot_changed(task, new):
                if new.status != task.status:
                    schedule.reset()
                task = new
                yield task

    async def _next_snapshot(
        self,
        adapter: Provider,
        task: Task,
        schedule: PollSchedule,
        stream: _EventStream | None,
        deadline_left: float | None = None,
    ) -> Task:
        """Wait for the next thing worth knowing about `task`, then return its snapshot."""
        cap = max(0.0, deadline_left) if deadline_left is not None else None
        if task.provider == "local":
            wait = 5.0 if cap is None else min(5.0, cap)
            return self._seen(await self._local_engine().wait_change(task, timeout=wait))
        delay = schedule.next_delay()
        started = self._submitted_at.get((task.provider, task.id))
        estimate = self._duration_estimate(task) if started is not None else None
        if started is not None and estimate is not None and task.progress is None:
            # No progress to show: poll when tasks of this model are usually done.
            delay = max(delay, estimate.remaining(time.monotonic() - started))
        budget = self._budgets.get(task.provider)
        if budget is not None:
            delay = budget.poll_delay(task.id, delay)
        at_deadline = cap is not None and delay >= cap
        if cap is not None:
            delay = min(delay, cap)
        if stream is not None:
            event = await stream.wait(task.id, delay)
            if event is not None:
                pushed = adapter.apply_event(task, event)
                if pushed.done:
                    return self._seen(await self._complete(adapter, pushed))
        else:
            await asyncio.sleep(delay)
        if at_deadline:
            return task  # the caller cancels now; a last poll would only delay the cancel
        try:
            new = await self.get(task)
        except GenError as exc:
            if not is_transient(exc):
                raise
            # The task is still out there: a flaky network or provider must not lose it.
            log.warning("poll of %s failed (%s); will poll again", task.id, exc)
            return task
        if not new.done and (new.provider, new.id) in self._submitted_at:
            self._seen_running[(new.provider, new.id)] = time.monotonic()
        return new

    async def wait(self, task: Task, timeout: float | timedelta | None = None) -> Task:
        """Wait until `task` is terminal and return that snapshot (any terminal status).

        `timeout` bounds only the waiting: `WaitTimeout` is raised and the task keeps running.
        """
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        latest = task

        async def follow() -> Task:
            nonlocal latest
            async for snapshot in self.updates(task):
                latest = snapshot
            return latest

        try:
            return await asyncio.wait_for(follow(), seconds)
        except asyncio.TimeoutError as exc:
            if isinstance(exc, GenError):  # DeadlineExceeded is a TimeoutError too
                raise
            raise WaitTimeout(
                f"Still {latest.status.value} after {seconds:g} s; the task keeps running "
                "(wait again, or cancel it)",
                provider=task.provider,
                model=task.model,
                task_id=task.id,
            ) from None

    async def cancel(self, task: Task) -> Task:
        """Ask the provider to stop the task; returns the resulting snapshot."""
        if task.done:
            return task
        if task.provider == "local":
            return self._seen(await self._local_engine().cancel(task))
        adapter = self.provider(task.provider)
        if not adapter.can_cancel:
            raise adapter.not_supported("cancel")
        request = adapter.build_cancel(task)
        return self._seen(
            await self._call(adapter, request, lambda r: adapter.parse_cancel(task, r), urgent=True)
        )

    async def download(self, task: Task, dest: str | os.PathLike[str] | None = None) -> Task:
        """Fetch every output into the cache (outputs gain `.path` and `.sha256`).

        With `dest`, the files are also copied there, named after the task, never after a name the
        server chose.
        """
        outputs: builtins.list[Output] = []
        for index, output in enumerate(task.outputs):
            if output.path is None or not Path(output.path).exists():
                output = await self._download_output(task, index, output)
            outputs.append(output)
        task = self._seen(task.evolve(outputs=tuple(outputs)))  # the journal keeps cache paths
        if dest is None:
            return task
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        copies = []
        for index, output in enumerate(task.outputs):
            assert output.path is not None
            target = folder / f"{_safe_name(task.id)}-{index}{Path(output.path).suffix}"
            if not (target.exists() and target.samefile(output.path)):
                shutil.copyfile(output.path, target)
            copies.append(output.model_copy(update={"path": target}))
        return task.evolve(outputs=tuple(copies))

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
            latest = self._live.get((task.provider, task.id), task)
            if not latest.done and self.can_cancel(latest):
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.cancel(latest))
            raise
        return (
            await self.download(task, dest) if task.status is Status.SUCCEEDED else _raise_for(task)
        )

    async def list(self, provider: str, **filters: str) -> builtins.list[Task]:
        """Tasks the provider reports (NetMind: generations; Oxen: active queue)."""
        adapter = self.provider(provider)
        if not adapter.can_list:
            raise adapter.not_supported("list")
        return await self._call(adapter, adapter.build_list(**filters), adapter.parse_list)

    async def delete(self, task: Task) -> None:
        """Delete the task at the provider (NetMind), e.g. after its outputs are downloaded."""
        adapter = self.provider(task.provider)
        if not adapter.can_delete:
            raise adapter.not_supported("delete")
        await self._call(
            adapter, adapter.build_delete(task), lambda r: adapter.parse_delete(task, r)
        )

    # ------------------------------------------------------------------ lifetime
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self.live_tasks():  # nobody follows them any more: free their slots
            budget = self._budgets.get(task.provider)
            if budget is not None:
                budget.release(task.id)
        for stream in self._events.values():
            await stream.aclose()
        if self._local is not None:
            self._local.close()
        if self._own_http:
            await self._http.aclose()
        await self._replay.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient providers={sorted(self._providers)}>"

    # ------------------------------------------------------------------ internals
    def _local_engine(self) -> Any:
        if self._local is None:
            from ._local import LocalEngine

            self._local = LocalEngine(self.cache)
        return self._local

    def _slot(self, adapter: Provider) -> asyncio.Semaphore:
        slot = self._slots.get(adapter.name)
        if slot is None:
            slot = self._slots[adapter.name] = asyncio.Semaphore(self._max_per_provider)
        return slot

    def _event_stream(self, adapter: Provider) -> _EventStream:
        stream = self._events.get(adapter.name)
        if stream is None:
            stream = self._events[adapter.name] = _EventStream(self._http, adapter)
        return stream

    async def _send(self, adapter: Provider, request: Request, urgent: bool = False) -> Response:
        """One HTTP exchange; network failures become `TransportError`.

        `urgent` requests (cancels: they stop billing and free a slot) do not queue behind polls
        in the rate budget."""
        budget = self.budget(adapter.name)
        if budget is not None and not urgent:
            await budget.spend()
        async with self._slot(adapter):
            try:
                response = await self._http.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    json=request.json,
                    params=dict(request.params) if request.params else None,
                )
            except httpx.HTTPError as exc:
                raise TransportError(
                    f"{type(exc).__name__} talking to {adapter.name} ({_origin(request.url)})",
                    provider=adapter.name,
                ) from None  # the request (and its auth header) stays out of the traceback
        answer = Response(
            status_code=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            content=response.content,
            url=str(response.url),
        )
        if budget is not None and answer.status_code == 429:
            budget.penalize(_retry_after(adapter, answer))
        return answer

    async def _call(
        self,
        adapter: Provider,
        request: Request,
        parse: Callable[[Response], T],
        urgent: bool = False,
    ) -> T:
        """Send an idempotent request and parse it, retrying transient failures with backoff."""
        async for attempt in stamina.retry_context(
            on=retry_decision,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_initial=0.2,
            wait_max=10.0,
        ):
            with attempt:
                return parse(await self._send(adapter, request, urgent))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_submit(
        self,
        adapter: Provider,
        request: Request,
        model: str,
        on_wait: WaitNotice | None = None,
        sending: Callable[[], None] | None = None,
    ) -> Response:
        """Send a submit. Retried only when the provider certainly did not accept it: a refused
        connection, or a 429 (rejected before any work). Never after an ambiguous failure.

        `sending()` is called right before the request goes out (the journal notes it)."""
        budget = self.budget(adapter.name)
        for attempt in range(self._retry_attempts):
            if budget is not None:
                await budget.spend()
            try:
                async with self._slot(adapter):
                    if sending is not None:
                        sending()
                    raw = await self._http.request(
                        request.method,
                        request.url,
                        headers=dict(request.headers),
                        json=request.json,
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt + 1 == self._retry_attempts:
                    raise TransportError(
                        f"Could not connect to {adapter.name} ({_origin(request.url)})",
                        provider=adapter.name,
                        model=model,
                    ) from None
                await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
                continue
            except httpx.HTTPError as exc:
                raise SubmitUncertain(
                    f"{type(exc).__name__} after the submit was sent to {adapter.name}: it may or "
                    "may not have been accepted, so it is not retried (that could bill twice)",
                    provider=adapter.name,
                    model=model,
                ) from None
            response = Response(
                raw.status_code,
                {k.lower(): v for k, v in raw.headers.items()},
                raw.content,
                str(raw.url),
            )
            if response.status_code == 429:
                wait = _retry_after(adapter, response)
                if budget is not None:
                    budget.penalize(wait, on_submit=True)
                if attempt + 1 < self._retry_attempts:
                    # The budget's pause covers Retry-After; back off on top when there is none.
                    await asyncio.sleep(min(60.0, wait if wait is not None else 1.0 * 2**attempt))
                    if budget is not None:
                        await budget.requeue(on_wait)  # wait for a slot under the shrunk cap
                    continue
            if response.status_code >= 500:
                error = adapter.error_for(response, model=model)
                raise SubmitUncertain(
                    f"{error.message} in answer to a submit: the task may have been created, so it "
                    "is not retried (that could bill twice)",
                    status_code=response.status_code,
                    provider=adapter.name,
                    model=model,
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete(self, adapter: Provider, task: Task) -> Task:
        """Fetch the full result when the status endpoint said done without outputs (Segmind)."""
        if task.status is Status.SUCCEEDED and not task.outputs:
            request = adapter.build_result(task)
            if request is not None:
                return await self._call(adapter, request, lambda r: adapter.parse_result(task, r))
        return task

    async def _download_output(self, task: Task, index: int, output: Output) -> Output:
        if output.kind == "text" and output.text is not None and not output.url:
            path, digest, _ = self.cache.put(output.text.encode(), "text/plain")
            return output.model_copy(
                update={"path": path, "sha256": digest, "size": path.stat().st_size}
            )
        if not output.url or not output.url.lower().startswith(("http://", "https://")):
            raise DownloadError(
                f"Refusing to download output {index}: not an http(s) URL "
                f"({(output.url or '')[:40]!r})",
                provider=task.provider,
                model=task.model,
                task_id=task.id,
            )
        try:
            return await self._fetch(task, output)
        except DownloadError as first_error:
            # Presigned URLs die: ask the provider for the task again, which may carry a fresh URL.
            if task.provider == "local" or not getattr(first_error, "refetchable", False):
                raise
            fresh = await self._refresh_output(task, index)
            if fresh is None or fresh.url == output.url:
                raise
            return await self._fetch(task, fresh)

    async def _refresh_output(self, task: Task, index: int) -> Output | None:
        adapter = self.provider(task.provider)
        polled = await self._call(
            adapter, adapter.build_poll(task), lambda r: adapter.parse_poll(task, r)
        )
        polled = await self._complete(adapter, polled.evolve(outputs=()) if polled.done else polled)
        return polled.outputs[index] if len(polled.outputs) > index else None

    async def _fetch(self, task: Task, output: Output) -> Output:
        """Stream one URL into the cache, bounded. No auth header: result URLs are presigned and
        may live on another host, which must never see the key."""
        assert output.url is not None
        context = {"provider": task.provider, "model": task.model, "task_id": task.id}
        async for attempt in stamina.retry_context(
            on=lambda exc: isinstance(exc, _TransientDownload),
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_initial=0.2,
            wait_max=5.0,
        ):
            with attempt:
                try:
                    async with self._http.stream("GET", output.url) as response:
                        if response.status_code in (403, 404, 410):
                            error = DownloadError(
                                f"Output URL answered HTTP {response.status_code} (expired?)",
                                **context,
                            )
                            error.refetchable = True  # type: ignore[attr-defined]
                            raise error
                        if response.status_code >= 500 or response.status_code == 429:
                            raise _TransientDownload(f"HTTP {response.status_code}")
                        if response.status_code != 200:
                            raise DownloadError(
                                f"Output URL answered HTTP {response.status_code}", **context
                            )
                        declared = response.headers.get("content-length")
                        if (
                            declared
                            and declared.isdigit()
                            and int(declared) > self.max_download_bytes
                        ):
                            raise DownloadError(
                                f"Output is {int(declared):,} bytes, over the download bound of "
                                f"{self.max_download_bytes:,}; raise max_download_bytes",
                                **context,
                            )
                        ctype = response.headers.get("content-type", output.content_type)
                        writer = self.cache.writer(ctype, self.max_download_bytes)
                        try:
                            async for chunk in response.aiter_bytes(1 << 16):
                                writer.write(chunk)
                        except BaseException:
                            writer.abort()
                            raise
                        path, digest, sniffed = writer.commit()
                except httpx.HTTPError as exc:
                    raise _TransientDownload(type(exc).__name__) from None
                return output.model_copy(
                    update={
                        "path": path,
                        "sha256": digest,
                        "size": writer.size,
                        "content_type": sniffed or output.content_type,
                    }
                )
        raise AssertionError("unreachable")  # pragma: no cover


class _TransientDownload(DownloadError):
    def __init__(self, what: str) -> None:
        super().__init__(f"Download interrupted ({what})")


class _EventStream:
    """One SSE subscription per provider, shared by every task of the client.

    Events arrive for ids we may not know yet (the completion can beat the submit's answer), so
    the newest event per id is kept in a bounded buffer and handed out when that task asks.
    If the stream cannot be opened, waiting falls back to plain polling.
    """

    BUFFER = 4096

    def __init__(self, http: httpx.AsyncClient, adapter: Provider) -> None:
        self._http = http
        self._adapter = adapter
        self._events: OrderedDict[str, Any] = OrderedDict()
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def ensure_connected(self, timeout: float = 5.0) -> bool:
        if self._runner is None or self._runner.done():
            self._connected.clear()
            self._runner = asyncio.get_running_loop().create_task(self._listen())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("%s event stream not available; polling instead", self._adapter.name)
            return False

    async def wait(self, task_id: str, timeout: float) -> Any:
        """The pushed event for `task_id` if one arrives within `timeout`, else None."""
        if task_id in self._events:
            return self._events.pop(task_id)  # handed out once: a stale event must not spin
        if self._runner is None or self._runner.done():
            with contextlib.suppress(Exception):
                await self.ensure_connected(timeout=min(timeout, 2.0))
        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: task_id in self._events), timeout
                )
        return self._events.pop(task_id, None)

    async def _listen(self) -> None:
        request = self._adapter.build_events()
        backoff = 0.5
        while True:
            try:
                async with aconnect_sse(
                    self._http,
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    timeout=httpx.Timeout(10.0, read=None),
                ) as source:
                    if source.response.status_code != 200:
                        raise TransportError(f"event stream answered {source.response.status_code}")
                    self._connected.set()
                    backoff = 0.5
                    async for sse in source.aiter_sse():
                        event = self._adapter.parse_event(sse.event, sse.data)
                        if event is None:
                            continue
                        async with self._changed:
                            self._events[event.task_id] = event
                            self._events.move_to_end(event.task_id)
                            while len(self._events) > self.BUFFER:
                                self._events.popitem(last=False)
                            self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect; waiting tasks poll meanwhile
                log.debug("%s event stream dropped: %s", self._adapter.name, type(exc).__name__)
            self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner


def _retry_after(adapter: Provider, response: Response) -> float | None:
    """Seconds a 429 asks us to wait (Retry-After, or Segmind's reset time), if it says."""
    return getattr(adapter.error_for(response), "retry_after", None)


def _raise_for(task: Task) -> Task:
    if task.status is Status.CANCELLED:
        raise TaskCancelled(task)
    if task.status is Status.EXPIRED:
        raise TaskExpired(task)
    raise TaskFailed(task)


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "task"


# ---------------------------------------------------------------------------------- sync twin
class Client:
    """The blocking twin of `AsyncClient`: the same methods, running the same coroutines.

    Outside a running event loop it keeps a private loop; inside Jupyter (the kernel's loop is
    running) it runs on that loop re-entrantly, so live cards keep updating while a cell waits.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._runner = LoopRunner()
        self.aclient = self._runner.call(lambda: AsyncClient(**kwargs))

    def submit(self, model: str, **params: Any) -> Task:
        return self._runner.run(self.aclient.submit(model, **params))

    def get(self, task: Task) -> Task:
        return self._runner.run(self.aclient.get(task))

    def wait(self, task: Task, timeout: float | timedelta | None = None) -> Task:
        return self._runner.run(self.aclient.wait(task, timeout))

    def updates(self, task: Task) -> Iterator[Task]:
        return self._runner.iterate(self.aclient.updates(task))

    def cancel(self, task: Task) -> Task:
        return self._runner.run(self.aclient.cancel(task))

    def download(self, task: Task, dest: str | os.PathLike[str] | None = None) -> Task:
        return self._runner.run(self.aclient.download(task, dest))

    def run(
        self,
        model: str,
        *,
        timeout: float | timedelta | None = None,
        dest: str | os.PathLike[str] | None = None,
        **params: Any,
    ) -> Task:
        return self._runner.run(self.aclient.run(model, timeout=timeout, dest=dest, **params))

    def list(self, provider: str, **filters: str) -> builtins.list[Task]:
        return self._runner.run(self.aclient.list(provider, **filters))

    def delete(self, task: Task) -> None:
        self._runner.run(self.aclient.delete(task))

    def validate(self, model: str, **params: Any) -> dict[str, Any]:
        return self.aclient.validate(model, **params)

    def close(self) -> None:
        self._runner.run(self.aclient.aclose())
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client providers={sorted(self.aclient._providers)}>"


# ---------------------------------------------------------------------------------- defaults
_default_clients: dict[int, AsyncClient] = {}


def get_client() -> AsyncClient:
    """The process-wide `AsyncClient` of the running (or default) event loop.

    Widgets, the magic and `genwidgets.run` share it, so they share connections, the local
    engine's workers and the event streams.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = LoopRunner.shared().loop
    client = _default_clients.get(id(loop))
    if client is None or client._closed:
        client = _default_clients[id(loop)] = AsyncClient()
    return client


def cancel_all() -> builtins.list[Task]:
    """Cancel every live task of the default clients (cards, gallery, `%gen`, `run`), where the
    provider can cancel. Background cards belong to no cell, so an interrupt leaves them alone."""
    runner = LoopRunner.shared()

    async def go() -> builtins.list[Task]:
        stopped: builtins.list[Task] = []
        for client in builtins.list(_default_clients.values()):
            if not client._closed:
                stopped += await client.cancel_all()
        return stopped

    return runner.run(go())


def configure(**options: Any) -> AsyncClient:
    """Replace the default client (the one cards, `%gen` and `run` use) with one made from
    `options`, e.g. `configure(journal="data/journal.sqlite", cache_dir="data/blobs")`."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = LoopRunner.shared().loop
    client = _default_clients[id(loop)] = AsyncClient(**options)
    return client


def run(
    model: str,
    *,
    timeout: float | timedelta | None = None,
    dest: str | os.PathLike[str] | None = None,
    **params: Any,
) -> Task:
    """Submit, wait and download, blocking: for scripts and notebook cells.

    In Jupyter it runs on the kernel's loop re-entrantly, so cards keep updating meanwhile.
    Raises `TaskFailed`/`TaskCancelled`/`TaskExpired` when the task does not succeed.
    """
    runner = LoopRunner.shared()

    async def go() -> Task:
        return await get_client().run(model, timeout=timeout, dest=dest, **params)

    return runner.run(go())
