"""What `/v1/models` says of a model: asked once per API host, kept a few minutes.

An edit asks it before sending: a model that the list says cannot edit is refused then,
not after an upload of megabytes. When the list cannot be had (an API without it, a
network hiccup), the edit goes ahead and the server has the last word.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import MeshError, OptionError

if TYPE_CHECKING:
    from ..settings import ClientSettings

KEEP_SECONDS = 300.0

log = logging.getLogger("mesh_magics")

_listed: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}  # host -> (when, by id)


async def image_models(settings: ClientSettings, host: str) -> dict[str, dict[str, Any]] | None:
    """The image models of `host` by id, or None when the list cannot be had."""
    from ..http.client import fetch_models

    kept = _listed.get(host)
    if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
        return kept[1]
    try:
        models = await fetch_models(settings)
    except MeshError as exc:
        log.debug("no model list from %s (%s); the server will judge", host, exc)
        return None
    by_id = {str(model.get("id")): model for model in models}
    _listed[host] = (time.monotonic(), by_id)
    return by_id


async def check_edit_model(settings: ClientSettings, host: str, model: str) -> None:
    """Refuse `model` for an edit when `/v1/models` says it does not support edits."""
    models = await image_models(settings, host)
    listed = None if models is None else models.get(model)
    if listed is None or listed.get("supports_image_edit") is not False:
        return
    able = sorted(m for m, info in (models or {}).items() if info.get("supports_image_edit"))
    which = f"models that do: {', '.join(able)}" if able else "no listed model does"
    raise OptionError(f"--model {model}: does not support edits, says /v1/models; {which}")
