"""The caption of the local demo image: wrapped within the image, never over the demo mark."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from genwidgets._media import caption_lines, render_image


def fits10(line: str) -> bool:
    return len(line) <= 10


def test_caption_lines_fold_wrap_cut_and_ellipsize() -> None:
    assert caption_lines("a red rose", fits10) == ["a red rose"]
    assert caption_lines("a quiet\nharbour", fits10) == ["a quiet", "harbour"]
    assert caption_lines("a quiet harbour at night,\nlanterns", fits10) == ["a quiet", "harbour…"]
    assert caption_lines("abcdefghijklmnopqrstuvwxyz", fits10) == ["abcdefghij", "klmnopqrs…"]
    assert caption_lines("  \n ", fits10) == []
    lines = caption_lines("word " * 50, fits10, max_lines=3)
    assert len(lines) == 3 and all(fits10(line) for line in lines) and lines[-1].endswith("…")


def pixels(prompt: str, size: int = 256) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_image(prompt, 8, size, size))).convert("RGB"))


@pytest.mark.parametrize(
    ("prompt", "lines"),
    [
        ("a quiet harbour at night,\nlanterns reflected in the water", 2),  # a %%gen body
        ("one\ntwo\nthree\nfour\nfive", 1),
        ("a very long prompt about a lighthouse in a storm " * 6, 2),
    ],
)
def test_the_prompt_never_overprints_the_demo_mark(prompt: str, lines: int) -> None:
    image = pixels(prompt)
    mark_band = image[-13:]  # the mark is drawn in grey (200): white there is caption text
    assert mark_band.max() <= 200
    bar = 16 + 12 * lines
    assert (image[-bar:, -4:] == 0).all()  # the bar holds every line, clear of the right edge
    assert not (image[-bar - 4 : -bar, -4:] == 0).all()  # and no more
    assert (image[-bar:-14] >= 240).all(axis=2).sum() > 20  # the caption is drawn, in white


def test_a_short_prompt_keeps_one_caption_line() -> None:
    image = pixels("a red rose")
    assert (image[-28:, -4:] == 0).all()  # the bar is 28 px high, as before
    assert not (image[-40:-29, -4:] == 0).all()  # above it, the picture
