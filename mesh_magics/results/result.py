"""`ImageResult`: what a cell binds. The original bytes, decoded lazily into PIL images,
and what is known of how they were made.

How it displays is display.py (previews: previews.py); how it is written to disk is
files.py (names: names.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from ..errors import OptionError
from ..images import GeneratedImage
from ..originals import remember_original
from ..redact import one_line
from ..wording import plural
from .marks import Marks, StoredRun, check_stars, check_tags
from .previews import Preview, make_preview, preview_pool

if TYPE_CHECKING:
    from PIL import Image


class Lineage(Protocol):
    """Where the results that made an edit's inputs are found: the store (which sits above
    this module, so it is handed in, not imported)."""

    def find_image(
        self, sha256: str, *, request_id: str | None = None, preview_max_px: int = 1024
    ) -> ImageResult | None: ...


class ImageResult(Sequence["Image.Image"]):
    """The images of one generation and everything known about how they were made."""

    request: dict[str, Any]  # the body as sent; the key is a header, never in here
    model: str
    request_id: str | None
    usage: dict[str, Any] | None
    elapsed: float  # seconds
    preview_max_px: int
    created: float | None  # epoch seconds: when it was made (a stored one keeps its own)
    replayed: bool  # answered from the local store, with no request
    # An edit's input images, in the order sent: {"role": "image" | "reference" | "mask",
    # "sha256", "name" (e.g. "fox[0]", or None), "format", "width", "height", "bytes"}.
    # Empty for a generation.
    inputs: list[dict[str, Any]]

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
        created: float | None = None,
        replayed: bool = False,
        inputs: list[dict[str, Any]] | None = None,
        lineage: Lineage | None = None,
    ) -> None:
        self._images = images
        self.request = dict(request)
        self.model = model
        self.request_id = request_id
        self.usage = usage
        self.elapsed = elapsed
        self.preview_max_px = preview_max_px
        self.created = time.time() if created is None else created
        self.replayed = replayed
        self.inputs = [dict(entry) for entry in inputs or ()]
        self.lineage = lineage  # the store that holds it, which finds its parents
        self.stored: StoredRun | None = None  # its run in the store: where its marks go
        self._decoded: dict[int, Image.Image] = {}
        self._previews: dict[tuple[int, int], Preview] = {}

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
        img.info["request"] = self.request  # the body that made it (`mm.fields_of`)
        remember_original(img, image, self.request_id)  # an edit of it sends these very bytes
        return img

    def position_of(self, image: object) -> int | None:
        """The index of `image` if it is one of the PIL images this result handed out."""
        return next((i for i, held in self._decoded.items() if held is image), None)

    # -- what came with them ---------------------------------------------------------

    @property
    def images(self) -> list[Image.Image]:
        return list(self)

    def rest_on(self, images: Sequence[GeneratedImage]) -> None:
        """Hand its images over to `images`: the same ones (bytes, format, size, revised
        prompt), whose bytes are read when asked, from the store's files. What it held of
        them in memory is let go: the bytes, and previews that were only those bytes."""
        if len(images) != len(self._images):
            raise ValueError(f"rest_on: {len(images)} images for a result of {len(self)}")
        self._images = list(images)
        held = self._previews.items()
        self._previews = {key: made for key, made in held if _kept(self._images[key[0]], made)}

    @property
    def in_memory(self) -> bool:
        """Whether it holds its images' bytes (a sweep's result, once stored, reads them
        from the store instead: `data` reads the files each time)."""
        return all(getattr(image, "loaded", True) for image in self._images)

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

    @property
    def is_edit(self) -> bool:
        """Whether these images were made from others (an edit), not from a prompt alone."""
        return bool(self.inputs)

    def _mesh_images_(self) -> tuple[list[bytes], str | None]:
        """Its images for an edit (`inputs.ImageSource`): all of them, original bytes."""
        if not len(self):
            raise OptionError("the result has no images")
        return self.data, self.request_id

    @property
    def parents(self) -> list[ImageResult]:
        """The stored results that made this edit's input images, in input order, one per
        distinct input; an input the store does not hold (a file from disk) is skipped,
        and a generation has none. Each is lazy and has its own `parents`, so an edit can
        be walked back to the generation it started from."""
        store = self.lineage
        if not self.is_edit or store is None:
            return []
        found: list[ImageResult] = []
        asked: set[str] = set()
        for entry in self.inputs:
            sha256 = entry.get("sha256")
            if not isinstance(sha256, str) or sha256 in asked:
                continue
            asked.add(sha256)
            made_by = entry.get("request_id")  # several runs can make the same bytes
            parent = store.find_image(
                sha256,
                request_id=made_by if isinstance(made_by, str) else None,
                preview_max_px=self.preview_max_px,
            )
            # A run that took this image in and gave it back unchanged did not make it;
            # taking it for the maker would make a chain that never ends.
            if parent is not None and sha256 not in {i.get("sha256") for i in parent.inputs}:
                found.append(parent)
        return found

    # -- the user's marks (marks.py): in the store, so they outlive the kernel ------------

    def rate(self, stars: int | None, *, image: int | str | None = None) -> None:
        """Give the run (or one `image`: its index or SHA-256) 1 to 5 stars; None clears."""
        stars = None if stars is None else check_stars(stars)
        run = self._run_in_store()
        run.book.set_rating(run.run_id, self._position(image), stars)

    def tag(self, *tags: str, image: int | str | None = None) -> None:
        """Tag the run (or one `image`: its index or SHA-256), e.g. `result.tag("hero")`."""
        run = self._run_in_store()
        run.book.change_tags(run.run_id, self._position(image), check_tags(tags), add=True)

    def untag(self, *tags: str, image: int | str | None = None) -> None:
        """Take tags off the run (or one `image`); a tag it does not have is no error."""
        run = self._run_in_store()
        run.book.change_tags(run.run_id, self._position(image), check_tags(tags), add=False)

    @property
    def marks(self) -> Marks:
        """The run's rating and tags and its images', as the store has them now."""
        run = self._run_in_store()
        return run.book.marks_of(run.run_id)

    @property
    def rating(self) -> int | None:
        """The run's stars (1 to 5), or None."""
        return self.marks.rating if self.stored is not None else None

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's own tags (an image's: `tags_of(image)`)."""
        return self.marks.tags if self.stored is not None else ()

    def rating_of(self, image: int | str) -> int | None:
        """One image's stars (its index or SHA-256), or None."""
        position = self._position(image)
        if self.stored is None or position is None:
            return None
        return self.marks.image_ratings.get(position)

    def tags_of(self, image: int | str) -> tuple[str, ...]:
        position = self._position(image)
        if self.stored is None or position is None:
            return ()
        return self.marks.image_tags.get(position, ())

    def _run_in_store(self) -> StoredRun:
        if self.stored is None:
            raise OptionError(
                "this result is in no store (the store is off, or storing it failed), so it "
                "cannot be rated or tagged"
            )
        return self.stored

    def _position(self, image: int | str | None) -> int | None:
        """The index of `image` (an index, negative ones too, or a SHA-256); None: the run."""
        if image is None:
            return None
        if isinstance(image, str):
            for position, held in enumerate(self._images):
                digest = getattr(held, "sha256", None) or hashlib.sha256(held.data).hexdigest()
                if digest == image.lower():
                    return position
            raise OptionError(f"no image of this result has the SHA-256 {one_line(image, 70)}")
        if isinstance(image, bool) or not isinstance(image, int):
            raise OptionError(f"image: an index or a SHA-256, not {one_line(repr(image), 40)}")
        try:
            return range(len(self))[image]
        except IndexError:
            raise OptionError(
                f"image {image}: this result has {plural(len(self), 'image')}"
            ) from None

    def summary(self) -> str:
        """One line: what was made, by which model, how long it took."""
        count = plural(len(self), "image")
        asked = int(self.request.get("n", len(self)))
        if asked > len(self):
            count = f"{len(self)} of {plural(asked, 'image')}"
        sizes = sorted({f"{w}x{h}" for w, h in self.sizes})
        formats = sorted(set(self.formats))
        made = f"{one_line(self.model, 80)} · {', '.join(sizes)} {'/'.join(formats)}"
        if self.is_edit:  # say what it was made from: `remove_background of night · ...`
            first = self.inputs[0].get("name") or "an image"
            operation = self.request.get("operation", "edit")
            made = f"{one_line(str(operation), 40)} of {one_line(str(first), 60)} · {made}"
        if self.replayed:  # no time spent: say where it came from instead
            when = None if self.created is None else _local_minute(self.created)
            request_id = f"({one_line(self.request_id, 80)})" if self.request_id else None
            origin = " ".join(part for part in (when, request_id) if part) or "the store"
            return f"↺ replayed {count} · {made} · from {origin}"
        return f"✓ {count} · {made} · {self.elapsed:.1f} s"

    def __repr__(self) -> str:
        return f"<ImageResult {self.summary().removeprefix('✓ ')}>"

    # -- saving ----------------------------------------------------------------------

    def save(
        self,
        path: str | os.PathLike[str] = ".",
        *,
        stem: str | None = None,
        overwrite: bool = False,
        embed_prompt: bool | None = None,
    ) -> list[Path]:
        """Write every image to `path`; return the paths written.

        `path` is a file name when it ends in .png, .jpg, .jpeg, .webp or .gif (several
        images: `fox-1.png`, `fox-2.png`...; another format is converted to the one the
        suffix names). Another image format's suffix (`x.bmp`, `x.tiff`) is refused with a
        `SaveError` listing those five, since it could not hold the provenance; end it in
        `/` for a folder of that name. Any other path is a folder, made if missing, where
        names come from `stem` or the prompt (`a-watercolor-of-a-fox-1.png`, letters of
        any script kept). Nothing is overwritten unless `overwrite=True` (a folder gets
        `-v2` names instead, a taken file name is an error), nothing lands outside the
        folder, no symlink is followed (a folder or `manifest.jsonl` that is one is
        refused), and each file is written atomically. Each file holds its provenance
        (prompt, revised prompt, model, request body, request id, time, mesh-magics
        version, the image's own SHA-256 and an edit's inputs: PNG text chunks, JPEG/WebP
        XMP, a `.json` beside a GIF; `mesh_magics.read_metadata` reads it back) and gets a
        line in its folder's `manifest.jsonl`. `embed_prompt=False` (default: the
        `MeshImageMagics.embed_prompt` setting) leaves the prompt out of both, and out of
        the names. A failure is a `SaveError` (an `OSError`) naming the path and what to do.
        """
        from .saving import save_result

        return save_result(self, path, stem=stem, overwrite=overwrite, embed_prompt=embed_prompt)

    # -- display ---------------------------------------------------------------------

    def preview(self, index: int, max_px: int | None = None) -> Preview:
        """Image `index` as a PNG or JPEG of at most `max_px` (default `preview_max_px`)."""
        px = self.preview_max_px if max_px is None else max_px
        made = self._previews.get((index, px))
        if made is None:
            made = make_preview(self._images[index], px)
            if _kept(self._images[index], made):
                self._previews[index, px] = made
        return made

    def previews(self, max_px: int) -> list[Preview]:
        """Every image's preview of at most `max_px`; the missing ones made side by side
        (Pillow decodes, scales and encodes without the GIL: a grid of four 1024 px images
        takes about half the time on two cores)."""
        missing = [i for i in range(len(self)) if (i, max_px) not in self._previews]
        if len(missing) > 1:
            made = dict(
                zip(
                    missing,
                    preview_pool().map(lambda i: make_preview(self._images[i], max_px), missing),
                    strict=True,
                )
            )
            for i, preview in made.items():
                if _kept(self._images[i], preview):
                    self._previews[i, max_px] = preview
            return [self._previews.get((i, max_px)) or made[i] for i in range(len(self))]
        return [self.preview(i, max_px) for i in range(len(self))]

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from .display import mimebundle  # the renderer knows the model, not the reverse

        return mimebundle(self)


def _kept(image: GeneratedImage, preview: Preview) -> bool:
    """Whether a result keeps `preview` of `image`: always while it holds the image's
    bytes; once it reads them from the store, only a preview smaller than the image (a
    thumbnail), never one that is the image's own bytes."""
    if getattr(image, "loaded", True):
        return True
    return preview.mime != f"image/{image.format}" or (preview.width, preview.height) != (
        image.width,
        image.height,
    )


def _local_minute(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


__all__ = ["ImageResult"]
