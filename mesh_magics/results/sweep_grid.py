"""How an `ImageSweep` shows: one HTML table, a row per prompt and a column per
combination of the swept values, with row and column headers (a table's sweep: a row per
run, headed by its label and prompt). Each cell holds its run's
images as data-URI tiles (JPEG, PNG when transparent) at twice a 256 px display size,
each image once, as display.py does for a grid; a failed run shows its short error in
its place. So a saved notebook carries each image once, at tile size.

A large sweep (more than `GRID_TILES` images) is paged instead: `<details>` sections of
`PAGE_RUNS` runs each, the first open, every run in them a small thumbnail captioned with
its label (a failed run: its short error). No script: a saved notebook, nbconvert's HTML
and GitHub show the same pages. The thumbnails shrink as the sweep grows (`thumb_px`: the
grid holds about `GRID_PIXELS` pixels, 80 px a side for 1,000 images, never under
`THUMB_MIN_PX`), so a saved 1,000-image sweep of noise, the worst case for JPEG, is about
3.9 MB (bench/, row 14) and shows every run. Thumbnails, not pages left empty: what a
notebook is for is seeing the runs; the images at full size are in the store, and
`save()` and `report()` write them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..redact import one_line
from ..wording import plural
from .display import TILE_DENSITY, fit
from .run_labels import label_of, short_error

if TYPE_CHECKING:
    from .image_sweep import ImageSweep, SweepRun
    from .result import ImageResult

TILE_CSS_PX = 256  # the box a sweep tile is shown in (display.py's grid uses 320)
GRID_TILES = 48  # a sweep with more images than this is shown as pages of thumbnails
PAGE_RUNS = 100  # runs on one page of a large sweep
GRID_PIXELS = 6_400_000  # about what a large sweep's thumbnails hold, all pages together
THUMB_MAX_PX = 128
THUMB_MIN_PX = 48
TILES_PER_LINE = 2  # a run of n images wraps to this many tiles side by side
HEADER_CHARS = 120
ERROR_CHARS = 160  # a failed cell's text
FULL_CHARS = 2000  # a tooltip holds the rest of a long header or error


@dataclass
class GridLayout:
    """Where each run of a sweep stands in its grid: the rows (a prompt each; a table's
    sweep, a run each), the columns (a combination of swept values each: key -> header)
    and the runs of each (row, column) cell. The HTML grid and the picture both use it."""

    rows: list[str]
    columns: dict[str, str]
    cells: dict[tuple[str, str], list[SweepRun]]
    headed: bool  # whether the columns have headers (something was swept, not by row)

    def runs_at(self, row: str, column: str) -> list[SweepRun]:
        return self.cells.get((row, column), [])


def grid_layout(sweep: ImageSweep) -> GridLayout:
    # A table's sweep has a row per run, headed "row 2 · seed 3: the prompt".
    row_of = (lambda run: f"{run.label}: {run.prompt}") if sweep.by_row else _prompt
    prompts = list(dict.fromkeys(row_of(run) for run in sweep.runs))
    columns: dict[str, str] = {}  # a combination's key -> its header
    cells: dict[tuple[str, str], list[SweepRun]] = {}
    for run in sweep.runs:
        combo = "" if sweep.by_row else _combo(run, sweep.swept)
        columns.setdefault(combo, run.label or label_of(run.params, sweep.swept))
        cells.setdefault((row_of(run), combo), []).append(run)
    return GridLayout(prompts, columns, cells, bool(sweep.swept) and not sweep.by_row)


def grid_html(sweep: ImageSweep) -> str:
    """The sweep as HTML: the labelled grid, or pages of thumbnails for a large sweep."""
    if tile_count(sweep) > GRID_TILES:
        return paged_html(sweep)
    _make_tiles(sweep, _tile_px)
    layout = grid_layout(sweep)
    th = "text-align:left;vertical-align:top;padding:4px 8px"
    head = ""
    if layout.headed:
        heads = "".join(
            f'<th scope="col" style="{th}">{html.escape(one_line(text, HEADER_CHARS))}</th>'
            for text in layout.columns.values()
        )
        head = f'<thead><tr><th style="{th}"></th>{heads}</tr></thead>'
    rows = []
    for prompt in layout.rows:
        shown = one_line(prompt, HEADER_CHARS)
        title = _title(prompt, shown)
        style = f"{th};min-width:120px;max-width:200px;font-weight:normal"
        row = [f'<th scope="row" style="{style}"{title}>{html.escape(shown)}</th>']
        for combo in layout.columns:
            here = layout.runs_at(prompt, combo)
            row.append(f'<td style="{th}">{"".join(_cell_html(r) for r in here)}</td>')
        rows.append(f"<tr>{''.join(row)}</tr>")
    return (
        '<div class="mesh-magics-sweep" style="overflow-x:auto">'
        '<table style="border-collapse:collapse;margin:0;table-layout:auto">'
        f"{head}<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _prompt(run: SweepRun) -> str:
    return run.prompt


def _combo(run: SweepRun, swept: list[str]) -> str:
    return repr([run.params.get(name) for name in swept])


def _title(full: str, shown: str) -> str:
    text = one_line(full, FULL_CHARS)
    return f' title="{html.escape(text)}"' if text != shown else ""


def _cell_html(run: SweepRun) -> str:
    """The run's images (an incomplete run's too: they were billed), or its error, or
    its status while it runs."""
    status = run.status
    parts = [_tiles_html(run, run.result)] if run.result is not None else []
    if run.error is not None:
        text = short_error(run.error, FULL_CHARS)
        shown = one_line(text, ERROR_CHARS)
        parts.append(
            f'<div style="max-width:{TILE_CSS_PX}px;color:#c62828;font-size:0.85em;'
            f'white-space:normal"{_title(text, shown)}>✗ {html.escape(shown)}</div>'
        )
    return "".join(parts) or f'<div style="opacity:0.7">{html.escape(status)}</div>'


def _tile_px(result: ImageResult) -> int:
    px = TILE_CSS_PX * TILE_DENSITY
    return min(px, result.preview_max_px) if result.preview_max_px > 0 else px


def _make_tiles(sweep: ImageSweep, px_of: Callable[[ImageResult], int]) -> None:
    """Every tile the grid shows, made side by side (one result's images at a time would
    leave the other core idle: most runs have one image). A result keeps its tiles; one
    whose images rest in the store keeps only those smaller than its images."""
    from .previews import preview_pool

    wanted = [
        (result, index)
        for result in (run.result for run in sweep.runs if run.result is not None)
        for index in range(len(result))
    ]
    if len(wanted) > 1:  # each task fills its own (result, index) entry: no two share one
        list(preview_pool().map(lambda job: job[0].preview(job[1], px_of(job[0])), wanted))


# -- a large sweep: pages of thumbnails ---------------------------------------------------


def thumb_px(images: int) -> int:
    """The long side of a large sweep's thumbnails: about `GRID_PIXELS` for the whole
    grid, between `THUMB_MIN_PX` and `THUMB_MAX_PX` each."""
    side = int(math.sqrt(GRID_PIXELS / max(1, images)))
    return max(THUMB_MIN_PX, min(THUMB_MAX_PX, side))


def paged_html(sweep: ImageSweep) -> str:
    """The runs in `<details>` pages of `PAGE_RUNS`, the first open; each run a captioned
    thumbnail (each of its images one), or its error, or its status."""
    px = thumb_px(tile_count(sweep))
    _make_tiles(sweep, lambda result: _capped(px, result))
    runs = sweep.runs
    pages = []
    for first in range(0, len(runs), PAGE_RUNS):
        page = runs[first : first + PAGE_RUNS]
        said = f"runs {first + 1:,}–{first + len(page):,} of {len(runs):,}"
        failed = sum(run.status in ("failed", "cancelled") for run in page)
        said += f" · {plural(failed, 'run')} without images" if failed else ""
        groups: dict[str, list[str]] = {}
        for run in page:
            head = f"{run.label}: {run.prompt}" if sweep.by_row else run.prompt
            groups.setdefault("" if sweep.by_row else head, []).append(_thumb_html(run, px))
        body = "".join(
            (f'<div style="margin:6px 0 2px;font-weight:bold"{_title(head, _short(head))}>'
             f"{html.escape(_short(head))}</div>" if head else "")
            + f'<div style="display:flex;flex-wrap:wrap;gap:4px">{"".join(figures)}</div>'
            for head, figures in groups.items()
        )  # fmt: skip
        opened = " open" if first == 0 else ""
        pages.append(
            f'<details{opened}><summary style="cursor:pointer">{html.escape(said)}</summary>'
            f"{body}</details>"
        )
    return f'<div class="mesh-magics-sweep mesh-magics-pages">{"".join(pages)}</div>'


def _thumb_html(run: SweepRun, px: int) -> str:
    """One run as a small figure: its images' thumbnails (or its error, or its status),
    captioned with its label; the prompt and label in its tooltip."""
    status = run.status
    caption = run.label or one_line(run.prompt, 40)
    inner = []
    result = run.result
    if result is not None:
        size = _capped(px, result)
        for index, revised in enumerate(result.revised_prompts):
            tile = result.preview(index, size)
            width, height = fit(tile.width, tile.height, px)
            alt = one_line(revised or f"{run.prompt} · {run.label} · {index + 1}", 300)
            inner.append(
                f'<img src="{tile.data_uri()}" width="{width}" height="{height}" '
                f'alt="{html.escape(alt)}" loading="lazy">'
            )
    if run.error is not None:
        text = short_error(run.error, FULL_CHARS)
        inner.append(
            f'<div style="width:{px}px;min-height:{px // 2}px;color:#c62828;font-size:0.7em;'
            f'overflow:hidden;white-space:normal">✗ {html.escape(one_line(text, 60))}</div>'
        )
    if not inner:
        inner.append(f'<div style="width:{px}px;opacity:0.7;font-size:0.7em">{status}</div>')
    tip = one_line(f"{run.prompt} · {run.label} · {status}", FULL_CHARS)
    return (
        f'<figure style="margin:0;max-width:{max(px, len(inner) * (px + 2))}px" '
        f'title="{html.escape(tip)}">{"".join(inner)}'
        f'<figcaption style="font-size:0.7em;opacity:0.75;overflow:hidden;'
        f'white-space:nowrap;max-width:{px}px">{html.escape(one_line(caption, 40))}'
        "</figcaption></figure>"
    )


def _capped(px: int, result: ImageResult) -> int:
    return min(px, result.preview_max_px) if result.preview_max_px > 0 else px


def tile_count(sweep: ImageSweep) -> int:
    """The tiles its grid shows: every image, and a place for each run without one."""
    return sum(len(run.result) if run.result is not None else 1 for run in sweep.runs)


def _short(text: str) -> str:
    return one_line(text, HEADER_CHARS)


def _tiles_html(run: SweepRun, result: ImageResult) -> str:
    px = _tile_px(result)
    tiles = []
    for index, revised in enumerate(result.revised_prompts):
        tile = result.preview(index, px)
        width, height = fit(tile.width, tile.height, TILE_CSS_PX)
        alt = one_line(revised or f"{run.prompt} · {run.label} · {index + 1}", 300)
        tiles.append(
            f'<img src="{tile.data_uri()}" width="{width}" height="{height}" '
            f'alt="{html.escape(alt)}" title="{html.escape(alt)}" '
            'style="max-width:100%;height:auto">'
        )
    across = max(1, min(len(result), TILES_PER_LINE))  # a set width: else a table cell's
    width = across * TILE_CSS_PX + (across - 1) * 4  # narrowest fit wraps every tile
    note = f"{plural(len(result), 'image')} · {result.elapsed:.1f} s" if len(result) != 1 else ""
    note = note or f"{result.elapsed:.1f} s"
    return (
        f'<div style="display:flex;flex-wrap:wrap;gap:4px;width:{width}px">'
        f"{''.join(tiles)}</div>"
        f'<div style="font-size:0.75em;opacity:0.7">{html.escape(note)}</div>'
    )
