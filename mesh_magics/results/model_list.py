"""`ModelList`: what `%mesh models` shows and binds, the image models the API
offers, one dict per model as `/v1/models` gave it."""

from __future__ import annotations

import html
from typing import Any


class ModelList(list[dict[str, Any]]):
    """A list of model dicts that shows itself as a table (id, name, edits, price)."""

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (
                str(model.get("id", "")),
                str(model.get("name", "")),
                "yes" if model.get("supports_image_edit") else "",
                _price(model.get("pricing")),
            )
            for model in self
        ]

    @property
    def ids(self) -> list[str]:
        return [str(model.get("id", "")) for model in self]

    def __repr__(self) -> str:
        rows = self.rows()
        width = max([len(r[0]) for r in rows] + [2])
        lines = [f"{'id':<{width}}  name", *(f"{r[0]:<{width}}  {r[1]}" for r in rows)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>"
            f"<td><code>{html.escape(i)}</code></td><td>{html.escape(n)}</td>"
            f"<td>{html.escape(e)}</td><td>{html.escape(p)}</td>"
            "</tr>"
            for i, n, e, p in self.rows()
        )
        head = "<tr><th>id</th><th>name</th><th>edits</th><th>per image</th></tr>"
        return f"<table>{head}{cells}</table>"


def _price(pricing: Any) -> str:
    """The price of one image, from the pricing object where it has one."""
    if not isinstance(pricing, dict):
        return ""
    value = pricing.get("image_output_usd_per_image") or pricing.get("per_image")
    return f"${value}" if value not in (None, "") else ""
