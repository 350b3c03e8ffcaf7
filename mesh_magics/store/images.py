"""`StoredImage`: an image of the store that reads its file only when its bytes are asked.

A history of hundreds of images costs a few hundred bytes each until one is shown: the
file is read (and checked against its SHA-256) each time `data` is asked, and not kept,
so holding a history never holds its pixels. `ImageResult` decodes and previews an image
once and keeps those, so a shown image is read once in practice.

It is a `GeneratedImage` (same fields, same behaviour) so everything that takes one takes
it: previews, saving, and `dataclasses.replace` in `results/convert.py`, which builds a
new one with bytes in memory.
"""

from __future__ import annotations

from pathlib import Path

from ..images import GeneratedImage
from .disk import read_image


class StoredImage(GeneratedImage):
    """An image whose bytes are in memory (`data=`) or in the store's file `path`."""

    # Not re-decorated as a dataclass: its fields stay GeneratedImage's, and `data`, a
    # field there, is a property here. Frozen like its base: attributes are set once.
    def __init__(
        self,
        data: bytes | None,
        format: str,  # the field's name in GeneratedImage
        width: int,
        height: int,
        revised_prompt: str | None = None,
        *,
        path: Path | None = None,
        sha256: str | None = None,
    ) -> None:
        if data is None and (path is None or sha256 is None):
            raise ValueError("a StoredImage needs its bytes, or the path and SHA-256 of its file")
        for name, value in (
            ("_data", data),
            ("format", format),
            ("width", width),
            ("height", height),
            ("revised_prompt", revised_prompt),
            ("path", path),
            ("sha256", sha256),
        ):
            object.__setattr__(self, name, value)

    path: Path | None  # the store's file of the bytes (None: made in memory)
    sha256: str | None

    @property  # a read-only field of the base (frozen), lazy here
    def data(self) -> bytes:
        """The image's bytes: those given, else the file's, read now and checked
        (a `StoredImageError` if the file has gone or changed)."""
        data: bytes | None = self.__dict__["_data"]
        if data is not None:
            return data
        assert self.path is not None and self.sha256 is not None
        return read_image(self.path, self.sha256)

    @property
    def loaded(self) -> bool:
        """Whether the bytes are in memory (else `data` reads the file)."""
        return self.__dict__["_data"] is not None

    def __repr__(self) -> str:  # the base's repr would read the file to show its bytes
        where = "in memory" if self.loaded else str(self.path)
        return f"<StoredImage {self.width}x{self.height} {self.format} · {where}>"


__all__ = ["StoredImage"]
