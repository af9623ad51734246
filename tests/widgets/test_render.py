"""Pure formatting: escaping, times, media previews and their size bounds, the static fallback."""

from __future__ import annotations

import base64
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from genwidgets import Output, Status, Task
from genwidgets._media import render_audio, render_image, render_video
from genwidgets._models import utcnow
from genwidgets.widgets import _render as render

HOSTILE = "<img src=x onerror=alert(1)>"


def test_esc_escapes_markup_and_quotes() -> None:
    assert render.esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert render.esc(None) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (-1, "0.0 s"), (0.44, "0.4 s"), (12.7, "12 s"), (185, "3:05"), (3723, "1:02:03")],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert render.format_seconds(seconds) == text


def test_format_bytes() -> None:
    assert render.format_bytes(512) == "512 B"
    assert render.format_bytes(300 * 1024 * 1024) == "300.0 MB"


def test_fragments_escape_their_input() -> None:
    for fragment in (
        render.prompt_html(HOSTILE),
        render.error_html(HOSTILE),
        render.logs_html([HOSTILE]),
        render.title_html(HOSTILE, HOSTILE),
        render.badge_html(HOSTILE),
    ):
        assert HOSTILE not in fragment and "&lt;img src=x onerror=alert(1)&gt;" in fragment


def test_logs_keep_only_the_tail() -> None:
    text = render.logs_html([f"line {i}" for i in range(render.MAX_LOG_LINES + 5)])
    assert "5 earlier lines" in text and "line 4\n" not in text and "line 204" in text


def test_progress_text() -> None:
    task = Task(id="t", provider="p", model="m", status=Status.QUEUED, queue_position=3)
    assert render.progress_text(task) == "queue position 3"
    assert render.progress_text(task.evolve(status=Status.RUNNING, queue_position=None)) == ""
    assert render.progress_text(task.evolve(queue_position=None, progress=0.5)) == "50 %"
    assert render.progress_text(task.evolve(status=Status.SUCCEEDED)) == ""


# ---------------------------------------------------------------------------------- previews
def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_image_within_budget_is_inline_with_a_bounded_thumbnail(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 800, 600))
    (preview,) = render.prepare_previews([Output(kind="image", path=path)])
    assert preview.data == path.read_bytes() and preview.format == "png"
    assert preview.note is None and preview.thumb is not None
    thumb = Image.open(io.BytesIO(preview.thumb))
    assert max(thumb.size) <= render.THUMB_SIZE and preview.thumb_mime == "image/jpeg"


def test_image_over_budget_gets_a_reduced_copy_and_a_note(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 256, 256))
    (preview,) = render.prepare_previews([Output(kind="image", path=path)], limit=1000)
    assert preview.data is None and preview.poster is not None
    assert str(path) in (preview.note or "") and "reduced copy" in (preview.note or "")


def test_video_over_budget_gets_its_first_frame(tmp_path: Path) -> None:
    data = render_video("waves", 1, seconds=0.5, fps=6, width=64, height=64)
    path = write(tmp_path, "v.mp4", data)
    (preview,) = render.prepare_previews([Output(kind="video", path=path)], limit=len(data) - 1)
    assert preview.data is None
    assert preview.poster is not None and preview.poster.startswith(b"\x89PNG")
    assert "first frame" in (preview.note or "") and str(path) in (preview.note or "")
    (inline,) = render.prepare_previews([Output(kind="video", path=path)])
    assert inline.data == data and inline.format == "mp4" and inline.note is None


def test_budget_is_shared_by_all_outputs(tmp_path: Path) -> None:
    first = write(tmp_path, "a.png", render_image("a", 1, 64, 64))
    second = write(tmp_path, "b.png", render_image("b", 2, 64, 64))
    limit = first.stat().st_size + 10
    previews = render.prepare_previews(
        [Output(kind="image", path=first), Output(kind="image", path=second)], limit=limit
    )
    assert previews[0].data is not None and previews[1].data is None


def test_audio_data_uri_only_when_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = render_audio("hello", 1, seconds=0.3, speech=False)
    path = write(tmp_path, "s.wav", data)
    (small,) = render.prepare_previews([Output(kind="audio", path=path)])
    assert small.mime == "audio/wav" and small.format == "wav"
    assert small.audio_uri is not None and small.audio_uri.startswith("data:audio/wav;base64,")
    monkeypatch.setattr(render, "MAX_AUDIO_DATA_URI", len(data) - 1)
    (large,) = render.prepare_previews([Output(kind="audio", path=path)])
    assert large.audio_uri is None
    assert "<audio" not in render.fallback_html(name="x", state="succeeded", previews=[large])
    assert "<audio controls" in render.fallback_html(name="x", state="succeeded", previews=[small])


def test_the_bytes_decide_the_kind_and_missing_files_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "weird.bin", render_image("a", 1, 32, 32))
    (preview,) = render.prepare_previews([Output(kind="video", path=path)])
    assert preview.kind == "image" and preview.mime == "image/png"
    (gone,) = render.prepare_previews([Output(kind="image", path=tmp_path / "nope.png")])
    assert gone.data is None and "missing" in (gone.note or "")
    (text,) = render.prepare_previews([Output(kind="text", text=HOSTILE)])
    assert text.text == HOSTILE
    assert HOSTILE not in render.fallback_html(name="x", state="succeeded", previews=[text])


# ---------------------------------------------------------------------------------- fallback
def finished_task(path: Path) -> Task:
    start = utcnow() - timedelta(seconds=30)
    return Task(
        id="task-<1>",
        provider="fake",
        model="image",
        status=Status.SUCCEEDED,
        params={"prompt": HOSTILE, "seed": 3, "style": "<i>oil</i>"},
        created_at=start,
        started_at=start + timedelta(seconds=5),
        finished_at=start + timedelta(seconds=20),
        outputs=(Output(kind="image", path=path),),
    )


def test_static_fallback_contents(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 1024, 1024))
    task = finished_task(path)
    previews = render.prepare_previews(task.outputs)
    html_text = render.fallback_html(
        name=task.name,
        state="succeeded",
        elapsed="20 s",
        prompt=task.prompt,
        error=HOSTILE,
        task=task,
        previews=previews,
    )
    for raw in (HOSTILE, "<i>oil</i>", "task-<1>"):
        assert raw not in html_text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_text
    assert "<script" not in html_text.lower()
    assert not re.search(r"<[^>]*onerror", html_text)  # no tag carries an event handler
    assert 'data-state="succeeded"' in html_text and "fake:image" in html_text
    assert str(path) in html_text  # the saved path
    assert "queued 5.0 s" in html_text and "ran 15 s" in html_text and "total 20 s" in html_text
    (uri,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html_text)
    thumb = Image.open(io.BytesIO(base64.b64decode(uri)))
    assert max(thumb.size) <= render.THUMB_SIZE
    assert len(html_text) < 60_000  # a 1024 px PNG becomes a small thumbnail, not the file


def test_static_fallback_of_a_video_shows_its_poster(tmp_path: Path) -> None:
    path = write(
        tmp_path, "v.mp4", render_video("waves", 1, seconds=0.5, fps=6, width=64, height=64)
    )
    previews = render.prepare_previews([Output(kind="video", path=path)])
    html_text = render.fallback_html(name="fake:video", state="succeeded", previews=previews)
    assert "first frame" in html_text and "<video" not in html_text
    assert "data:image/jpeg;base64," in html_text and str(path) in html_text


def test_live_fallback_says_it_needs_a_kernel() -> None:
    html_text = render.fallback_html(name="fake:image", state="running", prompt="p")
    assert "live updates need a running kernel" in html_text


def test_bundle_and_summary() -> None:
    bundle = render.fallback_bundle("<div></div>", "plain", "abc")
    assert bundle[render.WIDGET_VIEW_MIME] == {
        "version_major": 2,
        "version_minor": 0,
        "model_id": "abc",
    }
    assert bundle["text/html"] == "<div></div>" and bundle["text/plain"] == "plain"
    assert render.WIDGET_VIEW_MIME not in render.fallback_bundle("", "", None)
    text = render.summary_text("fake:image", "failed", elapsed="3 s", prompt="p", error="boom")
    assert text == "[failed] fake:image (3 s): 'p'\nerror: boom"
