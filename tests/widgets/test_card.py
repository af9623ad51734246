"""StatusCard: snapshots in, widget traits and display bundles out. A scripted fake client stands
in for the real one (same async API); the last tests drive the real `AsyncClient` and its local
provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
from ipywidgets.widgets.widget import _instances

from genwidgets import InvalidParams, ModelInfo, Output, Param, Status, Task, TransportError
from genwidgets._media import render_audio, render_image, render_video
from genwidgets._models import utcnow
from genwidgets.widgets import StatusCard, _follow, show
from genwidgets.widgets import _card as card_module
from genwidgets.widgets._base import owned
from genwidgets.widgets._render import WIDGET_VIEW_MIME

HOSTILE_PROMPT = "<img src=x onerror=alert(1)>"
HOSTILE_ERROR = '<script>alert("err")</script>'
HOSTILE_LOG = "<b onmouseover=alert(2)>log</b>"

MODELS = {
    "fake": [
        ModelInfo(
            "image",
            "image",
            "a scripted model",
            {
                "steps": Param(int, "denoising steps", minimum=1),
                "guidance": Param(float, "how closely to follow", default=2.5),
                "style": Param(str, "look", choices=("photo", "sketch")),
                "safety": Param(bool, "filter unsafe output"),
                "negative": Param(str, "what not to show"),
                "tools": Param(list, "tool list"),
                "length": Param((int, float), "seconds"),
            },
            closed=True,
        ),
        ModelInfo("free", "image", "no schema"),
    ],
    "local": [ModelInfo("image", "image")],
}


class FakeClient:
    """The `AsyncClient` surface the widgets use, scripted and recording every call.

    Each task goes queued -> running (progress, logs) -> succeeded (or `fail`, or held until
    cancelled with `hold=True`). Succeeded outputs carry a URL only; `download` adds the paths.
    """

    def __init__(
        self,
        files: tuple[tuple[str, Path], ...] = (),
        *,
        hold: bool = False,
        cancellable: bool = True,
        fail: str | None = None,
        logs: tuple[str, ...] = ("step 1",),
        submit_error: Exception | None = None,
        updates_error: Exception | None = None,
        download_error: Exception | None = None,
        notice: Any = None,
    ) -> None:
        self.files = files
        self.hold = hold
        self.cancellable = cancellable
        self.fail = fail
        self.logs = logs
        self.submit_error = submit_error
        self.updates_error = updates_error
        self.download_error = download_error
        self.notice = notice  # given to on_wait; the submit then waits until `slot` is set
        self.slot = asyncio.Event()
        self.calls: list[tuple[Any, ...]] = []
        self.count = 0
        self._release: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()

    def names(self, method: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == method]

    def _check(self, model: str, params: dict[str, Any]) -> None:
        if "bad" in params:
            raise InvalidParams(f"Parameter 'bad' is {HOSTILE_ERROR}", model=model)
        if not str(params.get("prompt") or "").strip():
            raise InvalidParams("A non-empty prompt is required", model=model)

    def validate(self, model: str, **params: Any) -> dict[str, Any]:
        self.calls.append(("validate", model, params))
        self._check(model, params)
        return dict(params)

    async def submit(self, model: str, *, on_wait: Any = None, **params: Any) -> Task:
        self.calls.append(("submit", model, params))
        self._check(model, params)
        if self.submit_error is not None:
            raise self.submit_error
        if self.notice is not None and on_wait is not None:
            on_wait(self.notice)
            await self.slot.wait()
        await asyncio.sleep(0)
        self.count += 1
        provider, _, name = model.partition(":")
        task = Task(
            id=f"task-{self.count}",
            provider=provider,
            model=name,
            status=Status.QUEUED,
            params=params,
            created_at=utcnow(),
            queue_position=2,
        )
        self._release[task.id] = asyncio.Event()
        return task

    async def updates(self, task: Task) -> AsyncIterator[Task]:
        self.calls.append(("updates", task.id))
        yield task
        await asyncio.sleep(0.01)
        running = task.evolve(
            status=Status.RUNNING,
            queue_position=None,
            progress=0.25,
            started_at=utcnow(),
            logs=self.logs,
        )
        yield running
        if self.updates_error is not None:
            raise self.updates_error
        if self.hold:
            await self._release[task.id].wait()
        if task.id in self._cancelled:
            yield running.evolve(status=Status.CANCELLED, finished_at=utcnow())
        elif self.fail is not None:
            yield running.evolve(status=Status.FAILED, error=self.fail, finished_at=utcnow())
        else:
            outputs = tuple(
                Output(kind=kind, url=f"https://files.example/{i}")  # type: ignore[arg-type]
                for i, (kind, _path) in enumerate(self.files)
            )
            yield running.evolve(
                status=Status.SUCCEEDED, progress=1.0, outputs=outputs, finished_at=utcnow()
            )

    async def cancel(self, task: Task) -> Task:
        self.calls.append(("cancel", task.id))
        await asyncio.sleep(0)
        self._cancelled.add(task.id)
        self._release[task.id].set()
        return task.evolve(status=Status.CANCELLED, finished_at=utcnow())

    async def download(self, task: Task) -> Task:
        self.calls.append(("download", task.id))
        if self.download_error is not None:
            raise self.download_error
        outputs = tuple(
            output.model_copy(update={"path": path, "sha256": "ab" * 32})
            for output, (_kind, path) in zip(task.outputs, self.files, strict=True)
        )
        return task.evolve(outputs=outputs)

    def can_cancel(self, task: Task) -> bool:
        return self.cancellable

    def available_models(self) -> dict[str, list[ModelInfo]]:
        return MODELS

    def model_info(self, model: str) -> ModelInfo | None:
        provider, _, name = model.partition(":")
        return next((m for m in MODELS.get(provider, []) if m.name == name), None)


# ---------------------------------------------------------------------------------- helpers
def tree(root: widgets.Widget) -> Iterator[widgets.Widget]:
    """Every widget reachable from `root`: synced children plus the card's hidden parts."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        widget = stack.pop()
        if id(widget) in seen:
            continue
        seen.add(id(widget))
        yield widget
        stack.extend(owned(widget))
        stack.extend(v for v in vars(widget).values() if isinstance(v, widgets.Widget))
        for value in vars(widget).values():
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, widgets.Widget))


def classes(card: StatusCard) -> set[str]:
    """The classes of the widget parts currently shown (in the card's children, recursively)."""
    shown: set[str] = set()
    stack: list[widgets.Widget] = list(card.children)
    while stack:
        widget = stack.pop()
        shown.update(getattr(widget, "_dom_classes", ()))
        stack.extend(getattr(widget, "children", ()))
    return shown


def html_values(root: widgets.Widget) -> list[str]:
    return [w.value for w in tree(root) if isinstance(w, widgets.HTML)]


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "image.png"
    path.write_bytes(render_image("a red rose", 3, 64, 64))
    return path


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(render_video("waves", 1, seconds=0.5, fps=6, width=64, height=64))
    return path


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "sound.wav"
    path.write_bytes(render_audio("hello", 1, seconds=0.3, speech=False))
    return path


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every comm message the widgets send: (model_id, message)."""
    messages: list[tuple[str, dict[str, Any]]] = []

    def record(self: widgets.Widget, msg: dict[str, Any], buffers: Any = None) -> None:
        messages.append((self.model_id, msg))

    monkeypatch.setattr(widgets.Widget, "_send", record)
    return messages


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every display / update_display call, as if in a notebook."""
    import IPython.display

    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    monkeypatch.setattr(card_module, "_shell_active", lambda: True)
    monkeypatch.setattr(
        IPython.display, "display", lambda obj, **kw: calls.append(("display", obj, kw))
    )
    monkeypatch.setattr(
        IPython.display, "update_display", lambda obj, **kw: calls.append(("update", obj, kw))
    )
    return calls


def snapshot(status: Status = Status.RUNNING, **changes: Any) -> Task:
    base = Task(
        id="t-1",
        provider="fake",
        model="image",
        status=Status.QUEUED,
        params={"prompt": HOSTILE_PROMPT, "seed": 3},
        created_at=utcnow(),
    )
    return base.evolve(status=status, **changes)


async def until(predicate: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


# ---------------------------------------------------------------------------------- snapshots
def test_states_from_a_scripted_sequence_of_snapshots() -> None:
    card = StatusCard(snapshot(Status.QUEUED, queue_position=4), client=FakeClient())
    assert card.state == "queued" and card.status is Status.QUEUED
    assert 'data-state="queued"' in card._headline.value
    assert "queue position 4" in card._status.value
    assert "genwidgets-cancel" in classes(card)

    card.set_task(snapshot(Status.RUNNING, progress=0.42, logs=("one", "two")))
    assert card.state == "running"
    assert "42 %" in card._status.value and "width:42%" in card._status.value
    assert '<details class="genwidgets-logs"' in card._body.value  # logs start folded
    assert "Logs (2)" in card._body.value and "<details open" not in card._body.value

    card.set_task(snapshot(Status.FAILED, error="boom", finished_at=utcnow()))
    assert card.state == "failed"
    assert "boom" in card._body.value and "genwidgets-error" in card._body.value
    shown = classes(card)
    assert "genwidgets-retry" in shown and "genwidgets-cancel" not in shown
    assert "genwidgets-progress" not in card._status.value  # a finished card has no progress bar
    card.close()


def test_a_live_card_keeps_its_shape_while_it_runs() -> None:
    """Prompt, one status line, the progress bar and the folded details are there in every live
    phase, from submitting on (the card does not jump), and the task id does not wrap."""
    from genwidgets.widgets._state import WaitInfo

    card = StatusCard(model="fake:image", params={"prompt": "rose", "seed": 3}, client=FakeClient())

    def shape() -> tuple[int, bool, int, bool]:
        status, body = card._status.value, card._body.value
        return (status.count("<div"), "genwidgets-progress" in status, body.count("<div"),
                "seed=3" in body)

    shapes = [shape()]
    card._apply(card.card_state.waiting(WaitInfo("waiting for a slot")))
    shapes.append(shape())
    for task in (
        snapshot(Status.QUEUED),
        snapshot(Status.QUEUED, queue_position=3),
        snapshot(Status.RUNNING),
        snapshot(Status.RUNNING, progress=0.7),
    ):
        card.set_task(task)
        shapes.append(shape())
    assert len(set(shapes)) == 1, shapes
    assert 'white-space:nowrap">t-1</code>' in card._body.value
    card.close()


def test_a_stale_snapshot_after_the_end_is_ignored() -> None:
    card = StatusCard(snapshot(Status.CANCELLED, finished_at=utcnow()))
    card.set_task(snapshot(Status.RUNNING, progress=0.5))
    assert card.state == "cancelled"
    card.close()


@pytest.mark.parametrize(
    ("status", "cancellable", "cancel", "retry"),
    [
        (Status.QUEUED, True, True, False),
        (Status.RUNNING, True, True, False),
        (Status.RUNNING, False, False, False),
        (Status.SUCCEEDED, True, False, False),
        (Status.FAILED, True, False, True),
        (Status.CANCELLED, True, False, True),
        (Status.EXPIRED, True, False, True),
    ],
)
def test_button_visibility(status: Status, cancellable: bool, cancel: bool, retry: bool) -> None:
    card = StatusCard(client=FakeClient(cancellable=cancellable), model="fake:image")
    card.set_task(snapshot(status))
    shown = classes(card)
    assert ("genwidgets-cancel" in shown) is cancel
    assert ("genwidgets-retry" in shown) is retry
    card.close()


def test_no_client_means_no_buttons() -> None:
    card = StatusCard(snapshot(Status.FAILED, error="x"))
    assert not {"genwidgets-cancel", "genwidgets-retry"} & classes(card)
    card.close()


def test_set_task_sends_only_changes(sent: list[tuple[str, dict[str, Any]]]) -> None:
    card = StatusCard(snapshot(Status.QUEUED, queue_position=2), client=FakeClient())
    sent.clear()
    card.set_task(snapshot(Status.RUNNING, progress=0.5))
    per_widget: dict[str, int] = {}
    for model_id, msg in sent:
        assert msg["method"] == "update"
        per_widget[model_id] = per_widget.get(model_id, 0) + 1
    assert per_widget and max(per_widget.values()) == 1  # hold_sync: one message per widget
    assert card._headline.model_id in per_widget and card._status.model_id in per_widget

    sent.clear()
    card.set_task(card.task.evolve())  # a poll that changed nothing (fresh updated_at only)
    assert [m for m in sent if m[0] != card._elapsed.model_id] == []
    card.close()


# ---------------------------------------------------------------------------------- escaping
async def test_hostile_text_is_escaped_everywhere(image_file: Path) -> None:
    client = FakeClient((("image", image_file),), fail=HOSTILE_ERROR, logs=(HOSTILE_LOG,))
    card = StatusCard.submit(client, "fake:image", prompt=HOSTILE_PROMPT, seed=1, note="<i>x</i>")
    await card.wait()
    assert card.state == "failed"
    joined = "\n".join(html_values(card))
    for raw in (HOSTILE_PROMPT, HOSTILE_ERROR, HOSTILE_LOG, "<i>x</i>"):
        assert raw not in joined
    body = card._body.value
    assert "&lt;img src=x onerror=alert(1)&gt;" in card._prompt.value
    assert "&lt;script&gt;alert(&quot;err&quot;)&lt;/script&gt;" in body
    assert "&lt;b onmouseover=alert(2)&gt;" in body
    assert "&lt;i&gt;x&lt;/i&gt;" in body
    static = card.mimebundle()["text/html"]
    for raw in (HOSTILE_PROMPT, HOSTILE_ERROR, HOSTILE_LOG, "<i>x</i>"):
        assert raw not in static
    assert "&lt;img src=x onerror=alert(1)&gt;" in static
    card.close()


async def test_a_refused_submit_shows_its_escaped_error_and_awaiting_raises() -> None:
    client = FakeClient()
    card = StatusCard.submit(client, "fake:image", prompt="ok", bad=1)
    assert card.state == "submitting"
    with pytest.raises(InvalidParams):
        await card
    assert card.state == "error" and card.task is None and card.status == "error"
    assert "InvalidParams" in card._body.value and "&lt;script&gt;" in card._body.value
    assert "<script>" not in card._body.value
    assert "genwidgets-retry" in classes(card)
    card.close()


# ---------------------------------------------------------------------------------- tracking
async def test_track_downloads_then_shows_the_image_from_the_file(image_file: Path) -> None:
    import base64

    client = FakeClient((("image", image_file),))
    task = await client.submit("fake:image", prompt="a red rose", seed=3)
    card = StatusCard(task)
    job = card.track(client, task)
    assert isinstance(job, asyncio.Task)
    final = await card
    assert final.status is Status.SUCCEEDED
    assert [c[0] for c in client.calls] == ["submit", "updates", "download"]
    body = card._body.value
    encoded = base64.b64encode(image_file.read_bytes()).decode()
    assert f'src="data:image/png;base64,{encoded}" width="64"' in body  # natural size
    assert "seed=3" in body and "total" in body  # parameters and timings
    assert '<details class="genwidgets-details"' in body and "<details open" not in body
    assert "image.png" in body and str(image_file.parent) not in body  # no absolute path
    assert card.settled and card not in _follow.TICKER
    card.close()


async def test_video_and_audio_play_inline_and_never_autoplay(
    video_file: Path, audio_file: Path
) -> None:
    client = FakeClient((("video", video_file), ("audio", audio_file)))
    card = StatusCard.submit(client, "fake:image", prompt="waves")
    await card
    body = card._body.value
    assert body.count("<video ") == 1 and body.count("<audio ") == 1
    assert "data:video/mp4;base64," in body and "data:audio/wav;base64," in body
    assert 'poster="data:image/' in body and ' width="64"' in body
    assert "autoplay" not in body and "loop" not in body and "controls" in body
    card.close()


async def test_a_large_video_shows_its_first_frame_and_size_not_the_bytes(
    video_file: Path,
) -> None:
    import base64

    size = video_file.stat().st_size
    client = FakeClient((("video", video_file),))
    card = StatusCard(model="fake:image", client=client, max_inline_bytes=size - 1)
    card._spawn(card._submit_and_follow(client, "fake:image", {"prompt": "waves"}))
    await card.wait()
    body = card._body.value
    assert "<video" not in body and 'class="genwidgets-poster"' in body
    assert "too large to embed" in body and "first frame" in body
    encoded = base64.b64encode(video_file.read_bytes()).decode()
    assert encoded not in body and encoded not in card.mimebundle()["text/html"]
    card.close()


async def test_errors_in_the_tracking_task_are_shown_not_lost() -> None:
    client = FakeClient(updates_error=TransportError("connection reset <by peer>"))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await card.wait()
    assert card.state == "error"
    assert "TransportError" in card._body.value
    assert "connection reset &lt;by peer&gt;" in card._body.value
    assert card.settled and card not in _follow.TICKER
    card.close()


async def test_download_error_keeps_the_status_and_shows_the_error(image_file: Path) -> None:
    from genwidgets import DownloadError

    client = FakeClient((("image", image_file),), download_error=DownloadError("URL expired"))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await card.wait()
    assert card.state == "succeeded" and "URL expired" in (card.error or "")
    assert "URL expired" in card._body.value and "downloading" not in card._status.value
    assert "genwidgets-retry" in classes(card)
    card.close()


async def test_cancel_button_cancels_in_a_loop_task() -> None:
    client = FakeClient(hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await until(lambda: card.state == "running")
    assert "genwidgets-cancel" in classes(card)
    card._cancel_button.click()
    assert card._cancel_button.disabled is True and "Cancelling" in card._cancel_button.description
    await card.wait()
    assert card.state == "cancelled"
    assert client.names("cancel") == [("cancel", "task-1")]
    assert "genwidgets-cancel" not in classes(card) and "genwidgets-retry" in classes(card)
    card.close()


async def test_retry_submits_the_same_again_in_the_same_card(image_file: Path) -> None:
    client = FakeClient(fail="out of memory")
    card = StatusCard.submit(client, "fake:image", prompt="rose", seed=7)
    await card.wait()
    assert card.state == "failed"
    client.fail = None
    client.files = (("image", image_file),)
    card._retry_button.click()
    assert card.state == "submitting" and card.task is None
    final = await card
    assert card.state == "succeeded" and final.id == "task-2"
    submits = client.names("submit")
    assert len(submits) == 2 and submits[0][1:] == submits[1][1:]
    assert "out of memory" not in card._body.value and "data:image/png" in card._body.value
    card.close()


async def test_a_waiting_card_says_why_until_when_and_keeps_its_cancel() -> None:
    from datetime import timedelta
    from types import SimpleNamespace

    notice = SimpleNamespace(
        message="waiting for a slot: 1 of 1 fake tasks in flight", seconds=90.0
    )
    client = FakeClient(notice=notice)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await until(lambda: card.state == "waiting")
    body = card._status.value
    assert "waiting for a slot: 1 of 1 fake tasks in flight" in body
    expected = (utcnow() + timedelta(seconds=90)).astimezone()
    assert f"expected to go on at ~{expected:%H:%M}" in body
    assert "genwidgets-cancel" in classes(card) and card.can_cancel
    card.cancel()  # withdrawn: the submit never goes out
    await card.wait()
    assert card.state == "cancelled" and "nothing was sent" in card._status.value
    card.close()


async def test_one_ticker_for_all_cards_and_the_time_never_goes_back(
    sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_follow.TICKER, "period", 0.05)
    client = FakeClient(hold=True)
    cards = [StatusCard.submit(client, "fake:image", prompt=f"rose {i}") for i in range(5)]
    await until(lambda: all(c.state == "running" for c in cards))
    assert all(card in _follow.TICKER for card in cards)
    jobs = {t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Ticker._run"}
    assert len(jobs) == 1  # one asyncio task ticks every card
    first = cards[0]
    sent.clear()
    values = []
    for _ in range(6):
        await asyncio.sleep(0.05)
        values.append(float(first._elapsed.value.split()[0]))
    assert values == sorted(values) and values[-1] > values[0]
    ticks = [msg for model_id, msg in sent if model_id == first._elapsed.model_id]
    assert ticks and all(set(m["state"]) == {"value"} for m in ticks)
    others = {model_id for model_id, _ in sent} - {c._elapsed.model_id for c in cards}
    assert others == set()  # nothing but the clocks is pushed while the tasks sit still
    for card in cards:
        card.cancel()
    for card in cards:
        await card.wait()
    assert not any(card in _follow.TICKER for card in cards)
    frozen = first.elapsed
    await asyncio.sleep(0.06)
    assert first.elapsed == frozen
    # What the user reads never goes back: the label is rounded to 0.1 s, so compare labels.
    assert float(first._elapsed.value.split()[0]) >= values[-1]
    for card in cards:
        card.close()


# ---------------------------------------------------------------------------------- the handle
async def test_the_card_is_the_live_handle(image_file: Path) -> None:
    client = FakeClient((("image", image_file),), hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="a red rose", seed=3)
    assert card.status == "submitting" and card.outputs == () and card.task is None
    assert "submitting" in repr(card)
    await until(lambda: card.state == "running")
    assert card.status is Status.RUNNING and "running" in repr(card) and "task-1" in repr(card)
    client._release["task-1"].set()
    task = await card
    assert task is card.task and card.status == "succeeded" and card.status is Status.SUCCEEDED
    assert card.outputs[0].path == image_file  # the real path, downloaded
    assert "succeeded" in repr(card) and "image.png" in repr(card)
    assert str(image_file.parent) not in repr(card)
    assert await card is task  # awaiting again returns at once
    card.close()
    assert card.status == "succeeded" and card.outputs[0].path == image_file  # still there


# ---------------------------------------------------------------------------------- display
async def test_a_finished_card_leaves_a_static_output_and_closes_its_widgets(
    image_file: Path, shown: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> None:
    """JupyterLab prefers the widget view and shows "model not found" once the widget is gone,
    so the finished card's output has no widget view: only the static card."""
    client = FakeClient((("image", image_file),))
    card = StatusCard.submit(client, "fake:image", prompt="a red rose")
    card._ipython_display_()  # what a bare `card` at the end of a cell does
    kind, first, kw = shown[0]
    assert kind == "display" and kw["raw"] is True and kw["display_id"].startswith("genwidgets-")
    assert first[WIDGET_VIEW_MIME]["model_id"] == card.model_id
    assert 'data-state="submitting"' in first["text/html"] and "<img" not in first["text/html"]

    await card
    updates = [s for s in shown if s[0] == "update"]
    assert all(u[2]["display_id"] == kw["display_id"] for u in updates)
    phases = [u[1]["text/html"].split('data-state="', 1)[1].split('"', 1)[0] for u in updates]
    assert phases[0] == "queued" and phases[-1] == "succeeded"  # the saved form follows the phase
    assert "task-1" in updates[0][1]["text/plain"] and "resume" in updates[0][1]["text/plain"]
    _, final, _ = updates[-1]
    assert WIDGET_VIEW_MIME not in final and set(final) == {"text/html", "text/plain"}
    assert "data:image/png;base64," in final["text/html"] and "<script" not in final["text/html"]
    assert final["text/plain"].startswith("[succeeded] fake:image")
    assert card.comm is None and card._body.comm is None  # the widgets are closed
    assert card.status == "succeeded"

    count = len(shown)
    card._ipython_display_()  # the same cell shows it already: nothing more
    assert len(shown) == count
    monkeypatch_cell = card._shown_in
    card._shown_in = frozenset()  # as in a later cell
    card._ipython_display_()
    kind, again, kw2 = shown[-1]
    assert kind == "display" and kw2["display_id"] == kw["display_id"] and again == final
    card._shown_in = monkeypatch_cell
    card.close()
    assert len(shown) == count + 1  # closing a finished card publishes nothing more


async def test_retry_after_the_output_went_static_brings_the_widget_back(
    image_file: Path, shown: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> None:
    client = FakeClient(fail="out of memory")
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    card.display()
    await card.wait()
    assert card.comm is None and WIDGET_VIEW_MIME not in shown[-1][1]
    client.fail, client.files = None, (("image", image_file),)
    card.retry()
    assert card.comm is not None and card.state == "submitting"
    assert shown[-1][1][WIDGET_VIEW_MIME]["model_id"] == card.model_id
    await card
    assert WIDGET_VIEW_MIME not in shown[-1][1] and "data:image/png" in shown[-1][1]["text/html"]
    card.close()


async def test_under_voila_a_finished_card_keeps_its_widget(
    image_file: Path,
    shown: list[tuple[str, dict[str, Any], dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Voila never applies update_display to a rendered output: a closed widget would read
    "model not found" there, so the card stays a widget with its media."""
    monkeypatch.setenv("VOILA_KERNEL_ID", "k")
    card = StatusCard.submit(FakeClient((("image", image_file),)), "fake:image", prompt="rose")
    card.display()
    await card
    assert card.comm is not None and "data:image/png" in card._body.value
    assert WIDGET_VIEW_MIME in shown[-1][1]
    card.close()


async def test_cards_in_a_container_keep_their_widgets(image_file: Path) -> None:
    client = FakeClient((("image", image_file),))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    card.add_listener(lambda _card: None)  # what Gallery and SubmitForm do
    await card
    assert card.comm is not None and "data:image/png" in card._body.value
    card.close()


async def test_show_validates_then_displays_a_live_card(
    image_file: Path, shown: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> None:
    client = FakeClient((("image", image_file),))
    with pytest.raises(InvalidParams):
        show("fake:image", client=client, prompt="")
    assert client.names("submit") == [] and shown == []
    card = show("fake:image", client=client, prompt="a rose", seed=3)
    assert isinstance(card, StatusCard) and card.state == "submitting"
    assert len(shown) == 1 and shown[0][1][WIDGET_VIEW_MIME]["model_id"] == card.model_id
    task = await card
    assert task.status is Status.SUCCEEDED
    assert client.names("submit") == [("submit", "fake:image", {"prompt": "a rose", "seed": 3})]
    card.close()


def test_display_outside_ipython_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    card = StatusCard(snapshot(Status.RUNNING))
    card.display()
    out = capsys.readouterr().out
    assert out.startswith("[running] fake:image") and "t-1" in out and "resume()" in out
    card.close()


# ---------------------------------------------------------------------------------- closing
async def test_close_releases_every_widget_and_stops_following(image_file: Path) -> None:
    client = FakeClient((("image", image_file),), hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await until(lambda: card.state == "running")
    ids = [w.model_id for w in tree(card)]
    assert all(model_id in _instances for model_id in ids)
    job = card._follow_job
    card.close()
    await asyncio.sleep(0)
    assert job is not None and job.cancelled()
    assert not [model_id for model_id in ids if model_id in _instances]
    assert card not in _follow.TICKER


# ---------------------------------------------------------------------------------- real client
async def test_with_the_real_client_and_the_local_provider(tmp_path: Path) -> None:
    import base64

    from genwidgets import AsyncClient

    async with AsyncClient(cache_dir=tmp_path / "cache", journal=False) as client:
        card = StatusCard.submit(client, "local:image", prompt="a red rose", seed=3, duration=0.2)
        task = await asyncio.wait_for(card.wait(), 10)
        assert task is not None and task.status is Status.SUCCEEDED, card.error
        path = card.outputs[0].path
        assert path is not None
        encoded = base64.b64encode(Path(path).read_bytes()).decode()
        assert encoded in card._body.value
        static = card.mimebundle()
        for text in (static["text/html"], static["text/plain"], repr(card)):
            assert str(tmp_path) not in text and str(Path.home()) not in text
            assert "[genwidgets cache]/" in text
        card.close()
