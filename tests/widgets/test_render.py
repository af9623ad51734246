"""Pure formatting: escaping, times, paths, media previews and their bounds, the card renderer."""

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
from genwidgets.widgets import _preview as preview_module
from genwidgets.widgets import _render as render
from genwidgets.widgets._media_html import join_media, media_html
from genwidgets.widgets._state import CardState, WaitInfo

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
    assert render.format_bytes(3 * 1024**3) == "3.0 GB"


def test_paths_are_relative_never_absolute(tmp_path: Path) -> None:
    notebook = tmp_path / "nb"
    cache = tmp_path / "home" / ".cache" / "genwidgets" / "blobs"
    inside = notebook / "data" / "blobs" / "ab" / "abc.png"
    cached = cache / "cd" / "cde.png"
    assert render.display_path(inside, cache, base=notebook) == "data/blobs/ab/abc.png"
    assert render.display_path(cached, cache, base=notebook) == "[genwidgets cache]/cd/cde.png"
    assert render.display_path(tmp_path / "elsewhere" / "x.mp4", cache, base=notebook) == "…/x.mp4"
    sha = "0123456789ab" + "c" * 44 + "deadbeef"
    assert render._short(f"[genwidgets cache]/01/{sha}.png") == (
        "[genwidgets cache]/01/0123456789ab…deadbeef.png"
    )
    assert render._short("data/a.png") == "data/a.png"


def test_fragments_escape_their_input() -> None:
    state = CardState.submitting(HOSTILE, HOSTILE, 0.0)
    for fragment in (
        render.headline_html(HOSTILE, HOSTILE),
        render.badge_html(HOSTILE),
        render.card_body_html(state.failed(HOSTILE, 1.0)),
        render.card_status_html(state.waiting(WaitInfo(HOSTILE))),
        render.card_prompt_html(HOSTILE),
        render.card_html(state.failed(HOSTILE, 1.0), 2.0),
    ):
        assert HOSTILE not in fragment and "&lt;img src=x onerror=alert(1)&gt;" in fragment


def running(**changes: object) -> Task:
    return Task(
        id="local-0123456789abcdef",
        provider="fake",
        model="image",
        status=Status.RUNNING,
        params={"prompt": "p", "seed": 3},
        created_at=utcnow(),
    ).model_copy(update=changes)


def test_logs_keep_only_the_tail_and_start_folded() -> None:
    logs = tuple(f"line {i}" for i in range(render.MAX_LOG_LINES + 5))
    state = CardState.submitting("m", None, 0.0).snapshot(running(logs=logs), 1)
    body = render.card_body_html(state)
    assert "5 earlier lines" in body and "line 4\n" not in body and "line 204" in body
    assert "<details class=\"genwidgets-logs\"" in body and "<details open" not in body


def test_status_lines() -> None:
    state = CardState.submitting("m", None, 0.0)
    assert render.progress_text(state) == "submitting…"
    queued = state.snapshot(running(status=Status.QUEUED, queue_position=3), 1.0)
    assert render.progress_text(queued) == "queue position 3"
    assert render.progress_text(state.snapshot(running(progress=0.5), 1.0)) == "50 %"
    assert render.progress_text(state.snapshot(running(), 1.0)) == "running"
    assert render.progress_text(state.snapshot(running(status=Status.SUCCEEDED), 1.0)) == ""


# ---------------------------------------------------------------------------------- previews
def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_small_image_is_embedded_as_it_is_at_its_natural_size(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 256, 128))
    (preview,) = preview_module.prepare_previews([Output(kind="image", path=path)])
    assert preview.data == path.read_bytes() and preview.preview is None
    assert (preview.width, preview.height) == (256, 128)
    html = media_html(preview)
    assert 'width="256"' in html and "max-width:100%" in html and "full size" not in html


def test_a_wide_image_is_shown_512_wide_with_full_size_one_click_away(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 1024, 512))
    (preview,) = preview_module.prepare_previews([Output(kind="image", path=path)])
    assert preview.data == path.read_bytes() and preview.preview is not None
    assert Image.open(io.BytesIO(preview.preview)).size == (512, 256)
    html = media_html(preview)
    assert 'width="512"' in html and "<summary>full size (1024 × 512)</summary>" in html
    assert base64.b64encode(preview.data).decode() in html


def test_an_oversized_image_gets_a_reduced_copy_and_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 256, 256))
    monkeypatch.setattr(preview_module, "MAX_IMAGE_EMBED", 1000)
    (preview,) = preview_module.prepare_previews([Output(kind="image", path=path)])
    assert preview.data is None and preview.preview is not None
    assert "too large to embed" in (preview.note or "") and "reduced copy" in (preview.note or "")
    assert str(tmp_path) not in (preview.note or "")


def test_video_plays_inline_up_to_its_limit_else_its_first_frame(tmp_path: Path) -> None:
    data = render_video("waves", 1, seconds=0.5, fps=6, width=64, height=48)
    path = write(tmp_path, "v.mp4", data)
    (inline,) = preview_module.prepare_previews([Output(kind="video", path=path)])
    assert inline.data == data and (inline.width, inline.height) == (64, 48)
    html = media_html(inline)
    assert "<video " in html and "controls" in html and 'poster="data:image/' in html
    assert "autoplay" not in html and "loop" not in html and 'width="64"' in html
    outputs = [Output(kind="video", path=path)]
    (large,) = preview_module.prepare_previews(outputs, limit=len(data) - 1)
    assert large.data is None and large.preview is not None
    assert "first frame" in (large.note or "")
    html = media_html(large)
    assert "<video" not in html and 'class="genwidgets-poster"' in html


def test_outputs_share_the_embedding_budget(tmp_path: Path) -> None:
    first = write(tmp_path, "a.png", render_image("a", 1, 64, 64))
    second = write(tmp_path, "b.png", render_image("b", 2, 64, 64))
    limit = first.stat().st_size + 10
    previews = preview_module.prepare_previews(
        [Output(kind="image", path=first), Output(kind="image", path=second)], limit=limit
    )
    assert previews[0].data is not None and previews[1].data is None


def test_audio_is_embedded_only_when_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = render_audio("hello", 1, seconds=0.3, speech=False)
    path = write(tmp_path, "s.wav", data)
    (small,) = preview_module.prepare_previews([Output(kind="audio", path=path)])
    assert small.mime == "audio/wav" and small.data == data
    assert '<audio class="genwidgets-audio" controls' in media_html(small)
    monkeypatch.setattr(preview_module, "MAX_AUDIO_EMBED", len(data) - 1)
    (large,) = preview_module.prepare_previews([Output(kind="audio", path=path)])
    assert large.data is None and "<audio" not in media_html(large)
    assert "too large" in media_html(large)


def test_the_bytes_decide_the_kind_and_missing_files_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "weird.bin", render_image("a", 1, 32, 32))
    (preview,) = preview_module.prepare_previews([Output(kind="video", path=path)])
    assert preview.kind == "image" and preview.mime == "image/png"
    (gone,) = preview_module.prepare_previews([Output(kind="image", path=tmp_path / "no.png")])
    assert gone.data is None and "missing" in (gone.note or "")
    (text,) = preview_module.prepare_previews([Output(kind="text", text=HOSTILE)])
    assert text.text == HOSTILE
    assert HOSTILE not in media_html(text)


# ---------------------------------------------------------------------------------- the card
def finished(path: Path) -> Task:
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


def test_the_saved_card(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", render_image("rose", 1, 300, 200))
    task = finished(path)
    previews = preview_module.prepare_previews(task.outputs)
    state = CardState.submitting("fake:image", None, 100.0).snapshot(task, 112.0)
    state = state.failed(HOSTILE, 112.5).shown(task, previews)
    html_text = render.card_html(
        state, 200.0, media=join_media(previews), cache_root=tmp_path
    )
    for raw in (HOSTILE, "<i>oil</i>", "task-<1>"):
        assert raw not in html_text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_text
    assert "<script" not in html_text.lower()
    assert not re.search(r"<[^>]*onerror", html_text)  # no tag carries an event handler
    assert 'data-state="succeeded"' in html_text and "fake:image" in html_text
    assert "12 s" in html_text  # the card's own monotonic time, frozen at the end
    assert "[genwidgets cache]/a.png" in html_text and str(tmp_path) not in html_text
    assert "queued 5.0 s" in html_text and "ran 15 s" in html_text and "total 20 s" in html_text
    assert "image · 300 × 200" in html_text
    (uri,) = re.findall(r'src="data:image/png;base64,([^"]+)" width="300"', html_text)
    assert base64.b64decode(uri) == path.read_bytes()
    assert '<details class="genwidgets-details"' in html_text and "live updates" not in html_text


def test_a_card_saved_while_running_says_how_to_resume() -> None:
    state = CardState.submitting("fake:image", "p", 0.0).snapshot(running(), 1.0)
    html_text = render.card_html(state, 5.0)
    assert "live updates need a running kernel" in html_text
    assert "genwidgets.resume()" in html_text and "local-0123456789abcdef" in html_text
    text = render.summary_text(state, 5.0)
    assert "local-0123456789abcdef" in text and "genwidgets.resume()" in text


def test_bundle_and_summary() -> None:
    bundle = render.fallback_bundle("<div></div>", "plain", "abc")
    assert bundle[render.WIDGET_VIEW_MIME] == {
        "version_major": 2,
        "version_minor": 0,
        "model_id": "abc",
    }
    assert bundle["text/html"] == "<div></div>" and bundle["text/plain"] == "plain"
    assert render.WIDGET_VIEW_MIME not in render.fallback_bundle("", "", None)
    state = CardState.submitting("fake:image", "p", 0.0).failed("boom", 3.0)
    assert render.summary_text(state, 9.0) == "[error] fake:image (3.0 s): 'p'\nerror: boom"
    assert ".retry()" in render.card_html(state, 9.0)  # the static card has no Retry button
