"""The static (saved) form of a gallery or a form's cards: the cards' own static HTML in a CSS grid
that fits the output's width, in every renderer that keeps inline styles.

A table (what this replaced) sizes itself to its content: three cards with long paths made one
1,867 px wide in a 953 px output, behind a scrollbar. A grid with
`repeat(auto-fill, minmax(W, 1fr))` puts as many columns of at least W pixels as fit and wraps
the rest. JupyterLab's sanitizer (untrusted notebooks) keeps `display:grid`,
`grid-template-columns` with `repeat(auto-fill, ...)` and `gap`, but drops
`overflow-wrap:anywhere` (only `break-word` passes); a renderer that drops the grid shows the
cells one under the other, still within the width. Each cell is `min-width:0` with
`overflow-wrap:break-word`, so a long path wraps inside it instead of widening its column or
running into the next one, and clips (`overflow:hidden`) as a last resort.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CELL_MIN_PX", "static_grid_html"]

#: the narrowest column: a card's thumbnail, badge and model name fit without wrapping
CELL_MIN_PX = 240


def static_grid_html(
    cells: Sequence[str],
    *,
    header: str = "",
    footer: str = "",
    min_px: int | None = CELL_MIN_PX,
    max_columns: int | None = None,
) -> str:
    """`cells` (already escaped HTML) in a grid of columns at least `min_px` wide (one column when
    `min_px` is None), at most `max_columns` of them, with `header` above and `footer` below.

    The cap is a second `grid-template-columns` whose minimum is `max(min_px, a 1/max_columns
    share)`: a sanitizer that refuses `max()`/`calc()` drops that declaration only, and the first
    one (as many columns as fit) stays."""
    if min_px is None:
        columns = "grid-template-columns:minmax(0,1fr)"
    else:
        columns = f"grid-template-columns:repeat(auto-fill,minmax({min_px}px,1fr))"
        if max_columns is not None and max_columns >= 1:
            gaps = 8 * (max_columns - 1)
            share = f"calc((100% - {gaps}px) / {max_columns})"
            columns += (
                f";grid-template-columns:repeat(auto-fill,minmax(max({min_px}px,{share}),1fr))"
            )
    items = "".join(
        '<div class="genwidgets-static-cell" style="min-width:0;max-width:100%;'
        f'overflow-wrap:break-word;overflow:hidden">{cell}</div>'
        for cell in cells
    )
    head = f'<div style="margin:2px 0 6px 0">{header}</div>' if header else ""
    foot = ""
    if footer:
        foot = f'<div style="font-size:0.75em;color:#999;margin-top:4px">{footer}</div>'
    return (
        '<div class="genwidgets-static genwidgets-static-grid" '
        'style="font-family:sans-serif;max-width:100%;box-sizing:border-box">'
        f"{head}"
        '<div class="genwidgets-grid-body" style="display:grid;'
        f'{columns};gap:8px;align-items:start">{items}</div>'
        f"{foot}</div>"
    )

