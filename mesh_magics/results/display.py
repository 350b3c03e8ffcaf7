"""How an `ImageResult` shows in a notebook, and so what a saved notebook keeps of it.

A saved notebook carries each image once, at preview size: the bundle has exactly one
carrier of the pixels, and `text/plain` (a short repr) beside it.

One image: an ordinary `image/png` or `image/jpeg` output of at most `preview_max_px` on
the long side. Every renderer shows those: JupyterLab, Notebook 7, VS Code, nbconvert (HTML,
PDF, Markdown), GitHub. The revised prompt costs no image bytes: it is in `text/plain`
and in the output's metadata (`mesh_magics.revised_prompts`).

Several images: an HTML grid, one `<figure>` per image with its revised prompt as caption,
each tile a data-URI JPEG (PNG when transparent) at twice its displayed size (640 px for
a 320 px tile, sharp on HiDPI screens). No contact sheet beside it: that would be the same
pixels twice. The grid rather than one contact-sheet image because it keeps a caption and
alt text per image, reflows to the width of the output, and lets each image be saved
from the browser on its own. Who renders it:
- JupyterLab and Notebook 7, trusted or not: their HTML sanitizer checks URL schemes only
  on `href` and `cite`, so `data:` image sources survive, and it allows every inline style
  used here (checked against JupyterLab 4's sanitizer).
- VS Code: renders `text/html` outputs.
- nbconvert `--to html`: copies `text/html` as it is (tests/test_saved_notebook.py counts
  the `<img>` tags of the export).
- nbconvert to LaTeX/PDF, terminal IPython, and any viewer that drops HTML (GitHub's
  notebook viewer sanitizes HTML by rules not checked here): `text/plain`, which lists the
  images and their captions. That is the price of captions; a single image has no such gap.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..redact import one_line

if TYPE_CHECKING:
    from .result import ImageResult

TILE_CSS_PX = 320  # the box a grid tile is shown in
TILE_DENSITY = 2  # image pixels per CSS pixel: sharp on HiDPI screens, and no larger
CAPTION_CHARS = 200
FULL_CHARS = 4000  # a tooltip holds the rest of a long caption
PLAIN_CHARS = 160  # per revised prompt in text/plain: a repr stays a few short lines


def mimebundle(result: ImageResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """The display data and metadata of `result` (see the module docstring)."""
    data: dict[str, Any] = {"text/plain": plain_text(result)}
    metadata: dict[str, Any] = {}
    if len(result) == 1:
        preview = result.preview(0, result.preview_max_px)
        data[preview.mime] = preview.base64()
        metadata[preview.mime] = {"width": preview.width, "height": preview.height}
    elif len(result) > 1:
        data["text/html"] = grid_html(result)
    if any(result.revised_prompts):
        metadata["mesh_magics"] = {"revised_prompts": result.revised_prompts}
    return data, metadata


def tile_px(preview_max_px: int) -> int:
    """The long side of a grid tile's pixels; `preview_max_px` caps it, 0 does not lift it."""
    px = TILE_CSS_PX * TILE_DENSITY
    return min(px, preview_max_px) if preview_max_px > 0 else px


def plain_text(result: ImageResult) -> str:
    """The repr, then each revised prompt on a line of its own, flattened and shortened."""
    lines = [repr(result)]
    revised = result.revised_prompts
    if len(revised) == 1 and revised[0]:
        lines.append(f"revised prompt: {one_line(revised[0], PLAIN_CHARS)}")
    elif len(revised) > 1:
        lines += [
            f"{i}: {one_line(text, PLAIN_CHARS)}" for i, text in enumerate(revised, 1) if text
        ]
    return "\n".join(lines)


def grid_html(result: ImageResult) -> str:
    px = tile_px(result.preview_max_px)
    figures = []
    for index, ((width, height), revised, tile) in enumerate(
        zip(result.sizes, result.revised_prompts, result.previews(px), strict=True)
    ):
        shown_width, shown_height = fit(tile.width, tile.height, TILE_CSS_PX)
        caption = one_line(revised, CAPTION_CHARS) if revised else f"{index + 1}: {width}x{height}"
        full = one_line(revised, FULL_CHARS) if revised else caption
        title = f' title="{html.escape(full)}"' if full != caption else ""  # the cut rest
        figures.append(
            f'<figure style="margin:0;max-width:{shown_width}px"{title}>'
            f'<img src="{tile.data_uri()}" width="{shown_width}" height="{shown_height}" '
            f'alt="{html.escape(caption)}" style="max-width:100%;height:auto">'
            '<figcaption style="font-size:0.8em;opacity:0.75">'
            f"{html.escape(caption)}</figcaption></figure>"
        )
    return (
        '<div class="mesh-magics-grid" style="display:flex;flex-wrap:wrap;gap:8px;'
        f'align-items:flex-start">{"".join(figures)}</div>'
    )


def fit(width: int, height: int, box: int) -> tuple[int, int]:
    """`width` x `height` scaled down (never up) to fit a `box` x `box` square."""
    scale = min(1.0, box / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


__all__ = ["TILE_CSS_PX", "mimebundle", "plain_text", "tile_px"]
