"""What `history()` may be asked for, checked once, and said in SQL.

    HistoryFilter.checked(model="openai/gpt-image-1", since="2025-05-01", tag="hero")

Every value is checked before the store is opened: a bad one is a one-line `OptionError`
naming the filter. Times: a `datetime`, a `date` or an ISO 8601 string ("2025-05-01",
"2025-05-01T14:30"); a naive one is local time. A date as `until` means up to the end of
that day. A run matches `tag` or `min_rating` when it, or one of its images, has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from ..errors import OptionError
from ..redact import one_line
from ..results.marks import check_stars, check_tags
from ..value_kinds import Size


def _moment(value: object, name: str, *, end_of_day: bool) -> float:
    """Epoch seconds of a datetime, a date or an ISO string (naive: local time)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            value = None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value + timedelta(days=1) if end_of_day else value
        value = datetime.combine(day, time())
    if not isinstance(value, datetime):
        raise OptionError(
            f"history {name}: a datetime, a date or an ISO date such as 2025-05-01 or "
            f"2025-05-01T14:30, not {one_line(repr(value), 40)}"
        )
    return value.timestamp()


@dataclass(frozen=True)
class HistoryFilter:
    """Checked filters of `history()`; None (or empty) means any."""

    text: str | None = None
    model: str | None = None
    size: str | None = None
    seed: int | None = None
    since: float | None = None  # epoch seconds, included
    until: float | None = None  # epoch seconds, excluded
    tags: tuple[str, ...] = ()
    min_rating: int | None = None

    @classmethod
    def checked(
        cls,
        text: str | None = None,
        *,
        model: str | None = None,
        size: str | None = None,
        seed: int | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        tag: str | Sequence[str] | None = None,
        min_rating: int | None = None,
    ) -> HistoryFilter:
        for name, value in (("text", text), ("model", model)):
            if value is not None and not isinstance(value, str):
                raise OptionError(f"history {name}: a text, not {one_line(repr(value), 40)}")
        if size is not None:
            try:
                size = Size().convert(size)
            except ValueError as exc:
                raise OptionError(f"history size: {exc}, not {one_line(repr(size), 40)}") from None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise OptionError(f"history seed: a whole number, not {one_line(repr(seed), 40)}")
        tags = check_tags([tag] if isinstance(tag, str) else list(tag or ()))
        return cls(
            text=text or None,
            model=model or None,
            size=size,
            seed=seed,
            since=None if since is None else _moment(since, "since", end_of_day=False),
            until=None if until is None else _moment(until, "until", end_of_day=True),
            tags=tags,
            min_rating=None
            if min_rating is None
            else check_stars(min_rating, what="history min_rating"),
        )

    def where(self) -> tuple[str, list[Any]]:
        """The conditions on `r` (a row of runs), and their values, in order."""
        parts = ["1"]
        values: list[Any] = []
        if self.text is not None:
            parts.append("mm_contains(?, r.prompt, r.model, r.request_id)")
            values.append(self.text)
        if self.model is not None:
            parts.append("r.model = ?")  # runs_by_model
            values.append(self.model)
        if self.size is not None:  # the size asked for, or an image of that size
            width, height = map(int, self.size.split("x")) if "x" in self.size else (-1, -1)
            parts.append(
                "(json_extract(r.request, '$.size') = ? OR r.id IN "
                "(SELECT run_id FROM images WHERE width = ? AND height = ?))"
            )
            values += [self.size, width, height]
        if self.seed is not None:
            parts.append("json_extract(r.request, '$.seed') = ?")
            values.append(self.seed)
        if self.since is not None:
            parts.append("r.created >= ?")  # runs_by_age
            values.append(self.since)
        if self.until is not None:
            parts.append("r.created < ?")
            values.append(self.until)
        for tag in self.tags:  # tags_by_tag
            parts.append("r.id IN (SELECT run_id FROM tags WHERE tag = ?)")
            values.append(tag)
        if self.min_rating is not None:
            parts.append("(r.rating >= ? OR r.id IN (SELECT run_id FROM images WHERE rating >= ?))")
            values += [self.min_rating, self.min_rating]
        return " AND ".join(parts), values


__all__ = ["HistoryFilter"]
