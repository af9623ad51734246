"""The interface every provider adapter implements, sans-IO (in the manner of h11).

An adapter turns a submit into a `Request` and a `Response` (status, headers, bytes, the moment
it was received) into a `Task` snapshot. It never opens a socket, sleeps, reads the clock or keeps
global state: the client does all IO, so every adapter is tested dict-in, Task-out.

An adapter is mostly tables (its `statuses`, its `errors` rows, where its bodies keep ids, times
and error text) that this class reads answers with: `parse_poll` returns a `Task` for every answer
that carries task state (Segmind's FAILED with HTTP 422 too), ``expired`` for a 404 about a task
we submitted, and raises the `ProviderError` family (see `error_for`) for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from .._exceptions import GenError, InvalidParams, MalformedResponse, NotSupported
from .._limits import ProviderLimits
from .._models import Output, OutputKind, Status, Task
from ._catalogue import ModelInfo, check_filters, check_params
from ._errors import (
    DEFAULT_RULES,
    ERROR_TEXTS,
    ErrorRule,
    Fault,
    error_context,
    error_text,
    interpret,
    unknown_model,
)
from ._fields import (
    MAX_SERVER_TEXT,
    as_int,
    dig,
    first_id,
    guess_kind,
    is_http_url,
    is_json,
    parse_time,
    retry_after,
    text,
)
from ._push import PushHooks
from ._wire import Method, Request, Response

__all__ = ["Provider"]


class Provider(PushHooks):
    """Base class of the adapters: class attributes and tables describe the protocol, the
    build/parse pairs translate it (push hooks, if any: `PushHooks`)."""

    name: ClassVar[str]  # before the ':' in `provider:model`; the registry finds the class by it
    env_var: ClassVar[str | None] = None  # where the API key comes from (None: no key needed)
    env_vars: ClassVar[tuple[str, ...]] = ()  # other key variables, tried in order after env_var
    default_base_url: ClassVar[str] = ""  # an origin; GENWIDGETS_<NAME>_URL overrides it
    #: the default budget: limits, what the rate counts, and the evidence (None: unlimited)
    limits: ClassVar[ProviderLimits | None] = None
    about: ClassVar[str] = ""  # one line on what sets the protocol apart (README, CLI)
    models: ClassVar[Mapping[str, ModelInfo]] = {}
    #: Unknown model names are passed through to the provider (its catalogue is larger than ours
    #: and changes weekly); the provider's own "not found" is then mapped to UnknownModel.
    open_catalogue: ClassVar[bool] = True
    can_cancel: ClassVar[bool] = False
    can_list: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    deadline_header: ClassVar[str | None] = None  # sends the deadline: "Cancel-After: {minutes}m"
    #: first poll delay and the cap it backs off to, in seconds (the seeds advise 2-10 s)
    poll_interval: ClassVar[tuple[float, float]] = (1.0, 8.0)
    #: how long the provider keeps a task, if documented (a 404 after it means expired)
    retention: ClassVar[float | None] = None
    #: the provider's task statuses in its own words (any case); a word not here means running
    statuses: ClassVar[Mapping[str, Status]] = {}
    #: the error table, first matching row wins (see `_errors`)
    errors: ClassVar[tuple[ErrorRule, ...]] = DEFAULT_RULES
    #: where an error body keeps its message (dotted paths, first non-blank text wins)
    error_texts: ClassVar[tuple[str, ...]] = ERROR_TEXTS
    #: where an error body keeps its machine-readable kind (an `ErrorRule.kind` is matched on it)
    error_kind: ClassVar[str] = "error.type"
    #: the parameters sit beside ``model`` in the submit body, so none may be called that
    model_in_body: ClassVar[bool] = False
    #: the list endpoint (`can_list`): its path, the filters it takes (None: any passes), our
    #: status words in the provider's (for a ``status`` filter), where the answer keeps records
    list_path: ClassVar[str] = ""
    list_filters: ClassVar[tuple[str, ...] | None] = None
    list_statuses: ClassVar[Mapping[str, str]] = {}
    list_key: ClassVar[str] = "tasks"
    #: where a task record keeps the task's id, first usable one wins
    id_keys: ClassVar[tuple[str, ...]] = ("id",)
    #: where a task record keeps when it was created, started and finished (None: not said)
    time_fields: ClassVar[tuple[str | None, str | None, str | None]] = (None, None, None)
    #: with no start time reported, a task is dated started when first seen running
    stamp_start: ClassVar[bool] = False
    #: an expired task's error ("{name}", "{id}"), followed by the server's words; when None, the
    #: server's words alone, else a generic note
    expired_text: ClassVar[str | None] = None
    #: outputs on exactly base_url's origin need the key (Veo, OpenRouter); see `_downloads`
    authenticated_downloads: ClassVar[bool] = False

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        self._api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    @classmethod
    def key_from_env(cls, read: Callable[[str], str | None]) -> str | None:
        """The key, from the environment as `read` sees it: the first of `env_var` and
        `env_vars` that is set. Override for keys made of parts (fal's ID and secret)."""
        names = (cls.env_var, *cls.env_vars) if cls.env_var else ()
        return next((key for name in names if (key := read(name))), None)

    def __repr__(self) -> str:  # never show the key
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @property
    def account(self) -> str:
        """A stable, non-reversible name for the key: rate budgets are per account, and a hash
        can sit in a dict or a log where the key itself must never be."""
        return hashlib.sha256((self._api_key or "").encode()).hexdigest()[:16]

    def model_info(self, model: str) -> ModelInfo | None:
        return self.models.get(model)

    def check_model(self, model: str) -> None:
        """Refuse a model name before anything is sent, when that can be known locally."""
        if not model or any(c.isspace() for c in model):
            raise self.unknown_model(model)
        if not self.open_catalogue and model not in self.models:
            raise self.unknown_model(model)

    def unknown_model(self, model: str, detail: str | None = None) -> GenError:
        return unknown_model(self.name, model, list(self.models), detail)

    def validate(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, JSON-ready parameters (defaults filled in), or `InvalidParams`."""
        self.check_model(model)
        clean = check_params(self.model_info(model), params, provider=self.name, model=model)
        if self.model_in_body and "model" in clean:
            why = f"'model' is not a parameter: name the model as {self.name}:<model>"
            raise InvalidParams(why, provider=self.name, model=model)
        return clean

    def kind_of(self, model: str) -> OutputKind | None:
        info = self.model_info(model)
        return info.kind if info else None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def build_submit(self, model: str, params: Mapping[str, Any]) -> Request:
        raise NotImplementedError

    def parse_submit(self, model: str, params: Mapping[str, Any], response: Response) -> Task:
        raise NotImplementedError

    def build_poll(self, task: Task) -> Request:
        raise NotImplementedError

    def parse_poll(self, task: Task, response: Response) -> Task:
        """The task's state wherever the answer carries one, whatever the HTTP code; a 404
        means expired; any other error is raised, and so is an answer with no state."""
        record = self.state_in(response, task)
        if record is not None:
            return self.snapshot(task, record, response.received_at)
        if response.status_code == 404:
            return self.expired(task, response)
        if not response.ok:
            raise self.error_for(response, task=task)
        raise self.malformed("the answer carries no task status", response, task=task)

    def build_result(self, task: Task) -> Request | None:
        """A second request that fetches outputs after the status says done (Segmind), or None."""
        return None

    def parse_result(self, task: Task, response: Response) -> Task:
        return self.parse_poll(task, response)

    def build_cancel(self, task: Task) -> Request:
        raise self.not_supported("cancel")

    def parse_cancel(self, task: Task, response: Response) -> Task:
        raise self.not_supported("cancel")

    def build_list(self, **filters: Any) -> Request:
        """``GET list_path`` with the filters as query parameters, checked where documented."""
        if not self.can_list:
            raise self.not_supported("list")
        query = check_filters(filters, self.list_filters, self.list_statuses, provider=self.name)
        return self.request("GET", self.list_path, params=query or None)

    def parse_list(self, response: Response) -> list[Task]:
        """The tasks in a list answer (the records under `list_key`, or a bare list); records
        without an id are skipped, since nothing can poll or cancel them."""
        if not self.can_list:
            raise self.not_supported("list")
        if not response.ok:
            raise self.error_for(response)
        body = self.json_body(response)
        items = dig(body, self.list_key) if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise self.malformed(f"the answer has no {self.list_key} list", response)
        tasks = []
        for record in items:
            task_id = first_id(record, *self.id_keys) if isinstance(record, Mapping) else None
            if task_id is not None:
                model, params = self.listed(record)
                found = Task(
                    id=task_id, provider=self.name, model=model, status=Status.QUEUED, params=params
                )
                tasks.append(self.snapshot(found, record, response.received_at))
        return tasks

    def listed(self, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The model and parameters of a task found in a list answer."""
        return text(record.get("model")) or "unknown", {}

    def build_delete(self, task: Task) -> Request:
        raise self.not_supported("delete")

    def parse_delete(self, task: Task, response: Response) -> None:
        raise self.not_supported("delete")

    def state_in(self, response: Response, task: Task | None = None) -> Mapping[str, Any] | None:
        """The task record in an answer, when it carries a task state; adapters say where."""
        body = response.json_or_none()
        ok = response.ok and isinstance(body, Mapping) and isinstance(body.get("status"), str)
        return body if ok else None

    def new_task(
        self,
        model: str,
        params: Mapping[str, Any],
        response: Response,
        record: Mapping[str, Any] | None,
        **fields: Any,
    ) -> Task:
        """The task a submit created, from the provider's record of it, taken further by
        `snapshot` when the record already states a status; `MalformedResponse` without an id."""
        task_id = first_id(record, *self.id_keys) if isinstance(record, Mapping) else None
        if record is None or task_id is None:
            raise self.malformed("the answer names no task id", response, model=model)
        fields.setdefault("created_at", response.received_at)  # when it was accepted, at least
        queued = {"provider": self.name, "model": model, "status": Status.QUEUED}
        task = Task(id=task_id, params=dict(params), **queued, **fields)
        if not isinstance(record.get("status"), str):
            return task
        return self.snapshot(task, record, response.received_at)

    def snapshot(self, task: Task, record: Mapping[str, Any], now: datetime) -> Task:
        """The next snapshot of `task` from the provider's record of it, received at `now`."""
        raise NotImplementedError

    def status_of(self, raw: str) -> Status:
        """The normalized status of the provider's word; an undocumented one means running."""
        wanted = raw.strip().lower()
        found = (status for word, status in self.statuses.items() if word.lower() == wanted)
        return next(found, Status.RUNNING)

    def times(
        self, task: Task, status: Status, record: Mapping[str, Any], seen: datetime, **times: Any
    ) -> dict[str, datetime | None]:
        """``created_at``/``started_at``/``finished_at`` for the next snapshot: the record's
        `time_fields` (or `times` given), else what earlier snapshots knew, else `seen` (when the
        answer came) for a task first seen done, or running where `stamp_start` says so."""
        found = {
            key: parse_time(times[key] if key in times else record.get(path) if path else None)
            for key, path in zip(("created", "started", "finished"), self.time_fields, strict=True)
        }
        started = found["started"] or task.started_at
        if started is None and self.stamp_start and status is Status.RUNNING:
            started = seen
        finished = found["finished"] or task.finished_at or seen
        return {
            "created_at": found["created"] or task.created_at,
            "started_at": started,
            "finished_at": finished if status.is_terminal else None,
        }

    def failure(self, raw: str | None, reason: Any) -> str:
        """A failed task's error: the provider's reason, or a note that it gave none."""
        return self._clean(reason) or f"{self.name} reported {raw!r} with no reason"

    def expired(self, task: Task, response: Response) -> Task:
        """The task is gone (404 after retention): its results can no longer be fetched."""
        said = self._clean(self.error_message(response.json_or_none()))
        note = self.expired_text
        if note is None:
            error = said or f"{self.name} no longer knows this task (retention window passed)"
        else:
            note = note.format(name=self.name, id=task.id)
            error = f"{note}: {said}" if said else note
        finished = task.finished_at or response.received_at
        return task.evolve(status=Status.EXPIRED, error=error, finished_at=finished)

    def error_message(self, body: Any) -> str | None:
        """The human message in an error body (see `error_texts`)."""
        return error_text(body, self.error_texts)

    def fault(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> Fault:
        """What an error answer says, read once for the error table."""
        body = response.json_or_none()
        kind = dig(body, self.error_kind)
        return Fault(
            code=response.status_code,
            kind=str(kind).lower() if kind is not None else "",
            said=self._clean(self.error_message(body)),
            retry_after=retry_after(response),
            known=tuple(self.models),
            **error_context(self.name, task, model),
        )

    def error_for(
        self, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> GenError:
        """The exception for an error answer, from the adapter's `errors` table."""
        return interpret(self.errors, self.fault(response, task=task, model=model))

    def malformed(
        self, why: str, response: Response, *, task: Task | None = None, model: str | None = None
    ) -> MalformedResponse:
        """`MalformedResponse` naming what came: not JSON at all, or JSON without `why`."""
        code = response.status_code
        where = error_context(self.name, task, model)
        if not is_json(response.content):
            snippet = response.content[:80].decode("utf-8", "replace")
            message = f"Expected JSON from {self.name}, got HTTP {code}: {snippet!r}"
        else:
            message = f"Unexpected answer from {self.name} (HTTP {code}): {why}"
        return MalformedResponse(message, status_code=code, **where)

    def json_body(self, response: Response, task: Task | None = None) -> Any:
        """The decoded JSON body, or `MalformedResponse` naming what came instead."""
        if not is_json(response.content):
            raise self.malformed("", response, task=task)
        return json.loads(response.content)

    def _clean(self, value: Any) -> str | None:
        """Server text made safe to show: a string, clipped, with the key (if echoed) removed."""
        said = text(value)
        if said is None:
            return None
        said = said[:MAX_SERVER_TEXT]
        return said.replace(self._api_key, "***") if self._api_key else said

    def not_supported(self, what: str) -> NotSupported:
        return NotSupported(f"{self.name} has no {what} endpoint", provider=self.name)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def request(self, method: Method, where: str, **parts: Any) -> Request:
        """A request to `where` (a path under `base_url`, or a URL), with the key's headers
        and any given ``headers``, ``json`` and ``params``."""
        url = where if where.startswith(("http://", "https://")) else self.url(where)
        headers = {**self.auth_headers(), **parts.pop("headers", {})}
        return Request(method, url, headers=headers, **parts)

    def output(
        self,
        url: str,
        *,
        kind: OutputKind | None = None,
        content_type: str | None = None,
        size: Any = None,
        model: str | None = None,
        hint: OutputKind | None = None,
    ) -> Output:
        """An `Output` whose kind is `kind`, else guessed from content type and URL, else the
        model's kind in our catalogue, else the provider's `hint`, else "image"."""
        catalogued = self.kind_of(model) if model else None
        guessed = kind or guess_kind(url, content_type) or catalogued or hint or "image"
        return Output(kind=guessed, url=url, content_type=content_type, size=as_int(size))

    def outputs(self, items: Any, model: str, hint: OutputKind | None = None) -> list[Output]:
        """Outputs for the http(s) links in `items`: a URL, a list of URLs or of ``{url}``
        objects. Anything else from the server is not followed."""
        found = []
        for item in items if isinstance(items, list) else [items]:
            url = item.get("url") if isinstance(item, Mapping) else item
            if is_http_url(url):
                found.append(self.output(url, model=model, hint=hint))
        return found

