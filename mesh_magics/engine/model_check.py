"""What `/v1/models` says a model can do: asked once per API host, kept a few minutes.

The vendor's catalogue carries capability flags (`supports_image_edit`,
`supports_image_inpaint`, `supports_image_reference`, ...) and the request fields a model
takes (`supported_parameters`). Gateways drop a field a model does not take without a word
(litellm #10501, #40074), so before a run is sent:

- as it starts, in the caller's thread (`Generation.start`): each field it sets that the
  model does not take is one line of warning (`ignored_in`);
- in the run, before an upload of megabytes: an edit the model cannot make (no edits, no
  mask, no references, not this operation) is refused (`check_edit_model`).

Where the catalogue says nothing of a model, or of a flag, nothing is said. When the list
cannot be had (an API without it, a network hiccup), the run goes ahead and the server has
the last word. A warning waits at most `WAIT_SECONDS` for a host's first list; the list,
once it comes, serves the next run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import MeshError, OptionError
from ..schema import REQUEST_FIELDS

if TYPE_CHECKING:
    from ..http.client import SharedClient
    from ..request import ImageRequest
    from ..settings import ClientSettings

KEEP_SECONDS = 300.0  # a list, once had
KEEP_MISSING_SECONDS = 30.0  # no list: not asked again for this long (a sweep asks once)
MAX_HOSTS = 16  # lists kept, the oldest dropped first
WAIT_SECONDS = 3.0  # the longest that preparing a run waits for a host's first list

# The flag of each edit operation, as MeshAPI's catalogue (and the SDK's ModelInfo) names it.
OPERATION_FLAGS = {
    "edit": "supports_image_edit",
    "inpaint": "supports_image_inpaint",
    "outpaint": "supports_image_outpaint",
    "mix": "supports_image_mix",
    "reframe": "supports_image_reframe",
    "upscale": "supports_image_upscale",
    "remove_background": "supports_image_remove_background",
}
# Fields that every image model takes (and `mesh_local`, the embedded backend's own
# controls, for the server rather than a model); an edit's images are the flags' business.
# A run that sets no other field asks nothing of /v1/models.
ALWAYS_TAKEN = frozenset({"prompt", "model", "stream", "n", "size", "mesh_local"})
EDIT_INPUTS = frozenset({"image", "mask", "reference_images"})

log = logging.getLogger("mesh_magics")

Models = dict[str, dict[str, Any]]
_listed: OrderedDict[str, tuple[float, Models | None]] = OrderedDict()  # host -> (when, by id)
_asking: dict[str, asyncio.Future[Models | None]] = {}  # host -> the request under way
_lock = threading.Lock()  # _listed is read from callers' threads too


# -- the list, per host --------------------------------------------------------------------


def _kept(host: str) -> tuple[bool, Models | None]:
    """(True, the list or None for "none to be had") while it is fresh; else (False, None)."""
    with _lock:
        kept = _listed.get(host)
    if kept is None:
        return False, None
    when, models = kept
    keep = KEEP_SECONDS if models is not None else KEEP_MISSING_SECONDS
    return time.monotonic() - when < keep, models


def _keep(host: str, models: Models | None) -> None:
    with _lock:
        _listed[host] = (time.monotonic(), models)
        _listed.move_to_end(host)
        while len(_listed) > MAX_HOSTS:
            _listed.popitem(last=False)


async def _ask(settings: ClientSettings, host: str, via: SharedClient | None) -> Models | None:
    from ..http.client import fetch_models

    try:
        models = await (via.list_models() if via is not None else fetch_models(settings))
    except MeshError as exc:
        log.debug("no model list from %s (%s); the server will judge", host, exc)
        by_id = None
    else:
        by_id = {str(model.get("id")): model for model in models}
    _keep(host, by_id)
    _asking.pop(host, None)
    return by_id


async def image_models(
    settings: ClientSettings, host: str, via: SharedClient | None = None
) -> Models | None:
    """The image models of `host` by id, or None when the list cannot be had. Runs on the
    engine's loop; runs that ask at once share one request. `via`: the pool of the runs
    that ask (a sweep's, a `Client`'s), whose connection the request then uses."""
    fresh, models = _kept(host)
    if fresh:
        return models
    asking = _asking.get(host)
    if asking is None or asking.done():
        asking = _asking[host] = asyncio.ensure_future(_ask(settings, host, via))
    return await asyncio.shield(asking)  # a waiter that gives up leaves it to the others


async def _within(
    settings: ClientSettings, host: str, seconds: float, via: SharedClient | None
) -> Models | None:
    try:
        return await asyncio.wait_for(image_models(settings, host, via), seconds)
    except asyncio.TimeoutError:
        log.debug("the model list of %s is slow; this run goes on without it", host)
        return None


def models_at_hand(
    settings: ClientSettings, host: str, via: SharedClient | None = None
) -> Models | None:
    """The list of `host` for a caller preparing a run: kept, else asked for and waited on
    for at most `WAIT_SECONDS` (an interrupt stops the wait). On the engine's own thread
    (a run's callback starting another) only a kept list: that thread must never wait."""
    from .loop import engine
    from .wait import call

    fresh, models = _kept(host)
    if fresh or threading.current_thread() is engine().thread:
        return models
    return call(_within(settings, host, WAIT_SECONDS, via), "reading the model list")


# -- what the list says of a request --------------------------------------------------------


def taken_parameters(listed: Mapping[str, Any]) -> frozenset[str] | None:
    """The fields a model takes, from `supported_parameters` (a list of names, or a mapping
    from name to what it takes); None when the entry says nothing."""
    said = listed.get("supported_parameters")
    if isinstance(said, Mapping):
        said = list(said)
    if not isinstance(said, list) or not all(isinstance(name, str) for name in said):
        return None
    return frozenset(said)


def ignored_fields(models: Models | None, request: ImageRequest) -> list[str]:
    """One line for each field `request` sets that its model does not take."""
    listed = None if models is None else models.get(request.model)
    taken = None if listed is None else taken_parameters(listed)
    if taken is None:
        return []
    exempt = ALWAYS_TAKEN | (EDIT_INPUTS if request.inputs else frozenset())
    return [
        f"{request.model} does not take {_flag(field)}: the gateway would drop it silently"
        for field in request.body
        if field not in exempt and field not in taken
    ]


def edit_refusal(models: Models | None, request: ImageRequest) -> str | None:
    """Why the model of the edit `request` cannot make it, as `/v1/models` says; else None."""
    listed = None if models is None else models.get(request.model)
    if listed is None or not request.inputs:
        return None
    operation = str(request.body.get("operation", "edit"))
    flag = OPERATION_FLAGS.get(operation, "supports_image_edit")
    if listed.get(flag) is None:  # the catalogue says nothing of this operation
        flag = "supports_image_edit"
    wants = [(flag, "edits" if flag == "supports_image_edit" else f"--operation {operation}")]
    if "mask" in request.body:
        wants.append(("supports_image_inpaint", "a --mask (inpainting)"))
    if "reference_images" in request.body:
        wants.append(("supports_image_reference", "reference images (a second --edit image)"))
    for flag, what in wants:
        if listed.get(flag) is False:
            able = sorted(m for m, info in (models or {}).items() if info.get(flag) is True)
            which = f"models that do: {', '.join(able)}" if able else "no listed model does"
            return f"--model {request.model}: does not support {what}, says /v1/models; {which}"
    return None


def ignored_in(
    settings: ClientSettings, host: str, request: ImageRequest, via: SharedClient | None = None
) -> list[str]:
    """Before a run is sent: a line for each field it sets that its model does not take.
    A run that sets none but the fields every model takes asks nothing of the list."""
    exempt = ALWAYS_TAKEN | (EDIT_INPUTS if request.inputs else frozenset())
    if set(request.body) <= exempt:
        return []
    return ignored_fields(models_at_hand(settings, host, via), request)


async def check_edit_model(
    settings: ClientSettings, host: str, request: ImageRequest, via: SharedClient | None = None
) -> None:
    """In the run, before the upload: refuse an edit that `/v1/models` says its model
    cannot make (waiting for the list as long as the run may, unlike `ignored_in`)."""
    refusal = edit_refusal(await image_models(settings, host, via), request)
    if refusal is not None:
        raise OptionError(refusal)


def _flag(field: str) -> str:
    option = REQUEST_FIELDS.get(field)
    return option.flag if option is not None and option.flags else repr(field)
