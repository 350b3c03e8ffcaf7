"""`UsageReport`: what `%mesh usage` shows, this session's requests, images, replays
and reported usage per model, with an estimated cost where `/v1/models` gives a price."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..wording import plural


@dataclass
class ModelUsage:
    """What one model on one API host was asked this session."""

    model: str
    api_host: str
    requests: int = 0  # sent to the API (a replay sends none)
    images: int = 0  # made by those requests
    replays: int = 0
    replayed_images: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # summed numeric usage fields


@dataclass
class UsageReport:
    lines: list[ModelUsage]
    prices: dict[str, float | None]  # per image, by model; None: the API gives none

    def cost(self, line: ModelUsage) -> float | None:
        price = self.prices.get(line.model)
        return None if price is None else price * line.images

    @property
    def total_cost(self) -> float | None:
        costs = [self.cost(line) for line in self.lines]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def _cost_text(self, line: ModelUsage) -> str:
        cost = self.cost(line)
        return "no price from /v1/models" if cost is None else f"~${cost:.3f}"

    def __repr__(self) -> str:
        if not self.lines:
            return "no requests this session"
        rows = [
            f"{line.model}: {plural(line.requests, 'request')}, {plural(line.images, 'image')}, "
            f"{plural(line.replays, 'replay')} ({plural(line.replayed_images, 'image')}), "
            f"{line.tokens.get('total_tokens', 0)} tokens, {self._cost_text(line)}"
            for line in self.lines
        ]
        total = self.total_cost
        rows.append(
            "total: "
            + (f"~${total:.3f} (estimated)" if total is not None else "cost not known for all")
        )
        return "\n".join(rows)

    def _repr_html_(self) -> str:
        if not self.lines:
            return "<p>no requests this session</p>"
        cells = "".join(
            f"<tr><td><code>{html.escape(line.model)}</code></td><td>{line.requests}</td>"
            f"<td>{line.images}</td><td>{line.replays}</td>"
            f"<td>{line.tokens.get('total_tokens', 0)}</td>"
            f"<td>{html.escape(self._cost_text(line))}</td></tr>"
            for line in self.lines
        )
        head = (
            "<tr><th>model</th><th>requests</th><th>images</th><th>replays</th>"
            "<th>tokens</th><th>estimated cost</th></tr>"
        )
        return f"<table>{head}{cells}</table><p>{html.escape(repr(self).splitlines()[-1])}</p>"
