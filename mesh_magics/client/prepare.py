"""The one road every front end takes to a run, and the checks on the way:
settings (environment and `%config`) -> request -> `Generation`.

`prepare()` makes a run ready to start; the function API (`functions.py`), sweeps
(`sweeps.py`), the magic and the form all call it. Keyword arguments are checked exactly
like the magic's options (a bad value is an `OptionError`, also a `ValueError`).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..engine.generation import Generation
from ..errors import OptionError
from ..frontends import in_marimo
from ..request import build_edit_request, build_request
from ..schema import (
    REQUEST_FIELDS,
    SETTINGS,
    STREAM,
    check,
    check_conflicts,
    check_prompt,
    shown,
)
from ..settings import ClientSettings, client_settings, configured, replay_by_default
from ..value_kinds import MAX_JSON_DEPTH, not_too_deep

if TYPE_CHECKING:
    from ..inputs import InputImage
    from ..store import Store
    from ..views.base import ProgressView


# -- the road -------------------------------------------------------------------------------


def defaults(config: Mapping[str, Any], exclude: Any = ()) -> dict[str, Any]:
    """The request fields the configuration sets, checked again (a profile may have set
    them before validation could run). Fields in `exclude` are the caller's own, so a
    broken default never stands in the way of an explicit value."""
    return {
        name: check(SETTINGS[name], config[name], source=f"MeshImageMagics.{name}")
        for name in REQUEST_FIELDS
        if name in SETTINGS  # a setting that is also a request field is its default
        if name not in exclude and config.get(name) is not None
    }


def prepare(
    prompt: str,
    fields: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    stream: bool = True,
    replay: bool | None = None,
    cell: str | None = None,
    settings: ClientSettings | None = None,
    inputs: tuple[InputImage, ...] = (),
    store: Store | None = None,
    notes: bool = True,
) -> Generation:
    """A run of `prompt` with `fields` (already checked), ready to start. Every check that
    needs no network happens here, before anything is sent. `settings`, `store`: where it
    goes and where it is kept, when the caller has resolved them already (a sweep does,
    once for all its runs). `inputs`: an edit's images (`inputs.edit_inputs`), sent to
    `/v1/images/edits`. `notes=False`: an edit's notes on fields its operation ignores are
    not said (a sweep says them once).

    `replay`: True (`--replay`) answers from the store when it holds the same request,
    False (`--fresh`) never does, None follows `MeshImageMagics.replay` or
    `MESHAPI_REPLAY=1`, and is on in marimo (`settings.replay_by_default`)."""
    from ..store import open_store

    config = configured() if config is None else config
    check_conflicts(fields, as_flags=cell is not None)  # each run of a sweep, too
    if inputs:
        request = build_edit_request(
            prompt, fields, defaults(config, exclude=fields), inputs, notes=notes
        )
    else:
        request = build_request(
            prompt,
            fields,
            defaults(config, exclude=fields),
            stream=stream,
            max_input_image_bytes=config["max_input_image_bytes"],
        )
    if settings is None:
        settings = client_settings(config, base_url)
    if replay is None:
        replay = replay_by_default(config)
    return Generation(
        request,
        settings,
        timeout=timeout if timeout is not None else config.get("timeout"),
        preview_max_px=config["preview_max_px"],
        store=store if store is not None else open_store(config),
        replay=replay,
        cell=cell,
    )


# -- checking keyword arguments like options --------------------------------------------------


def request_fields(fields: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """`fields` checked as the options check them; `params` are other fields, sent as given
    (a known field among them is checked too)."""
    checked: dict[str, Any] = {}
    for name, value in {**(params or {}), **fields}.items():
        option = REQUEST_FIELDS.get(name)
        if option is not None:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            checked[name] = check(option, value, source=name)
        elif name in fields:
            close = difflib.get_close_matches(name, REQUEST_FIELDS, 1, 0.75)
            hint = f"did you mean {close[0]}? " if close else ""
            raise OptionError(
                f"unknown field {name!r}: {hint}pass fields the API knows but this package "
                "does not in params={...}"
            )
        elif name == "stream":
            raise OptionError("params: 'stream' is an argument of its own: pass stream=False")
        elif name == "prompt":
            raise OptionError("params: 'prompt' is not a parameter here")
        else:
            checked[name] = value
    for name, value in checked.items():  # NaN or an object would fail later, in the run
        try:
            json.dumps(not_too_deep(value), allow_nan=False)
        except (TypeError, ValueError):
            raise OptionError(
                f"{name}: invalid value {shown(value)}; expected JSON with finite "
                f"numbers, nested at most {MAX_JSON_DEPTH} levels"
            ) from None
    return checked


def operation_of(fields: Mapping[str, Any], inputs: tuple[InputImage, ...]) -> str | None:
    """What an edit does (`edit` unless `operation` says otherwise); None for a generation."""
    return str(fields.get("operation", "edit")) if inputs else None


def prompt_of(prompt: Any, operation: str | None = None) -> str:
    """The prompt, checked by the one rule (`schema.prompt_problem`)."""
    return check_prompt(prompt, operation)


def settings_of_call(
    base_url: str | None, timeout: float | None, progress: str
) -> tuple[str | None, float | None, str]:
    return (
        check(SETTINGS["base_url"], base_url, source="base_url"),
        check(SETTINGS["timeout"], timeout, source="timeout"),
        check(SETTINGS["progress"], progress, source="progress"),
    )


def stream_of_call(stream: Any) -> bool:
    """`stream=` checked as `-p stream=` is: True streams (SSE), False is a plain request."""
    return bool(check(STREAM, stream, source="stream"))


def prepare_call(
    prompt: Any,
    fields: Mapping[str, Any],
    params: Mapping[str, Any] | None,
    base_url: str | None,
    timeout: float | None,
    progress: str,
    replay: bool | None,
    edit: tuple[Any, Any] | None = None,
    stream: Any = True,
    config: Mapping[str, Any] | None = None,
) -> tuple[Generation, str]:
    """The run a function call asks for, every argument checked; and its progress mode.
    `edit`: the images and mask of an edit, as given. `config`: the settings (a client's;
    default: `%config` and the environment)."""
    base_url, timeout, progress = settings_of_call(base_url, timeout, progress)
    fields = request_fields(fields, params)
    config = configured() if config is None else config
    limit = config["max_input_image_bytes"]
    inputs = () if edit is None else edit_inputs_of_call(*edit, limit=limit)
    run = prepare(
        prompt_of(prompt, operation_of(fields, inputs)),
        fields,
        config=config,
        base_url=base_url,
        timeout=timeout,
        stream=stream_of_call(stream),
        replay=replay,
        inputs=inputs,
    )
    return run, progress


def edit_inputs_of_call(images: Any, mask: Any, *, limit: int) -> tuple[InputImage, ...]:
    """`mm.edit()`'s images and mask read and checked; each named after the variable that
    holds it in a notebook, where there is one."""
    from ..inputs import Source, edit_inputs

    given = list(images) if isinstance(images, list | tuple) else [images]
    name_of = namer()
    sources = [
        Source(value, f"images[{i}]" if len(given) > 1 else "images", name_of(value))
        for i, value in enumerate(given)
    ]
    masked = None if mask is None else Source(mask, "mask", name_of(mask))
    return edit_inputs(sources, masked, limit=limit)


def namer() -> Callable[[Any], str | None]:
    """The name of a value in the running notebook's namespace (`fox`, `fox[0]` for an
    image of a result named fox), else its file name, else None."""
    from ..results.result import ImageResult

    shell = running_shell()
    namespace = getattr(shell, "user_ns", None) or {}
    named = [(k, v) for k, v in namespace.items() if not k.startswith("_")]

    def name_of(value: Any) -> str | None:
        for key, held in named:
            if held is value:
                return key
            if isinstance(held, ImageResult) and (index := held.position_of(value)) is not None:
                return f"{key}[{index}]"
        if isinstance(value, str) and not value.startswith("data:"):
            return value
        return os.fspath(value) if isinstance(value, os.PathLike) else None

    return name_of


def show_in_notebook(value: Any) -> bool:
    """Display `value` where a notebook shows it: a function's value is shown by its cell
    only when the call returns, so one that is about to raise is shown here. True if it
    was shown (there was a notebook: marimo or IPython)."""
    if in_marimo():
        from ..views.marimo import show_in_marimo

        show_in_marimo(value)
    elif running_shell() is not None:
        from IPython.display import display

        display(value)
    else:
        return False
    return True


def running_shell() -> Any:
    """The running IPython shell, without importing IPython when it is not loaded."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def progress_view(run: Generation, progress: str, shell: Any) -> ProgressView:
    from ..views import make_view

    return make_view(run.heading, progress, shell)
