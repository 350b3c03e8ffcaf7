"""Image edits (``POST /v1/images/edits``): the SDK's ``ImageEditParams``, checked and drawn.

The body is JSON: ``image`` (a data URL, bare base64, or ``{"url": ...}`` as the SDK's
``ImageRef`` dumps it), ``reference_images`` (up to ``MAX_REFERENCES`` of them), ``mask``
and an ``operation``. The result is deterministic and visibly comes from the first image:

- ``edit`` / ``inpaint``: a copy tinted by the prompt, with an annotation band at the
  bottom; with a ``mask`` only where the mask is transparent (OpenAI's convention:
  transparent marks what to edit), every other pixel is the input's, unchanged;
- ``mix``: the first image blended with the references, then edited;
- ``remove_background``: alpha 0 where a pixel is close to the border's colour;
- ``upscale``: the input scaled by ``upscale_factor`` (default 2);
- ``outpaint``: the input centred on a canvas ``expand_factor`` (default 1.5) times larger;
- ``reframe``: the input fitted inside the ``size`` / ``aspect_ratio`` asked for.

``size`` (``WIDTHxHEIGHT``) resizes the result, except for ``upscale``; by default the
result has the input's size. Streaming is not offered: ``stream: true`` is a 422.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import pictures
from .catalogue import DEFAULT_MODEL
from .faults import Fault
from .inputs import InputImage, decode_image
from .validation import BACKGROUNDS, MAX_SIDE, RESPONSE_FORMATS, Detail, ImageParams, _Checker

if TYPE_CHECKING:
    from PIL import Image

OPERATIONS = ("edit", "inpaint", "outpaint", "mix", "reframe", "upscale", "remove_background")
NEEDS_PROMPT = frozenset({"edit", "outpaint", "mix"})
MAX_REFERENCES = 16
BACKGROUND_DISTANCE = 48  # a pixel this close (per channel) to the border colour is background
_FACTOR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*x?\s*$", re.IGNORECASE)
_RATIO = re.compile(r"^\s*(\d+)\s*[:/x]\s*(\d+)\s*$")


@dataclass(frozen=True)
class EditParams:
    """A valid edit request, decoded, with defaults filled in."""

    model: str
    prompt: str
    operation: str
    image: InputImage
    references: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    n: int = 1
    size: tuple[int, int] | None = None
    aspect_ratio: tuple[int, int] | None = None
    response_format: str = "url"
    background: str = "auto"
    upscale_factor: float = 2.0
    expand_factor: float = 1.5
    mask_feather: int = 0

    @property
    def output_size(self) -> tuple[int, int]:
        """The width and height of each result."""
        width, height = self.image.width, self.image.height
        if self.operation == "upscale":
            return round(width * self.upscale_factor), round(height * self.upscale_factor)
        if self.size is not None:
            return self.size
        if self.operation == "outpaint":
            return round(width * self.expand_factor), round(height * self.expand_factor)
        if self.operation == "reframe" and self.aspect_ratio is not None:
            rw, rh = self.aspect_ratio
            return width, max(1, round(width * rh / rw))
        return width, height

    @property
    def transparent(self) -> bool:
        return self.operation == "remove_background" or self.background == "transparent"

    def as_image_params(self) -> ImageParams:
        """The generation params whose answer shape (``response_body``) this edit shares."""
        width, height = self.output_size
        return ImageParams(
            prompt=self.prompt,
            model=self.model,
            n=self.n,
            width=width,
            height=height,
            response_format=self.response_format,
            output_format="png",
            background="transparent" if self.transparent else self.background,
        )


def _unwrap(value: Any) -> Any:
    """An ``ImageRef`` (``{"url": ...}``) as its string; anything else as is."""
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    return value


def _has_alpha(data: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _no_input(field: str, message: str, kind: str = "value_error") -> Detail:
    """A detail that does not echo its input: an image is too long to send back."""
    return {"loc": ["body", field], "msg": message, "type": kind}


def _factor(check: _Checker, field: str, default: float, lo: float, hi: float) -> float:
    value = check.body.get(field)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number: float | None = float(value)
    elif isinstance(value, str) and (match := _FACTOR.match(value)):
        number = float(match[1])
    else:
        number = None
    if number is None:
        check.fail(field, "Input should be a number such as 2 or '2x'", "value_error")
        return default
    if not lo <= number <= hi:
        check.fail(field, f"Input should be between {lo:g} and {hi:g}", "range_error")
        return default
    return number


def validate_edit(body: dict[str, Any]) -> tuple[EditParams | None, list[Detail]]:
    """Check BODY; return the params (None if invalid) and a detail for every bad field."""
    check = _Checker(body)
    model = check.string("model")
    operation = check.choice("operation", OPERATIONS) or "edit"
    prompt = check.string("prompt", required=operation in NEEDS_PROMPT)
    n = check.integer("n", 1, 10)
    size = check.size("size")
    response_format = check.choice("response_format", RESPONSE_FORMATS)
    background = check.choice("background", BACKGROUNDS)
    feather = check.integer("mask_feather", 0, 256)
    upscale = _factor(check, "upscale_factor", 2.0, 1.0, 8.0)
    expand = _factor(check, "expand_factor", 1.5, 1.0, 4.0)
    for field in ("quality_tier", "resolution"):
        check.string(field)
    ratio: tuple[int, int] | None = None
    aspect = check.string("aspect_ratio")
    if aspect is not None:
        match = _RATIO.match(aspect)
        if match is None or not int(match[1]) or not int(match[2]):
            check.fail("aspect_ratio", "Input should look like '16:9'", "string_pattern_mismatch")
        else:
            ratio = int(match[1]), int(match[2])
    if body.get("stream") not in (None, False):
        check.fail("stream", "Streaming is not supported for image edits", "value_error")

    image: InputImage | None = None
    if body.get("image") is None:
        check.details.append({"loc": ["body", "image"], "msg": "Field required", "type": "missing"})
    else:
        image, detail = decode_image(_unwrap(body["image"]), ["image"])
        if detail is not None:
            check.details.append(detail)

    references: list[InputImage] = []
    refs = body.get("reference_images")
    if refs is not None:
        if not isinstance(refs, list):
            message = "Input should be a valid list"
            check.details.append(_no_input("reference_images", message, "list_type"))
        elif len(refs) > MAX_REFERENCES:
            message = f"List should have at most {MAX_REFERENCES} items after validation"
            check.details.append(_no_input("reference_images", message, "too_long"))
        else:
            for i, ref in enumerate(refs):
                decoded, detail = decode_image(_unwrap(ref), ["reference_images", i])
                if decoded is not None:
                    references.append(decoded)
                if detail is not None:
                    check.details.append(detail)
    if operation == "mix" and not refs:
        message = "Field required: mix blends the image with reference_images"
        check.details.append(
            {"loc": ["body", "reference_images"], "msg": message, "type": "missing"}
        )

    mask: InputImage | None = None
    if body.get("mask") is not None:
        mask, detail = decode_image(_unwrap(body["mask"]), ["mask"])
        if detail is not None:
            check.details.append(detail)
        elif mask is not None and not _has_alpha(mask.data):
            message = "The mask should have an alpha channel: transparent areas mark the edit"
            check.details.append(_no_input("mask", message))
            mask = None
        elif (
            mask is not None
            and image is not None
            and (mask.width, mask.height)
            != (
                image.width,
                image.height,
            )
        ):
            message = (
                f"The mask is {mask.width}x{mask.height}; it should have the image's size, "
                f"{image.width}x{image.height}"
            )
            check.details.append(_no_input("mask", message))
    elif operation == "inpaint":
        message = "Field required: inpaint edits where the mask is transparent"
        check.details.append({"loc": ["body", "mask"], "msg": message, "type": "missing"})

    if image is not None and not check.details:
        params = EditParams(
            model=model or DEFAULT_MODEL,
            prompt=prompt or "",
            operation=operation,
            image=image,
            references=tuple(references),
            mask=mask,
            n=n or 1,
            size=size,
            aspect_ratio=ratio,
            response_format=response_format or "url",
            background=background or "auto",
            upscale_factor=upscale,
            expand_factor=expand,
            mask_feather=feather or 0,
        )
        width, height = params.output_size
        if max(width, height) > MAX_SIDE:
            field = {"upscale": "upscale_factor", "outpaint": "expand_factor"}.get(
                operation, "size"
            )
            message = f"The result would be {width}x{height}; each side is at most {MAX_SIDE}"
            check.fail(field, message, "value_error")
            return None, check.details
        return params, []
    return None, check.details


# -- drawing ------------------------------------------------------------------------------


def _open(data: bytes) -> Image.Image:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGBA")


def tint_color(prompt: str, index: int) -> tuple[int, int, int]:
    """The colour an edit tints with: from the prompt and the result's index."""
    digest = hashlib.sha256(f"{prompt}\x00{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _edited(img: Image.Image, prompt: str, index: int) -> Image.Image:
    """IMG tinted 35% toward the prompt's colour, with an annotation band at the bottom."""
    from PIL import Image, ImageDraw

    color = tint_color(prompt, index)
    tint = Image.new("RGBA", img.size, (*color, 255))
    out = Image.blend(img, tint, 0.35)
    out.putalpha(img.getchannel("A"))
    width, height = img.size
    band = max(2, height // 10)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, height - band, width, height), fill=(*color, 255))
    if band >= 10:
        draw.text((2, height - band + 1), f"edit: {prompt}"[:60], fill=(255, 255, 255, 255))
    return out


def _masked(
    original: Image.Image, edited: Image.Image, mask: Image.Image, feather: int
) -> Image.Image:
    """EDITED where MASK is transparent, ORIGINAL (exactly) where it is opaque."""
    from PIL import Image, ImageChops, ImageFilter

    weight = ImageChops.invert(mask.getchannel("A"))  # 255: edit, 0: keep
    if feather > 0:
        # Soften only inside the editable area: a kept pixel stays the input's.
        weight = ImageChops.darker(weight.filter(ImageFilter.GaussianBlur(feather)), weight)
    return Image.composite(edited, original, weight)


def _remove_background(img: Image.Image) -> Image.Image:
    """IMG with alpha 0 wherever a pixel is close to the most common border colour."""
    from PIL import Image, ImageChops

    width, height = img.size
    rgb = img.convert("RGB")
    border = [rgb.getpixel((x, 0)) for x in range(width)]
    border += [rgb.getpixel((x, height - 1)) for x in range(width)]
    border += [rgb.getpixel((0, y)) for y in range(height)]
    border += [rgb.getpixel((width - 1, y)) for y in range(height)]
    colour = Counter(border).most_common(1)[0][0]
    assert isinstance(colour, tuple)
    diff = ImageChops.difference(rgb, Image.new("RGB", img.size, colour))
    r, g, b = diff.split()
    distance = ImageChops.lighter(ImageChops.lighter(r, g), b)
    keep = distance.point(lambda v: 255 if v > BACKGROUND_DISTANCE else 0)
    out = img.copy()
    out.putalpha(ImageChops.multiply(img.getchannel("A"), keep))
    return out


def _on_canvas(
    img: Image.Image, size: tuple[int, int], fill: tuple[int, int, int], *, grow: bool
) -> Image.Image:
    """IMG centred on a canvas of SIZE, the rest FILL; scaled to fit (aspect kept) if GROW
    or if it is too big, else at its own size."""
    from PIL import Image, ImageOps

    canvas = Image.new("RGBA", size, (*fill, 255))
    fits = img.width <= size[0] and img.height <= size[1]
    placed = img if fits and not grow else ImageOps.contain(img, size, Image.Resampling.BICUBIC)
    canvas.paste(placed, ((size[0] - placed.width) // 2, (size[1] - placed.height) // 2))
    return canvas


def render_edit(params: EditParams, index: int) -> Image.Image:
    """Result INDEX of an edit, as RGBA (transparent results) or RGB."""
    from PIL import Image

    original = _open(params.image.data)
    size = params.output_size
    op = params.operation
    if op == "upscale":
        out = original.resize(size, Image.Resampling.BICUBIC)
    elif op == "remove_background":
        out = _remove_background(original)
    elif op in ("outpaint", "reframe"):
        fill = tint_color(params.prompt, index)
        out = _on_canvas(original, size, fill, grow=op == "reframe")
    else:  # edit, inpaint, mix
        source = original
        if op == "mix" and params.references:
            layers = [original] + [
                _open(r.data).resize(original.size, Image.Resampling.BILINEAR)
                for r in params.references
            ]
            for i, layer in enumerate(layers[1:], start=2):
                source = Image.blend(source, layer, 1 / i)  # an even mix of all of them
        out = _edited(source, params.prompt, index)
        if params.mask is not None:
            out = _masked(original, out, _open(params.mask.data), params.mask_feather)
    if out.size != size:
        out = out.resize(size, Image.Resampling.BICUBIC)
    has_alpha = params.transparent or original.getchannel("A").getextrema() != (255, 255)
    return out if has_alpha else out.convert("RGB")


def make_images(params: EditParams, fault: Fault | None) -> list[tuple[bytes, str]]:
    """The (bytes, claimed format) of each result, spoiled as an image fault asks."""
    kind = fault.kind if fault else None
    count = max(0, params.n - 1) if kind == "fewer" else params.n
    images: list[tuple[bytes, str]] = []
    for index in range(count):
        if kind == "not_image":
            images.append((pictures.NOT_AN_IMAGE, "png"))
        elif kind == "bomb":
            images.append((pictures.bomb_png(), "png"))
        elif kind == "noise":
            width, height = params.output_size
            noisy = pictures.noise(params.prompt, None, index, width, height)
            images.append((pictures.encode(noisy, "png"), "png"))
        else:
            data = pictures.encode(render_edit(params, index), "png")
            spoiled = kind == "truncated_png" or (kind == "one_corrupt" and index == count - 1)
            images.append((pictures.truncated(data) if spoiled else data, "png"))
    return images
