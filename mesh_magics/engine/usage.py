"""What this session has asked of the API: requests, images, replays and the usage the
API reported, per model; `%mesh usage` shows it with an estimated cost."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..results.usage_report import ModelUsage

if TYPE_CHECKING:
    from ..results.result import ImageResult


class SessionUsage:
    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], ModelUsage] = {}
        self._lock = threading.Lock()

    def record(self, result: ImageResult, api_host: str, *, replayed: bool) -> None:
        """Count a run that ended with images (called on the engine's thread)."""
        key = (result.model, api_host)
        with self._lock:
            line = self._lines.setdefault(key, ModelUsage(*key))
            if replayed:
                line.replays += 1
                line.replayed_images += len(result)
                return
            line.requests += 1
            line.images += len(result)
            for name, value in (result.usage or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    line.tokens[name] = line.tokens.get(name, 0) + value

    def lines(self) -> list[ModelUsage]:
        with self._lock:
            return [ModelUsage(**vars(line)) for line in self._lines.values()]


def price_per_image(model: dict[str, Any] | None) -> float | None:
    """The per-image price `/v1/models` gives a model, or None where it gives none."""
    pricing = (model or {}).get("pricing")
    if not isinstance(pricing, dict):
        return None
    for name in ("image_output_usd_per_image", "per_image"):
        try:
            return float(pricing[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None


_session = SessionUsage()


def session_usage() -> SessionUsage:
    return _session
