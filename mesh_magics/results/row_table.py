"""`RowTable`: a list shown as a table, a row of texts per item: one line per row (its
non-empty parts joined by " · ") as text, an HTML table in a notebook, and one sentence
when it is empty. `%mesh jobs` and `%mesh batches` show theirs so."""

from __future__ import annotations

import html
from typing import TypeVar

T = TypeVar("T")


class RowTable(list[T]):
    """Subclasses name their `columns`, say what `empty` reads, and write `rows()`."""

    columns: tuple[str, ...] = ()
    empty = "nothing to show"

    def rows(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        if not self:
            return self.empty
        return "\n".join(" · ".join(part for part in row if part) for row in self.rows())

    def _repr_html_(self) -> str:
        if not self:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(name)}</th>" for name in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(part)}</td>" for part in row) + "</tr>"
            for row in self.rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


__all__ = ["RowTable"]
