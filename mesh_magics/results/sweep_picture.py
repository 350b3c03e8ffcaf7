"""A sweep as one picture (`ImageSweep.grid_image()`, `grid.png` beside a saved sweep):
the grid the notebook shows, drawn with Pillow. A row per prompt and a column per
combination of the swept values (sweep_grid.py's layout), their labels on the left and
on top in Pillow's default font (no font is fetched), and each run's images in a tile of
at most `tile` pixels. A failed or cancelled run is a tile marked in red, with its short
error; a run still going is a grey tile with its status.

A large sweep (more images than the notebook's grid shows, `sweep_grid.GRID_TILES`) is a
contact sheet instead, as the notebook pages it: its runs in order, row after row of a
square-ish sheet, each tile captioned with its label, the tiles shrunk (to 32 px at
least) so that the sheet holds at most `SHEET_PIXELS`: a 1,000-run sweep is a picture of
a few megapixels, not a strip 250,000 pixels wide."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from ..redact import one_line
from .run_labels import short_error
from .sweep_grid import GRID_TILES, grid_layout, tile_count

if TYPE_CHECKING:
    from .image_sweep import ImageSweep, SweepRun

TILE_PX = 256
FAILED_FILL = (253, 232, 232)  # the marked tile of a failed or cancelled run
FAILED_MARK = (198, 40, 40)  # its border and text: the red of the HTML grid's errors
PENDING_FILL = (238, 238, 238)
BACKGROUND = (255, 255, 255)
TEXT = (33, 33, 33)
GAP = 6
FONT_PX = 13
LABEL_LINES = 4  # a header longer than this many lines ends in "..."
SHEET_PIXELS = 8_000_000  # a large sweep's contact sheet: at most ~24 MB of RGB


def grid_image(sweep: ImageSweep, *, tile: int = TILE_PX, with_prompt: bool = True) -> Image.Image:
    """The sweep's grid as an RGB image; prompts are labelled `prompt 1`, `prompt 2`...
    when `with_prompt` is false."""
    if tile < 32:
        raise ValueError(f"tile must be at least 32 pixels, not {tile}")
    font = ImageFont.load_default(FONT_PX)
    if tile_count(sweep) > GRID_TILES:
        return _sheet(sweep, _fitted_tile(sweep, tile), with_prompt, font)
    layout = grid_layout(sweep)
    tile = _fitted_tile(sweep, tile)
    line_px = FONT_PX + 4
    label_w = max(120, min(2 * tile, 200)) if layout.rows else 0
    head_h = (LABEL_LINES * line_px + GAP) if layout.headed else 0
    columns = list(layout.columns)
    width = GAP + label_w + len(columns) * (tile + GAP)
    height = GAP + head_h + len(layout.rows) * (tile + GAP)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, combo in enumerate(columns):
        if layout.headed:
            x = GAP + label_w + c * (tile + GAP)
            _text(draw, (x, GAP), layout.columns[combo], tile, LABEL_LINES, font, TEXT)
    for r, row in enumerate(layout.rows):
        y = GAP + head_h + r * (tile + GAP)
        shown = row if with_prompt else _hidden_label(sweep, row, r)
        _text(draw, (GAP, y), shown, label_w - GAP, tile // line_px, font, TEXT)
        for c, combo in enumerate(columns):
            x = GAP + label_w + c * (tile + GAP)
            runs = layout.runs_at(row, combo)
            if runs:
                _draw_cell(canvas, draw, runs, (x, y), tile, font)
    return canvas


def _fitted_tile(sweep: ImageSweep, tile: int) -> int:
    """`tile`, or less when every image is smaller: small images are not blown up, and
    the labels keep room (at least 128 px)."""
    sides = [
        max(image.width, image.height)
        for result in (run.result for run in sweep.runs if run.result is not None)
        for image in result._images
    ]
    return min(tile, max(128, *sides)) if sides else tile


def _sheet(
    sweep: ImageSweep,
    tile: int,
    with_prompt: bool,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image:
    """A large sweep as a contact sheet: a tile a run, in order, captioned."""
    runs = sweep.runs
    across = math.ceil(math.sqrt(len(runs)))
    down = math.ceil(len(runs) / across)
    line_px = FONT_PX + 4
    while tile > 32 and (GAP + across * (tile + GAP)) * (GAP + down * (tile + line_px + GAP)) > (
        SHEET_PIXELS
    ):
        tile = max(32, tile * 3 // 4)
    width = GAP + across * (tile + GAP)
    height = GAP + down * (tile + line_px + GAP)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    prompts = list(dict.fromkeys(run.prompt for run in runs))
    for k, run in enumerate(runs):
        x = GAP + (k % across) * (tile + GAP)
        y = GAP + (k // across) * (tile + line_px + GAP)
        _draw_cell(canvas, draw, [run], (x, y), tile, font)
        caption = run.label
        if len(prompts) > 1 and not sweep.by_row:
            which = run.prompt if with_prompt else f"prompt {prompts.index(run.prompt) + 1}"
            caption = f"{which} · {caption}" if caption else which
        _text(draw, (x, y + tile + 1), caption or str(k + 1), tile, 1, font, TEXT)
    return canvas


def _hidden_label(sweep: ImageSweep, row: str, index: int) -> str:
    """A row's label without its prompt: a table's sweep keeps the run's own label."""
    if sweep.by_row:
        return row.partition(": ")[0]
    return f"prompt {index + 1}"


def _draw_cell(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    runs: list[SweepRun],
    at: tuple[int, int],
    tile: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """The images of the cell's runs in one tile, or the mark of a run without any."""
    images = [(run, i) for run in runs if run.result is not None for i in range(len(run.result))]
    ended = [run for run in runs if run.error is not None]
    x, y = at
    if ended and not images:
        _mark(draw, (x, y, x + tile - 1, y + tile - 1), ended[0], tile, font)
        return
    if not images:
        draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=PENDING_FILL)
        _text(draw, (x + 6, y + 6), runs[0].status, tile - 12, 2, font, TEXT)
        return
    across = math.ceil(math.sqrt(len(images)))
    box = (tile - (across - 1) * 2) // across
    for k, (run, index) in enumerate(images):
        assert run.result is not None
        thumb = _thumbnail(run, index, box)
        left = x + (k % across) * (box + 2) + (box - thumb.width) // 2
        top = y + (k // across) * (box + 2) + (box - thumb.height) // 2
        canvas.paste(thumb, (left, top))
    if ended:  # an incomplete run's images, then its error along the tile's foot
        strip = (x, y + tile - 3 * (FONT_PX + 4), x + tile - 1, y + tile - 1)
        _mark(draw, strip, ended[0], tile, font, lines=2)


def _thumbnail(run: SweepRun, index: int, box: int) -> Image.Image:
    assert run.result is not None
    preview = run.result.preview(index, box)  # a small JPEG or PNG, cached on the result
    with Image.open(io.BytesIO(preview.data)) as img:
        img.load()
        if max(img.size) > box:
            img.thumbnail((box, box))
        if img.mode in ("RGBA", "LA", "P"):
            flat = Image.new("RGB", img.size, BACKGROUND)  # transparency shows as white
            flat.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
            return flat
        return img.convert("RGB")


def _mark(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    run: SweepRun,
    tile: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    lines: int | None = None,
) -> None:
    """A failed or cancelled run's place: a red-bordered tile with what went wrong."""
    draw.rectangle(box, fill=FAILED_FILL, outline=FAILED_MARK, width=3)
    assert run.error is not None
    text = f"{run.status.upper()}: {short_error(run.error, 300)}"
    room = lines if lines is not None else (box[3] - box[1] - 12) // (FONT_PX + 4)
    _text(draw, (box[0] + 8, box[1] + 8), text, tile - 16, max(1, room), font, FAILED_MARK)


def _text(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    text: str,
    width: int,
    lines: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    fill: tuple[int, int, int],
) -> None:
    """`text` on one line per `lines`, wrapped at spaces (or anywhere) to `width` pixels;
    what does not fit ends in "..."."""
    wrapped = _wrap(one_line(text, 2000), width, font)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = _fit(wrapped[-1] + "...", width, font)
    x, y = at
    for k, line in enumerate(wrapped):
        draw.text((x, y + k * (FONT_PX + 4)), line, fill=fill, font=font)


def _wrap(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > width:  # a word longer than the line: cut it
            cut = max(1, len(_fit(word, width, font)))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _fit(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """The longest start of `text` (keeping a final "...") that fits in `width` pixels."""
    tail = "..." if text.endswith("...") else ""
    body = text[: -len(tail)] if tail else text
    while body and font.getlength(body + tail) > width:
        body = body[:-1]
    return body + tail


__all__ = ["TILE_PX", "grid_image"]
