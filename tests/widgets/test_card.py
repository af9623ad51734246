"""StatusCard: snapshots in, widget traits out. A scripted fake client stands in for the real one
(same async API); one test at the end drives the real `AsyncClient` and its local provider."""

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
from genwidgets.widgets import StatusCard, show
from genwidgets.widgets import _card as card_module
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
    ) -> None:
        self.files = files
        self.hold = hold
        self.cancellable = cancellable
        self.fail = fail
        self.logs = logs
        self.submit_error = submit_error
        self.updates_error = updates_error
        self.download_error = download_error
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
        stack.extend(card_module._owned(widget))
        stack.extend(v for v in vars(widget).values() if isinstance(v, widgets.Widget))
        for value in vars(widget).values():
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, widgets.Widget))


def classes(card: StatusCard) -> set[str]:
    """The classes of the parts currently shown (in the card's children, recursively)."""
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


# ---------------------------------------------------------------------------------- snapshots
def test_states_from_a_scripted_sequence_of_snapshots() -> None:
    card = StatusCard(snapshot(Status.QUEUED, queue_position=4), client=FakeClient())
    assert card.state == "queued"
    assert 'data-state="queued"' in card._headline.value
    assert card._queue.value == "queue position 4"
    assert "genwidgets-progress" not in classes(card)

    card.set_task(snapshot(Status.RUNNING, progress=0.42, logs=("one", "two")))
    assert card.state == "running"
    assert card._progress.value == pytest.approx(0.42)
    assert card._queue.value == "42 %"
    assert {"genwidgets-progress", "genwidgets-logs", "genwidgets-cancel"} <= classes(card)
    assert card._logs.selected_index is None  # logs start collapsed
    assert card._logs.titles == ("Logs (2)",)

    card.set_task(snapshot(Status.FAILED, error="boom", finished_at=utcnow()))
    assert card.state == "failed"
    assert "boom" in card._error.value
    shown = classes(card)
    assert "genwidgets-error" in shown and "genwidgets-retry" in shown
    assert "genwidgets-cancel" not in shown and "genwidgets-progress" not in shown
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
    assert card._headline.model_id in per_widget and card._progress.model_id in per_widget

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
    values = html_values(card)
    joined = "\n".join(values)
    for raw in (HOSTILE_PROMPT, HOSTILE_ERROR, HOSTILE_LOG, "<i>x</i>"):
        assert raw not in joined
    assert "&lt;img src=x onerror=alert(1)&gt;" in card._prompt.value
    assert "&lt;script&gt;alert(&quot;err&quot;)&lt;/script&gt;" in card._error.value
    assert "&lt;b onmouseover=alert(2)&gt;" in card._log_view.value
    assert "&lt;i&gt;x&lt;/i&gt;" in card._details.value
    static = card.mimebundle()["text/html"]
    for raw in (HOSTILE_PROMPT, HOSTILE_ERROR, "<i>x</i>"):
        assert raw not in static
    assert "&lt;img src=x onerror=alert(1)&gt;" in static
    card.close()


async def test_a_refused_submit_shows_its_escaped_error() -> None:
    client = FakeClient()
    card = StatusCard.submit(client, "fake:image", prompt="ok", bad=1)
    assert card.state == "submitting"
    await card.wait()
    assert card.state == "error"
    assert card.task is None
    assert "InvalidParams" in card._error.value and "&lt;script&gt;" in card._error.value
    assert "<script>" not in card._error.value
    assert "genwidgets-retry" in classes(card)
    card.close()


# ---------------------------------------------------------------------------------- tracking
async def test_track_downloads_then_shows_the_image_from_the_file(image_file: Path) -> None:
    client = FakeClient((("image", image_file),))
    task = await client.submit("fake:image", prompt="a red rose", seed=3)
    card = StatusCard(task)
    job = card.track(client, task)
    assert isinstance(job, asyncio.Task)
    final = await card.wait()
    assert final is not None and final.status is Status.SUCCEEDED
    assert [c[0] for c in client.calls] == ["submit", "updates", "download"]
    images = [w for w in card._media.children if isinstance(w, widgets.Image)]
    assert len(images) == 1 and bytes(images[0].value) == image_file.read_bytes()
    assert images[0].format == "png"
    assert str(image_file) in card._details.value  # the saved path
    assert "seed=3" in card._details.value  # the parameters
    assert "total" in card._details.value  # the timings
    assert card.settled and card._tick_job is None
    card.close()


async def test_video_and_audio_never_autoplay(video_file: Path, audio_file: Path) -> None:
    client = FakeClient((("video", video_file), ("audio", audio_file)))
    card = StatusCard.submit(client, "fake:image", prompt="waves")
    await card.wait()
    (video,) = [w for w in card._media.children if isinstance(w, widgets.Video)]
    (audio,) = [w for w in card._media.children if isinstance(w, widgets.Audio)]
    for player in (video, audio):
        assert player.autoplay is False and player.loop is False and player.controls is True
    assert video.format == "mp4" and bytes(video.value) == video_file.read_bytes()
    assert audio.format == "wav"
    card.close()


async def test_large_video_shows_its_poster_and_path_not_the_bytes(video_file: Path) -> None:
    size = video_file.stat().st_size
    client = FakeClient((("video", video_file),))
    card = StatusCard(model="fake:image", client=client, max_inline_bytes=size - 1)
    card._spawn(card._submit_and_follow(client, "fake:image", {"prompt": "waves"}))
    await card.wait()
    assert not any(isinstance(w, widgets.Video) for w in card._media.children)
    (poster,) = [w for w in card._media.children if isinstance(w, widgets.Image)]
    assert "genwidgets-poster" in poster._dom_classes
    assert bytes(poster.value).startswith(b"\x89PNG")
    assert str(video_file) in card._note.value and "first frame" in card._note.value
    video_bytes = video_file.read_bytes()
    for widget in list(_instances.values()):  # no widget anywhere holds the video's bytes
        value = getattr(widget, "value", None)
        assert not (isinstance(value, (bytes, memoryview)) and bytes(value) == video_bytes)
    card.close()


async def test_media_bytes_are_sent_once(image_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes travel in exactly one message (the Image's comm open); refreshes never resend."""
    image_bytes = image_file.read_bytes()
    carried: list[str] = []
    original_open, original_send = widgets.Widget.open, widgets.Widget.send_state

    def holds_image(state: dict[str, Any]) -> bool:
        value = state.get("value")
        return isinstance(value, (bytes, memoryview)) and bytes(value) == image_bytes

    def spy_open(self: widgets.Widget) -> None:
        original_open(self)
        if holds_image(self.get_state()):
            carried.append("open")

    def spy_send(self: widgets.Widget, key: Any = None) -> None:
        if holds_image(self.get_state(key)):
            carried.append("update")
        original_send(self, key)

    monkeypatch.setattr(widgets.Widget, "open", spy_open)
    monkeypatch.setattr(widgets.Widget, "send_state", spy_send)
    client = FakeClient((("image", image_file),))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await card.wait()
    card.set_task(card.task.evolve())  # refreshes after the media is shown
    card._refresh()
    assert carried == ["open"]
    card.close()


async def test_errors_in_the_tracking_task_are_shown_not_lost(image_file: Path) -> None:
    client = FakeClient(updates_error=TransportError("connection reset <by peer>"))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await card.wait()
    assert card.state == "error"
    assert "TransportError" in card._error.value
    assert "connection reset &lt;by peer&gt;" in card._error.value
    assert card._tick_job is None and card.settled


async def test_download_error_keeps_the_status_and_shows_the_error(image_file: Path) -> None:
    from genwidgets import DownloadError

    client = FakeClient((("image", image_file),), download_error=DownloadError("URL expired"))
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    await card.wait()
    assert card.state == "succeeded"
    assert "URL expired" in card._error.value
    assert "genwidgets-retry" in classes(card)
    assert "downloading" not in card._note.value or card._media not in card.children
    card.close()


async def test_cancel_button_cancels_in_a_loop_task() -> None:
    client = FakeClient(hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    while card.state != "running":
        await asyncio.sleep(0.005)
    assert "genwidgets-cancel" in classes(card)
    card._cancel_button.click()
    assert card._cancel_button.disabled is True
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
    await card.wait()
    assert card.state == "succeeded" and card.task is not None and card.task.id == "task-2"
    submits = client.names("submit")
    assert len(submits) == 2 and submits[0][1:] == submits[1][1:]
    assert "out of memory" not in card._error.value
    assert any(isinstance(w, widgets.Image) for w in card._media.children)
    card.close()


async def test_elapsed_ticks_while_live_and_stops_at_the_end(
    sent: list[tuple[str, dict[str, Any]]],
) -> None:
    client = FakeClient(hold=True)
    card = StatusCard(model="fake:image", client=client)
    card.tick_seconds = 0.02
    card._spawn(card._submit_and_follow(client, "fake:image", {"prompt": "rose"}))
    while card.state != "running":
        await asyncio.sleep(0.005)
    sent.clear()
    await asyncio.sleep(0.15)
    ticks = [msg for model_id, msg in sent if model_id == card._elapsed.model_id]
    assert 1 <= len(ticks) <= 10  # one short string per tick, only when it changed
    assert len(sent) == len(ticks)  # nothing else is pushed while the task sits still
    for msg in ticks:
        assert set(msg["state"]) == {"value"} and len(msg["state"]["value"]) < 12
    card.cancel()
    await card.wait()
    assert card._tick_job is None
    frozen = card._elapsed.value
    await asyncio.sleep(0.05)
    assert card._elapsed.value == frozen
    card.close()


# ---------------------------------------------------------------------------------- display
async def test_display_then_update_display_with_the_final_bundle(
    image_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    shown: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    monkeypatch.setattr(card_module, "_shell_active", lambda: True)
    monkeypatch.setattr(
        IPython.display, "display", lambda obj, **kw: shown.append(("display", obj, kw))
    )
    monkeypatch.setattr(
        IPython.display, "update_display", lambda obj, **kw: shown.append(("update", obj, kw))
    )
    client = FakeClient((("image", image_file),))
    card = StatusCard.submit(client, "fake:image", prompt="a red rose")
    card._ipython_display_()  # what a bare `card` at the end of a cell does
    assert len(shown) == 1
    kind, first, kw = shown[0]
    assert kind == "display" and kw["raw"] is True and kw["display_id"].startswith("genwidgets-")
    assert first[WIDGET_VIEW_MIME]["model_id"] == card.model_id
    assert "submitting" in first["text/html"] and "<img" not in first["text/html"]

    while not card.settled:  # the background task updates the display when the task ends
        await asyncio.sleep(0.005)
    updates = [s for s in shown if s[0] == "update"]
    assert len(updates) == 1
    _, final, kw2 = updates[0]
    assert kw2["display_id"] == kw["display_id"] and kw2["raw"] is True
    assert final[WIDGET_VIEW_MIME]["model_id"] == card.model_id
    html_text = final["text/html"]
    assert 'data-state="succeeded"' in html_text
    assert "data:image/jpeg;base64," in html_text and str(image_file) in html_text
    assert "<script" not in html_text
    assert "succeeded" in final["text/plain"] and str(image_file) in final["text/plain"]
    assert card._repr_mimebundle_() == card.mimebundle()
    await card.wait()  # and again from the awaiting cell, which nbclient listens to
    assert shown[-1] == ("update", final, kw2)

    card.close()  # a closed card leaves only the static summary behind
    _, closed, _ = shown[-1]
    assert WIDGET_VIEW_MIME not in closed and "data:image/jpeg" in closed["text/html"]


async def test_show_validates_then_displays_a_live_card(
    image_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    shown: list[dict[str, Any]] = []
    monkeypatch.setattr(card_module, "_shell_active", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setattr(IPython.display, "update_display", lambda obj, **kw: None)
    client = FakeClient((("image", image_file),))
    with pytest.raises(InvalidParams):
        show("fake:image", client=client, prompt="")
    assert client.names("submit") == [] and shown == []
    card = show("fake:image", client=client, prompt="a rose", seed=3)
    assert isinstance(card, StatusCard) and card.state == "submitting"
    assert len(shown) == 1 and shown[0][WIDGET_VIEW_MIME]["model_id"] == card.model_id
    task = await card.wait()
    assert task is not None and task.status is Status.SUCCEEDED
    assert client.names("submit") == [("submit", "fake:image", {"prompt": "a rose", "seed": 3})]
    card.close()


def test_display_outside_ipython_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    card = StatusCard(snapshot(Status.RUNNING))
    card.display()
    assert capsys.readouterr().out.startswith("[running] fake:image")
    card.close()


# ---------------------------------------------------------------------------------- closing
async def test_close_releases_every_widget_and_stops_following(image_file: Path) -> None:
    client = FakeClient((("image", image_file),), hold=True)
    card = StatusCard.submit(client, "fake:image", prompt="rose")
    while card.state != "running":
        await asyncio.sleep(0.005)
    ids = [w.model_id for w in tree(card)]
    assert all(model_id in _instances for model_id in ids)
    job = card._follow_job
    card.close()
    await asyncio.sleep(0)
    assert job is not None and job.cancelled()
    assert not [model_id for model_id in ids if model_id in _instances]


# ---------------------------------------------------------------------------------- real client
async def test_with_the_real_client_and_the_local_provider(tmp_path: Path) -> None:
    from genwidgets import AsyncClient

    async with AsyncClient(cache_dir=tmp_path / "cache", journal=False) as client:
        card = StatusCard.submit(client, "local:image", prompt="a red rose", seed=3, duration=0.2)
        task = await asyncio.wait_for(card.wait(), 10)
        assert task is not None and task.status is Status.SUCCEEDED, card.error
        (image,) = [w for w in card._media.children if isinstance(w, widgets.Image)]
        assert task.outputs[0].path is not None
        assert bytes(image.value) == Path(task.outputs[0].path).read_bytes()
        card.close()
