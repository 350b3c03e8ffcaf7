"""The store's history and the session's usage, from Python: `mm.history()`, and the
report of this session's requests, images and cost.

    mm.history("fox")           # the latest stored generations
    mm.history(model="openai/gpt-image-1", since="2025-05-01", tag="hero", min_rating=4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..errors import MeshError
from ..settings import ClientSettings, client_settings, configured

if TYPE_CHECKING:
    from ..results.history import History
    from ..results.usage_report import UsageReport


def history(
    text: str | None = None,
    limit: int = 20,
    *,
    model: str | None = None,
    size: str | None = None,
    seed: int | None = None,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    tag: str | Sequence[str] | None = None,
    min_rating: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> History:
    """The latest stored generations, newest first; each an `ImageResult` whose images
    load when touched. Filters (all must hold): `text` in the prompt, model or request id;
    `model` exactly; `size` ("1024x1024": asked for, or an image's); `seed`; `since` and
    `until` (a datetime, a date or an ISO string; naive is local time; a date as `until`
    takes in that whole day); `tag` (one, or several that must all be there); `min_rating`
    (1 to 5). A run has a tag or rating when it, or one of its images, has it. A bad
    value is a one-line `OptionError`."""
    from ..results.history import History
    from ..store import open_store
    from ..store.filters import HistoryFilter
    from ..store.store import history_limit

    limit = history_limit(limit)  # checked even when the store is off
    where = HistoryFilter.checked(
        text,
        model=model,
        size=size,
        seed=seed,
        since=since,
        until=until,
        tag=tag,
        min_rating=min_rating,
    )
    store = open_store(configured() if config is None else config)
    found = store.history(limit=limit, where=where) if store is not None else []
    return History(found, widget_view=_clickable_view())


def _clickable_view() -> Any:
    """The history's widget where a click can arrive (an interactive Jupyter frontend with
    ipywidgets), else None: the static table."""
    from ..views import interactive_frontend, widgets_importable
    from .prepare import running_shell

    if not (interactive_frontend(running_shell()) and widgets_importable()):
        return None
    from ..views.history_widget import history_widget

    return history_widget


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
