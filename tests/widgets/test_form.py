"""SubmitForm: fields from `Param` specs, inline errors with nothing sent, count/seed expansion."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
from test_card import HOSTILE_ERROR, FakeClient

from genwidgets import InvalidParams
from genwidgets._media import render_image
from genwidgets.widgets import StatusCard, SubmitForm
from genwidgets.widgets._form import (
    UNSET,
    draw_seed,
    expand_requests,
    parse_extra,
    parse_seed,
)


def shown(form: SubmitForm) -> set[str]:
    return {cls for child in form.children for cls in child._dom_classes}


def test_fields_follow_the_param_types() -> None:
    form = SubmitForm(FakeClient(), model="fake:image")
    fields = form.fields
    # numbers are text fields: empty when unset (an IntText would show, and send, 0)
    assert isinstance(fields["steps"], widgets.Text) and fields["steps"].value == ""
    assert "genwidgets-number" in fields["steps"]._dom_classes
    assert isinstance(fields["guidance"], widgets.Text) and fields["guidance"].value == "2.5"
    assert isinstance(fields["style"], widgets.Dropdown)
    assert fields["style"].value is UNSET and [v for _, v in fields["style"].options[1:]] == [
        "photo",
        "sketch",
    ]
    assert isinstance(fields["safety"], widgets.Checkbox)
    assert isinstance(fields["negative"], widgets.Text)
    assert isinstance(fields["tools"], widgets.Text)
    assert isinstance(fields["length"], widgets.Text) and fields["length"].value == ""
    assert "prompt" not in fields and "seed" not in fields  # they have their own inputs
    assert fields["steps"].tooltip.startswith("denoising steps")
    assert "genwidgets-extra" not in shown(form)  # a closed schema takes no free parameters
    form.close()


def test_untouched_fields_send_only_defaults() -> None:
    form = SubmitForm(FakeClient(), model="fake:image", prompt="a rose")
    model, requests = form.requests()
    assert model == "fake:image"
    assert requests == [{"prompt": "a rose", "guidance": 2.5}]
    form.fields["steps"].value = "30"
    form.fields["style"].value = "sketch"
    form.fields["safety"].value = True
    form.fields["tools"].value = '[{"type": "web_search"}]'
    form.fields["negative"].value = "  blur  "
    _, requests = form.requests()
    assert requests == [
        {
            "prompt": "a rose",
            "guidance": 2.5,
            "steps": 30,
            "style": "sketch",
            "safety": True,
            "tools": [{"type": "web_search"}],
            "negative": "blur",
        }
    ]
    form.close()


def test_models_without_schema_take_key_value_rows() -> None:
    form = SubmitForm(FakeClient(), model="fake:free", prompt="x")
    assert form.fields == {}
    assert "genwidgets-extra" in shown(form)
    form._extra.value = "steps=4\n# a comment\n\nratio = 16:9\nflags=[1, 2]"
    _, requests = form.requests()
    assert requests == [{"prompt": "x", "steps": 4, "ratio": "16:9", "flags": [1, 2]}]
    form.close()


def test_switching_model_rebuilds_the_fields() -> None:
    form = SubmitForm(FakeClient(), model="fake:image")
    old = form.fields["steps"]
    form._model.value = "fake:free"
    assert form.fields == {} and old.comm is None  # the old field widgets are closed
    form._model.value = "fake:image"
    assert "steps" in form.fields
    form.close()


def test_parse_helpers() -> None:
    assert parse_extra("a=1\nb=text\nc=true") == {"a": 1, "b": "text", "c": True}
    for bad in ("novalue", "=3", "1x=2", "a=1\na=2"):
        with pytest.raises(InvalidParams):
            parse_extra(bad)
    assert parse_seed("  ") is None and parse_seed("42") == 42
    with pytest.raises(InvalidParams, match="whole number"):
        parse_seed("4.5")


def test_count_and_seed_expansion() -> None:
    assert expand_requests({"prompt": "p"}, 10, 3) == [
        {"prompt": "p", "seed": 10},
        {"prompt": "p", "seed": 11},
        {"prompt": "p", "seed": 12},
    ]
    assert expand_requests({"prompt": "p"}, None, 2) == [{"prompt": "p"}, {"prompt": "p"}]
    with pytest.raises(InvalidParams):
        expand_requests({}, None, 0)


@pytest.mark.parametrize(
    ("prompt", "extra", "seed", "message"),
    [
        ("", "", "", "non-empty prompt"),
        ("ok", "bad=1", "", "&lt;script&gt;"),
        ("ok", "not a pair", "", "expected key=value"),
        ("ok", "", "seven", "whole number"),
    ],
)
async def test_invalid_input_shows_an_inline_error_and_sends_nothing(
    prompt: str, extra: str, seed: str, message: str
) -> None:
    client = FakeClient()
    form = SubmitForm(client, model="fake:free", prompt=prompt)
    form._extra.value = extra
    form._seed.value = seed
    form._count.value = 3
    form._submit_button.click()
    await asyncio.sleep(0.02)
    assert client.names("submit") == []
    assert form.cards == () and form._cards.children == ()
    assert "genwidgets-form-error" in shown(form)
    assert message in form._error.value
    assert HOSTILE_ERROR not in form._error.value
    form.close()


async def test_valid_input_adds_a_card_per_task_below_the_form(tmp_path: Path) -> None:
    image = tmp_path / "i.png"
    image.write_bytes(render_image("rose", 1, 32, 32))
    client = FakeClient((("image", image),))
    form = SubmitForm(client, model="fake:free", prompt="a rose")
    form._extra.value = "bad=1"  # first an invalid try: the error shows
    assert form.submit() == []
    assert "genwidgets-form-error" in shown(form)
    form._extra.value = "steps=2"
    form._seed.value = "5"
    form._count.value = 3
    cards = form.submit()
    assert "genwidgets-form-error" not in shown(form)  # a valid submit clears the error
    assert len(cards) == 3 and all(isinstance(c, StatusCard) for c in cards)
    await asyncio.gather(*(card.wait() for card in cards))
    assert [call[2]["seed"] for call in client.names("submit")] == [5, 6, 7]
    validated = [call for call in client.names("validate") if call[2].get("steps") == 2]
    assert len(validated) == 3  # every request validated before any was sent
    assert form._cards.children[:3] == tuple(cards)
    assert form.children[-1] is form._cards
    assert all(card.state == "succeeded" for card in cards)
    form.clear()
    assert form.cards == () and all(card.comm is None for card in cards)
    form.close()


def test_numbers_are_empty_until_typed_and_checked_when_typed() -> None:
    form = SubmitForm(FakeClient(), model="fake:image", prompt="a rose")
    assert form.fields["steps"].value == "" and "1" in form.fields["steps"].placeholder
    form.fields["steps"].value = " 12 "
    form.fields["length"].value = "2.5"
    _, requests = form.requests()
    assert requests[0]["steps"] == 12 and requests[0]["length"] == 2.5
    for bad, message in (("twelve", "whole number"), ("1.5", "whole number")):
        form.fields["steps"].value = bad
        with pytest.raises(InvalidParams, match=message):
            form.requests()
    form.fields["steps"].value = ""
    form.fields["length"].value = "x"
    with pytest.raises(InvalidParams, match="length must be a number"):
        form.requests()
    form.close()


async def test_local_models_show_empty_numbers_and_speech_on() -> None:
    from genwidgets import AsyncClient

    client = AsyncClient(journal=False)
    image = SubmitForm(client, model="local:image")
    assert {name: image.fields[name].value for name in ("width", "height", "duration")} == {
        "width": "",
        "height": "",
        "duration": "",
    }
    assert "16" in image.fields["width"].placeholder  # the minimum, not a 0 that fails
    assert image.fields["width"].placeholder.endswith("(blank: 512)")
    image.close()
    audio = SubmitForm(client, model="local:audio", prompt="hello")
    assert audio.fields["speech"].value is True  # what local:audio does when it is not sent
    assert audio.fields["seconds"].value == ""
    # shown, not sent: the request (so its journal fingerprint) is what it always was
    assert audio.requests()[1] == [{"prompt": "hello"}]
    assert "speech" not in client.validate("local:audio", prompt="hello")
    audio.close()
    video = SubmitForm(client, model="local:video")
    assert all(video.fields[n].value == "" for n in ("width", "height", "seconds", "fps"))
    video.close()
    await client.aclose()


def test_draw_seed_stays_in_range() -> None:
    import random

    from genwidgets import Param

    rng = random.Random(1)
    seeds = {draw_seed(rng=rng) for _ in range(50)}
    assert len(seeds) == 50 and all(0 <= s < 1_000_000_000 for s in seeds)
    small = Param(int, minimum=5, maximum=9)
    assert all(5 <= draw_seed(small, 3, rng) <= 7 for _ in range(50))  # seed+2 <= 9


async def test_a_blank_seed_gets_a_fresh_seed_at_each_generate(tmp_path: Path) -> None:
    image = tmp_path / "i.png"
    image.write_bytes(render_image("rose", 1, 32, 32))
    client = FakeClient((("image", image),))
    form = SubmitForm(client, model="fake:free", prompt="a rose")
    assert form.requests()[1] == [{"prompt": "a rose"}]  # code asking gets no seed
    form._count.value = 2
    first = form.submit()
    second = form.submit()
    await asyncio.gather(*(card.wait() for card in first + second))
    seeds = [call[2]["seed"] for call in client.names("submit")]
    assert len(seeds) == 4 and seeds[1] == seeds[0] + 1 and seeds[3] == seeds[2] + 1
    assert seeds[0] != seeds[2]  # the second click explores, it does not repeat
    assert [card.task.params["seed"] for card in second + first] == [
        seeds[2],
        seeds[3],
        seeds[0],
        seeds[1],
    ]  # recorded in each request, so the card shows it
    assert f"last: {seeds[2]}" in form._seed.placeholder
    form._seed.value = "7"  # a typed seed repeats
    form._count.value = 1
    await asyncio.gather(*(card.wait() for card in form.submit() + form.submit()))
    assert [call[2]["seed"] for call in client.names("submit")][4:] == [7, 7]
    form.close()


VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What the form sends to the notebook, as if shown in a kernel: (display id, bundle)."""
    import IPython.display

    from genwidgets.widgets import _card

    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(_card, "_shell_active", lambda: True)
    monkeypatch.setattr(
        IPython.display, "display", lambda o, **kw: sent.append((kw["display_id"], o))
    )
    monkeypatch.setattr(
        IPython.display, "update_display", lambda o, **kw: sent.append((kw["display_id"], o))
    )
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    return sent


async def test_finished_cards_move_to_a_static_results_output(
    tmp_path: Path, published: list[tuple[str, dict[str, Any]]]
) -> None:
    image = tmp_path / "i.png"
    image.write_bytes(render_image("rose", 1, 32, 32))
    form = SubmitForm(FakeClient((("image", image),)), model="fake:free", prompt="a rose")
    form.display()
    (form_id, first), (results_id, empty) = published
    assert VIEW in first and VIEW not in empty and form_id != results_id
    form._count.value = 2
    cards = form.submit()
    await asyncio.gather(*(card.wait() for card in cards))
    await asyncio.sleep(0.01)  # the move runs just after the cards' own notification
    assert form._cards.children == () and set(form.cards) == set(cards)
    assert all(card.comm is None for card in cards)  # their widgets are closed
    results = [bundle for shown_id, bundle in published if shown_id == results_id][-1]
    assert VIEW not in results  # a saved notebook shows them without a kernel
    assert "2 finished" in results["text/html"] and results["text/html"].count("data:image/") == 2
    seeds = [card.task.params["seed"] for card in cards]  # drawn for the blank Seed, in sight
    assert all(f"seed <code>{seed}</code>" in results["text/html"] for seed in seeds)
    form.clear()
    results = [bundle for shown_id, bundle in published if shown_id == results_id][-1]
    assert "data:image/" not in results["text/html"] and form.cards == ()
    form.close()


async def test_under_voila_finished_cards_stay_in_the_form(
    tmp_path: Path, published: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOILA_KERNEL_ID", "k")
    image = tmp_path / "i.png"
    image.write_bytes(render_image("rose", 1, 32, 32))
    form = SubmitForm(FakeClient((("image", image),)), model="fake:free", prompt="a rose")
    form.display()
    assert len(published) == 1  # no results output: Voilà would never update it
    (card,) = form.submit()
    await card.wait()
    await asyncio.sleep(0.01)
    assert form._cards.children == (card,) and card.comm is not None
    form.close()
