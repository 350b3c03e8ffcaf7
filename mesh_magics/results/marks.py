"""A user's marks on a stored result: a rating (1 to 5 stars) and tags, for the run and
for each of its images. They live in the store, which sits above this module: a result
reaches them through the `MarkBook` (the store) it was stored in, handed in.

    result.rate(4); result.tag("hero")          # the run
    result.rate(5, image=1)                     # one image: its index, or its SHA-256
    result.rating, result.tags, result.rating_of(1), result.tags_of(1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import OptionError
from ..redact import one_line

STARS = range(1, 6)
TAG_MAX_CHARS = 64


@dataclass(frozen=True)
class Marks:
    """A run's marks: its own rating and tags, and those of its images (by index)."""

    rating: int | None = None
    tags: tuple[str, ...] = ()
    image_ratings: Mapping[int, int] = field(default_factory=dict)
    image_tags: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


class MarkBook(Protocol):
    """Where marks are kept: the store. `position` None: the run; else an image's index."""

    def marks_of(self, run_id: int) -> Marks: ...

    def set_rating(self, run_id: int, position: int | None, stars: int | None) -> None: ...

    def change_tags(
        self, run_id: int, position: int | None, tags: Sequence[str], *, add: bool
    ) -> None: ...


@dataclass(frozen=True)
class StoredRun:
    """Which run of which store a result is: what its marks are written to."""

    book: MarkBook
    run_id: int


def check_stars(stars: object, *, what: str = "a rating") -> int:
    """`stars` if it is a whole number of stars from 1 to 5, else a one-line `OptionError`."""
    if isinstance(stars, bool) or not isinstance(stars, int) or stars not in STARS:
        raise OptionError(f"{what} is 1 to 5 stars, not {one_line(repr(stars), 40)}")
    return stars


def check_tags(tags: Sequence[object]) -> tuple[str, ...]:
    """The tags, each stripped, once each; a one-line `OptionError` for one that is not a
    short text."""
    checked = []
    for tag in tags:
        text = tag.strip() if isinstance(tag, str) else ""
        if not text or len(text) > TAG_MAX_CHARS:
            raise OptionError(
                f"a tag is a text of 1 to {TAG_MAX_CHARS} characters, not {one_line(repr(tag), 40)}"
            )
        checked.append(text)
    return tuple(dict.fromkeys(checked))


__all__ = ["STARS", "MarkBook", "Marks", "StoredRun", "check_stars", "check_tags"]
