"""The model ids each API last listed (`/v1/models`), kept as the list passes through
`fetch_models` (`%mesh models`, the form, an edit's check), so that Tab completion can
offer them without asking the network."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

_lock = threading.Lock()
_ids: dict[str, tuple[str, ...]] = {}  # base URL -> the ids it listed, in its order


def remember(base_url: str, models: Iterable[Mapping[str, Any]]) -> None:
    """Keep the ids of `models`, as `base_url` listed them just now."""
    ids = tuple(str(model["id"]) for model in models if model.get("id"))
    with _lock:
        _ids[base_url] = ids


def listed_ids(base_url: str) -> tuple[str, ...] | None:
    """The ids `base_url` listed last, or None when it has not been asked."""
    with _lock:
        return _ids.get(base_url)


def forget() -> None:
    """Forget every list (tests)."""
    with _lock:
        _ids.clear()
