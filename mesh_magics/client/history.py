"""The store's history and the session's usage, from Python: `mm.history()`, and the
report of this session's requests, images and cost.

    mm.history("fox")           # the latest stored generations
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import MeshError
from ..settings import ClientSettings, client_settings, configured

if TYPE_CHECKING:
    from ..results.history import History
    from ..results.usage_report import UsageReport


def history(
    text: str | None = None, limit: int = 20, *, config: Mapping[str, Any] | None = None
) -> History:
    """The latest stored generations, newest first, filtered by `text` (in the prompt, the
    model or the request id); each an `ImageResult` whose images load when touched."""
    from ..results.history import History
    from ..store import open_store
    from ..store.store import history_limit

    limit = history_limit(limit)  # checked even when the store is off
    store = open_store(configured() if config is None else config)
    return History(store.history(text, limit) if store is not None else [])


def usage_prices(settings: ClientSettings, models: set[str]) -> dict[str, float | None]:
    """The per-image price of each of `models` that `/v1/models` gives (None: no price,
    or the list could not be had)."""
    from ..engine.usage import price_per_image
    from ..engine.wait import call
    from ..http.client import fetch_models

    try:
        listed = call(fetch_models(settings), "asking for prices")
    except MeshError:
        listed = []
    by_id = {str(m.get("id")): m for m in listed}
    return {model: price_per_image(by_id.get(model)) for model in models}


def usage_report(*, config: Mapping[str, Any] | None = None) -> UsageReport:
    """This session's requests, images and replays per model, with an estimated cost where
    `/v1/models` gives a per-image price (asked once per API host)."""
    from ..engine.usage import session_usage
    from ..results.usage_report import UsageReport

    config = configured() if config is None else config
    lines = session_usage().lines()
    prices: dict[str, float | None] = {}
    for host in {line.api_host for line in lines}:
        models = {line.model for line in lines if line.api_host == host}
        for model, price in usage_prices(client_settings(config, host), models).items():
            if prices.get(model) is None:  # a host without a price hides no other's
                prices[model] = price
    return UsageReport(lines, prices)
