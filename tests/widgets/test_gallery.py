"""Gallery and explore(): the product of models x prompts x seeds, Cancel all, closing, waiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ipywidgets.widgets.widget import _instances
from test_card import FakeClient, tree

from genwidgets import InvalidParams, Status
from genwidgets._media import render_image
from genwidgets.widgets import Gallery, StatusCard, explore


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "i.png"
    path.write_bytes(render_image("rose", 1, 32, 32))
    return path


async def test_explore_submits_the_product_and_waits(image: Path) -> None:
    client = FakeClient((("image", image),))
    gallery = explore(
        ["fake:image", "fake:free"], ["a rose", "a car"], seeds=[1, 2, 3], client=client, steps=4
    )
    assert isinstance(gallery, Gallery) and len(gallery.cards) == 12
    assert gallery.columns == 3  # one row per model x prompt
    assert all(card.state == "submitting" for card in gallery.cards)
    tasks = await gallery.wait(timeout=5)
    assert len(tasks) == 12 and all(t.status is Status.SUCCEEDED for t in tasks)
    combos = sorted(
        (call[1], call[2]["prompt"], call[2]["seed"]) for call in client.names("submit")
    )
    expected = sorted(
        (m, p, s)
        for m in ("fake:image", "fake:free")
        for p in ("a rose", "a car")
        for s in (1, 2, 3)
    )
    assert combos == expected
    assert all(call[2]["steps"] == 4 for call in client.names("submit"))
    assert gallery.counts() == {"succeeded": 12}
    assert "12 tasks" in gallery._summary.value and "12 succeeded" in gallery._summary.value
    assert gallery._grid.children == gallery.cards
    gallery.close()


def test_one_invalid_request_sends_nothing() -> None:
    client = FakeClient()
    with pytest.raises(InvalidParams):
        explore("fake:image", ["a rose", ""], client=client)
    assert client.names("submit") == []


def test_explore_needs_something_to_do() -> None:
    with pytest.raises(ValueError, match="at least one"):
        explore([], ["a"], client=FakeClient())


async def test_cancel_all_cancels_every_live_task() -> None:
    client = FakeClient(hold=True)
    gallery = explore("fake:image", ["a", "b", "c"], client=client)
    assert gallery._cancel_all_button.disabled is False  # submitting cards count as live
    while not all(card.state == "running" for card in gallery.cards):
        await asyncio.sleep(0.005)
    gallery._cancel_all_button.click()
    await gallery.wait(timeout=5)
    assert sorted(call[1] for call in client.names("cancel")) == ["task-1", "task-2", "task-3"]
    assert gallery.counts() == {"cancelled": 3}
    assert gallery._cancel_all_button.disabled is True
    gallery.close()


async def test_cancel_all_reaches_cards_still_submitting() -> None:
    client = FakeClient(hold=True)
    gallery = explore("fake:image", ["a", "b"], client=client)
    gallery.cancel_all()  # before any submit has returned
    await gallery.wait(timeout=5)
    assert len(client.names("cancel")) == 2
    assert gallery.counts() == {"cancelled": 2}
    gallery.close()


async def test_cancel_all_skips_providers_that_cannot_cancel() -> None:
    client = FakeClient(hold=True, cancellable=False)
    gallery = explore("fake:image", ["a", "b"], client=client)
    while not all(card.state == "running" for card in gallery.cards):
        await asyncio.sleep(0.005)
    assert gallery.cancel_all() == []
    assert client.names("cancel") == [] and gallery._cancel_all_button.disabled is True
    gallery.close()


async def test_cleared_cards_are_closed(image: Path) -> None:
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b"], seeds=[1, 2], client=client)
    await gallery.wait(timeout=5)
    cards = gallery.cards
    ids = [w.model_id for card in cards for w in tree(card)]
    assert ids and all(model_id in _instances for model_id in ids)
    gallery.clear()
    assert gallery.cards == () and gallery._grid.children == ()
    assert not [model_id for model_id in ids if model_id in _instances]
    assert "0 tasks" in gallery._summary.value
    gallery.close()


async def test_remove_closes_one_card(image: Path) -> None:
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b"], client=client)
    await gallery.wait(timeout=5)
    first, second = gallery.cards
    gallery.remove(first)
    assert gallery.cards == (second,) and first.comm is None and second.comm is not None
    gallery.close()
    assert second.comm is None and gallery.comm is None


async def test_header_counts_follow_the_cards() -> None:
    client = FakeClient(hold=True)
    cards = [StatusCard.submit(client, "fake:image", prompt=p) for p in ("a", "b")]
    gallery = Gallery(cards, client=client, columns=2)
    while not all(card.state == "running" for card in cards):
        await asyncio.sleep(0.005)
    assert gallery.counts() == {"running": 2}
    assert "2 running" in gallery._summary.value
    cards[0].cancel()
    await cards[0].wait()
    assert gallery.counts() == {"running": 1, "cancelled": 1}
    assert "1 cancelled" in gallery._summary.value
    gallery.cancel_all()
    await gallery.wait(timeout=5)
    gallery.close()


async def test_static_fallback_has_every_card(image: Path) -> None:
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["<b>a</b>", "b"], client=client, columns=2)
    await gallery.wait(timeout=5)
    bundle = gallery.mimebundle()
    html_text = bundle["text/html"]
    assert html_text.count("data:image/") == 2
    assert "&lt;b&gt;a&lt;/b&gt;" in html_text and "<b>a</b>" not in html_text
    assert "2 succeeded" in html_text
    assert "repeat(auto-fill,minmax(240px,1fr))" in html_text  # as many columns as fit...
    assert "minmax(max(240px,calc((100% - 8px) / 2)),1fr)" in html_text  # ...up to columns=2
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == gallery.model_id
    gallery.close()


async def test_closing_a_shown_gallery_leaves_its_static_snapshot(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    from genwidgets.widgets import _card

    published: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(_card, "_shell_active", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda o, **kw: published.append(("show", o)))
    monkeypatch.setattr(
        IPython.display, "update_display", lambda o, **kw: published.append(("update", o))
    )
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b", "c"], client=client)
    gallery.display()
    await gallery.wait(timeout=5)
    kind, final = published[-1]
    assert kind == "update" and "3 succeeded" in str(final["text/html"])
    gallery.close()
    kind, closed = published[-1]
    assert kind == "update" and "application/vnd.jupyter.widget-view+json" not in closed
    assert str(closed["text/html"]).count("data:image/") == 3


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, object]]]:
    """What the gallery sends to the notebook, as if shown in a kernel."""
    import IPython.display

    from genwidgets.widgets import _card

    sent: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(_card, "_shell_active", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda o, **kw: sent.append(("show", o)))
    monkeypatch.setattr(
        IPython.display, "update_display", lambda o, **kw: sent.append(("update", o))
    )
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    return sent


VIEW = "application/vnd.jupyter.widget-view+json"


async def test_a_finished_shown_gallery_freezes_into_its_snapshot(
    image: Path, published: list[tuple[str, dict[str, object]]]
) -> None:
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b", "c"], client=client)
    gallery.display()
    assert VIEW in published[0][1]  # live while the cards run
    tasks = await gallery.wait(timeout=5)
    kind, final = published[-1]
    assert kind == "update" and VIEW not in final  # a saved notebook shows the static grid
    assert "3 succeeded" in str(final["text/html"]) and "genwidgets-static-grid" in str(
        final["text/html"]
    )
    assert gallery.comm is None and all(card.comm is None for card in gallery.cards)
    assert len(tasks) == 3 and gallery.tasks == tasks and gallery.counts() == {"succeeded": 3}
    with pytest.raises(RuntimeError, match="froze"):
        gallery.add(StatusCard.submit(client, "fake:image", prompt="d"))
    gallery.close()


async def test_a_gallery_that_settled_before_it_was_shown_freezes_when_shown(
    image: Path, published: list[tuple[str, dict[str, object]]]
) -> None:
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b"], client=client)
    await gallery.wait(timeout=5)  # e.g. replayed from the journal
    assert gallery.comm is not None  # never shown: stays live for a later display
    gallery.display()
    assert VIEW not in published[-1][1] and gallery.comm is None
    gallery.close()


async def test_under_voila_a_finished_gallery_stays_live(
    image: Path, published: list[tuple[str, dict[str, object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOILA_KERNEL_ID", "k")  # Voilà never applies update_display
    client = FakeClient((("image", image),))
    gallery = explore("fake:image", ["a", "b"], client=client)
    gallery.display()
    await gallery.wait(timeout=5)
    assert VIEW in published[-1][1] and gallery.comm is not None
    gallery.close()
