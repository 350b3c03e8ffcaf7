"""`ImageResult`: what a cell binds. The original bytes, decoded lazily into PIL images.

Display (`_repr_mimebundle_`) uses small previews (`preview_max_px` on the long side) as
ordinary `image/png` or `image/jpeg` outputs, so they survive saving, nbconvert and GitHub.
Several images, or an image with a revised prompt, also get an HTML grid with captions
for frontends that render HTML; the plain image stays in the bundle for those that don't.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import tempfile
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from .events import count_images
from .images import GeneratedImage

if TYPE_CHECKING:
    from PIL import Image

_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif"}
# Thumbnails box-reduce by a whole factor before resampling: 1024 px to a 320 px cell in a
# third of the time (bench/: displaying an n=4 cell), a mean difference below 1/255.
_REDUCING_GAP = 1.0


@dataclass(frozen=True)
class Preview:
    data: bytes
    mime: str  # image/png or image/jpeg
    width: int
    height: int


class ImageResult(Sequence["Image.Image"]):
    """The images of one generation and everything known about how they were made."""

    def __init__(
        self,
        images: list[GeneratedImage],
        *,
        request: dict[str, Any],
        model: str,
        request_id: str | None = None,
        usage: dict[str, Any] | None = None,
        elapsed: float = 0.0,
        preview_max_px: int = 1024,
    ) -> None:
        self._images = images
        self.request = dict(request)  # the body as sent; the key is a header, never in here
        self.model = model
        self.request_id = request_id
        self.usage = usage
        self.elapsed = elapsed
        self.preview_max_px = preview_max_px
        self._decoded: dict[int, Image.Image] = {}
        self._previews: dict[int, Preview] = {}

    # -- the sequence of PIL images --------------------------------------------------

    def __len__(self) -> int:
        return len(self._images)

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...
    @overload
    def __getitem__(self, index: slice) -> list[Image.Image]: ...
    def __getitem__(self, index: int | slice) -> Image.Image | list[Image.Image]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        position = range(len(self))[index]  # IndexError for out of range, like a list
        if position not in self._decoded:
            self._decoded[position] = self._decode(position)
        return self._decoded[position]

    def __iter__(self) -> Iterator[Image.Image]:
        return (self[i] for i in range(len(self)))

    def _decode(self, index: int) -> Image.Image:
        from PIL import Image

        image = self._images[index]
        img = Image.open(io.BytesIO(image.data))
        img.load()
        img.info.update(prompt=self.prompt, revised_prompt=image.revised_prompt, model=self.model)
        return img

    # -- what came with them ---------------------------------------------------------

    @property
    def images(self) -> list[Image.Image]:
        return list(self)

    @property
    def data(self) -> list[bytes]:
        return [image.data for image in self._images]

    @property
    def formats(self) -> list[str]:
        return [image.format for image in self._images]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [(image.width, image.height) for image in self._images]

    @property
    def revised_prompts(self) -> list[str | None]:
        return [image.revised_prompt for image in self._images]

    @property
    def prompt(self) -> str:
        return str(self.request.get("prompt", ""))

    def summary(self) -> str:
        """One line: what was made, by which model, how long it took."""
        count = count_images(len(self))
        asked = int(self.request.get("n", len(self)))
        if asked > len(self):
            count = f"{len(self)} of {asked} images"
        sizes = sorted({f"{w}x{h}" for w, h in self.sizes})
        formats = sorted(set(self.formats))
        return (
            f"✓ {count} · {self.model} · {', '.join(sizes)} {'/'.join(formats)} · "
            f"{self.elapsed:.1f} s"
        )

    def __repr__(self) -> str:
        return f"<ImageResult {self.summary().removeprefix('✓ ')}>"

    # -- saving ----------------------------------------------------------------------

    def save(
        self, directory: str | os.PathLike[str] = ".", *, stem: str | None = None
    ) -> list[Path]:
        """Write every image under `directory` with a readable, safe name; return the paths.

        Names come from `stem` or the prompt (`a-watercolor-of-a-fox-1.png`), never
        overwrite an existing file, and cannot leave `directory`. The prompt, revised
        prompt and model are stored in the file: PNG text chunks, a JPEG comment, or a
        `.json` file beside other formats. Each file is written atomically.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        base = safe_stem(stem if stem is not None else self.prompt)
        paths = []
        for index, image in enumerate(self._images):
            metadata = {
                "prompt": self.prompt,
                "revised_prompt": image.revised_prompt,
                "model": self.model,
                "request_id": self.request_id,
                "software": "mesh-magics",
            }
            suffix = f"-{index + 1}" if len(self) > 1 else ""
            path = _free_path(target, f"{base}{suffix}", _EXTENSIONS.get(image.format, "bin"))
            data = _with_metadata(image, metadata)
            _write_atomic(path, data)
            if image.format not in ("png", "jpeg"):
                _write_atomic(
                    path.with_suffix(path.suffix + ".json"), json.dumps(metadata).encode()
                )
            paths.append(path)
        return paths

    # -- display ---------------------------------------------------------------------

    def preview(self, index: int) -> Preview:
        if index not in self._previews:
            self._previews[index] = make_preview(self._images[index], self.preview_max_px)
        return self._previews[index]

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not self._images:
            return {"text/plain": repr(self)}, {}
        if len(self) == 1:
            shown = self.preview(0)
        else:
            shown = contact_sheet([self.preview(i) for i in range(len(self))])
        data: dict[str, Any] = {
            shown.mime: base64.b64encode(shown.data).decode("ascii"),
            "text/plain": repr(self),
        }
        metadata = {shown.mime: {"width": shown.width, "height": shown.height}}
        if len(self) > 1 or any(self.revised_prompts):
            data["text/html"] = self._html()
        return data, metadata

    def _html(self) -> str:
        figures = []
        for index, image in enumerate(self._images):
            preview = self.preview(index)
            source = f"data:{preview.mime};base64,{base64.b64encode(preview.data).decode('ascii')}"
            caption = html.escape(
                image.revised_prompt or f"{index + 1}: {image.width}x{image.height}"
            )
            width = min(preview.width, 1024 if len(self) == 1 else 320)
            figures.append(
                f'<figure style="margin:0;max-width:{width}px">'
                f'<img src="{source}" width="{width}" alt="image {index + 1}" '
                'style="max-width:100%;height:auto">'
                f'<figcaption style="font-size:0.8em;opacity:0.75">{caption}</figcaption></figure>'
            )
        return (
            '<div class="mesh-magics-grid" style="display:flex;flex-wrap:wrap;gap:8px;'
            f'align-items:flex-start">{"".join(figures)}</div>'
        )


# -- previews ------------------------------------------------------------------------------


def make_preview(image: GeneratedImage, max_px: int) -> Preview:
    """A PNG or JPEG no larger than `max_px` on the long side (0: full size)."""
    fits = max_px <= 0 or max(image.width, image.height) <= max_px
    if fits and image.format in ("png", "jpeg"):
        return Preview(image.data, f"image/{image.format}", image.width, image.height)
    from PIL import Image

    with Image.open(io.BytesIO(image.data)) as img:
        if not fits:
            img.thumbnail((max_px, max_px), reducing_gap=_REDUCING_GAP)
        return _encode_preview(img)


def contact_sheet(previews: list[Preview], *, cell_px: int = 320) -> Preview:
    """All previews side by side in a grid of up to four columns, as one image."""
    from PIL import Image

    columns = min(4, len(previews))
    rows = -(-len(previews) // columns)
    sheet = Image.new("RGBA", (columns * cell_px, rows * cell_px), (255, 255, 255, 0))
    for index, preview in enumerate(previews):
        with Image.open(io.BytesIO(preview.data)) as img:
            img.thumbnail((cell_px, cell_px), reducing_gap=_REDUCING_GAP)
            x = (index % columns) * cell_px + (cell_px - img.width) // 2
            y = (index // columns) * cell_px + (cell_px - img.height) // 2
            sheet.paste(img.convert("RGBA"), (x, y))
    return _encode_preview(sheet)


def _encode_preview(img: Image.Image) -> Preview:
    buffer = io.BytesIO()
    has_alpha = img.mode in ("RGBA", "LA", "P") and img.getextrema()[-1] != (255, 255)
    if has_alpha:
        img.save(buffer, "PNG", optimize=False)
        mime = "image/png"
    else:
        img.convert("RGB").save(buffer, "JPEG", quality=85)
        mime = "image/jpeg"
    return Preview(buffer.getvalue(), mime, img.width, img.height)


# -- files ---------------------------------------------------------------------------------


def safe_stem(text: str, *, limit: int = 60) -> str:
    """`A Fox, in snow!` -> `a-fox-in-snow`: ASCII letters, digits and dashes only."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return stem[:limit].rstrip("-") or "image"


def _free_path(directory: Path, stem: str, extension: str) -> Path:
    path = directory / f"{stem}.{extension}"
    counter = 2
    while path.exists():
        path = directory / f"{stem}-v{counter}.{extension}"
        counter += 1
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".mesh-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _with_metadata(image: GeneratedImage, metadata: dict[str, Any]) -> bytes:
    """The image bytes with `metadata` embedded, without re-encoding the pixels."""
    text = {k: v for k, v in metadata.items() if v}
    if image.format == "png":
        chunks = b"".join(_png_itxt(key, str(value)) for key, value in text.items())
        end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
        return image.data[:end_of_ihdr] + chunks + image.data[end_of_ihdr:]
    if image.format == "jpeg":
        comment = json.dumps(text, ensure_ascii=False).encode("utf-8")[:65000]
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        return image.data[:2] + segment + image.data[2:]
    return image.data


def _png_itxt(key: str, value: str) -> bytes:
    body = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    return (
        len(body).to_bytes(4, "big")
        + b"iTXt"
        + body
        + zlib.crc32(b"iTXt" + body).to_bytes(4, "big")
    )


__all__ = ["ImageResult", "Preview", "safe_stem"]
