"""The function API, and the one road every front end takes to a run:
settings (environment and `%config`) -> request -> `Generation` -> result.

    import mesh_magics as mm
    r = mm.generate("A fox", size="1024x1024", n=2)            # blocks, shows progress
    r = await mm.agenerate("A fox", quality="high")            # any asyncio program
    h = mm.generate("A fox", background=True)                  # a Generation handle

Keyword arguments are the request fields, checked exactly like the magic's options (a bad
value is an `OptionError`, also a `ValueError`); `params={...}` passes any other field,
like `-p`. `replay=True` answers from the store like `--replay`, `False` asks anew like
`--fresh`, None follows the settings. Works in a plain script: nothing here imports
IPython or ipywidgets unless IPython is already running.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import IncompleteResultError, OptionError
from .request import build_edit_request, build_request
from .run.generation import Generation
from .run.lifecycle import Delivery, deliver
from .run.wait import run_blocking
from .schema import (
    MAX_JSON_DEPTH,
    PROMPTLESS,
    REQUEST_FIELDS,
    SETTINGS,
    STREAM,
    check,
    check_conflicts,
    not_too_deep,
    shown,
)
from .settings import ClientSettings, client_settings, configured

if TYPE_CHECKING:
    from .events import StreamEvent
    from .inputs import InputImage
    from .results.result import ImageResult
    from .views.base import ProgressView

REQUEST_DEFAULTS = ("model", "size", "quality", "n")  # settings that are request fields


# -- the road -------------------------------------------------------------------------------


def defaults(config: Mapping[str, Any], exclude: Any = ()) -> dict[str, Any]:
    """The request fields the configuration sets, checked again (a profile may have set
    them before validation could run). Fields in `exclude` are the caller's own, so a
    broken default never stands in the way of an explicit value."""
    return {
        name: check(SETTINGS[name], config[name], source=f"MeshImageMagics.{name}")
        for name in REQUEST_DEFAULTS
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
) -> Generation:
    """A run of `prompt` with `fields` (already checked), ready to start. Every check that
    needs no network happens here, before anything is sent. `settings`: where it goes,
    when the caller has resolved that already (a sweep does, once for all its runs).
    `inputs`: an edit's images (`inputs.edit_inputs`), sent to `/v1/images/edits`.

    `replay`: True (`--replay`) answers from the store when it holds the same request,
    False (`--fresh`) never does, None follows `MeshImageMagics.replay` or
    `MESHAPI_REPLAY=1`."""
    from .store import open_store

    config = configured() if config is None else config
    check_conflicts(fields, as_flags=cell is not None)  # each run of a sweep, too
    if inputs:
        request = build_edit_request(prompt, fields, defaults(config, exclude=fields), inputs)
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
        replay = bool(config.get("replay")) or os.environ.get("MESHAPI_REPLAY") == "1"
    return Generation(
        request,
        settings,
        timeout=timeout if timeout is not None else config.get("timeout"),
        preview_max_px=config["preview_max_px"],
        store=open_store(config),
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


def _prompt(prompt: Any, operation: str | None = None) -> str:
    """The prompt; an edit whose operation needs none (`operation`) may leave it empty."""
    if operation in PROMPTLESS and prompt in ("", None):
        return ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise OptionError(f"no prompt: give the text to draw, not {prompt!r}")
    return prompt


def _settings_of_call(
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


def _call(
    prompt: Any,
    fields: Mapping[str, Any],
    params: Mapping[str, Any] | None,
    base_url: str | None,
    timeout: float | None,
    progress: str,
    replay: bool | None,
    edit: tuple[Any, Any] | None = None,
    stream: Any = True,
) -> tuple[Generation, str]:
    """The run a function call asks for, every argument checked; and its progress mode.
    `edit`: the images and mask of an edit, as given."""
    base_url, timeout, progress = _settings_of_call(base_url, timeout, progress)
    fields = request_fields(fields, params)
    config = configured()
    limit = config["max_input_image_bytes"]
    inputs = () if edit is None else edit_inputs_of_call(*edit, limit=limit)
    run = prepare(
        _prompt(prompt, operation_of(fields, inputs)),
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
    from .inputs import Source, edit_inputs

    given = list(images) if isinstance(images, list | tuple) else [images]
    namer = _namer()
    sources = [
        Source(value, f"images[{i}]" if len(given) > 1 else "images", namer(value))
        for i, value in enumerate(given)
    ]
    masked = None if mask is None else Source(mask, "mask", namer(mask))
    return edit_inputs(sources, masked, limit=limit)


def _namer() -> Callable[[Any], str | None]:
    """The name of a value in the running notebook's namespace (`fox`, `fox[0]` for an
    image of a result named fox), else its file name, else None."""
    from .results.result import ImageResult

    shell = _running_shell()
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


# -- the functions -----------------------------------------------------------------------------


def generate(
    prompt: str,
    *,
    background: bool | str = False,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    replay: bool | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageResult | Generation:
    """Generate images for `prompt`; block until they are here and return the
    `ImageResult`. `background=True` returns a `Generation` handle at once instead (in a
    notebook its progress and images land in the running cell's output; where nothing
    could show them later, it waits before returning, so a saved notebook holds them).

    `background` is also the name of a request field: a string (`"transparent"`,
    `"opaque"`, `"auto"`) is that field, `True`/`False` the way to run. For both, pass
    the field in `params={"background": "transparent"}`. `stream=False` asks with one
    plain request instead of a stream of events (the magic's `--no-stream`)."""
    if isinstance(background, str):  # the API's field (transparent, opaque, auto)
        fields["background"], background = background, False
    run, progress = _call(
        prompt, fields, params, base_url, timeout, progress, replay, stream=stream
    )
    return _go(run, progress, background=bool(background))


def edit(
    images: Any,
    prompt: str = "",
    mask: Any = None,
    *,
    background: bool | str = False,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    replay: bool | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageResult | Generation:
    """Edit images through `/v1/images/edits`; block until the result is here and return
    it (`background=True`: a `Generation` handle at once, as `generate()`).

    `images`: one SOURCE or a list of them (at most 16 images in all): an `ImageResult`
    (all its images), one of its images (`result[0]`), a PIL image, bytes, a path or a
    `data:` URL. The first image is edited, the others are references. `mask`: a PNG
    with an alpha channel at the first image's size; its transparent pixels mark what to
    change. Fields are the edit's: `operation` ("edit", "inpaint", "outpaint", "mix",
    "reframe", "upscale", "remove_background"), `upscale_factor`, `expand_factor`,
    `mask_feather`, `model`, `n`, `size`, ... Every input is checked before anything is
    sent; the result records each input's hash and name (`result.inputs`) and finds the
    stored results they came from (`result.parents`)."""
    if isinstance(background, str):
        fields["background"], background = background, False
    run, progress = _call(
        prompt, fields, params, base_url, timeout, progress, replay, edit=(images, mask)
    )
    return _go(run, progress, background=bool(background))


def _go(run: Generation, progress: str, *, background: bool) -> ImageResult | Generation:
    """Start `run` in the background (in the running cell, if there is one), or run it
    with a progress view and return its result."""
    shell = _running_shell()
    if background:
        if shell is not None:
            from .ipython.background import start_in_cell

            return start_in_cell(run, shell, progress)
        return run.start()
    try:
        return run_blocking(run, _view(run, progress, shell))
    except IncompleteResultError as exc:  # billed images are kept and shown, then raised
        deliver(exc.result, Delivery(show=_show_in_notebook), failure=exc, returns=True)
        raise


def _show_in_notebook(value: Any) -> None:
    """Display `value` where a notebook shows it: a function's value is shown by its cell
    only when the call returns, so one that is about to raise is shown here."""
    if _running_shell() is not None:
        from IPython.display import display

        display(value)


async def agenerate(
    prompt: str,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    replay: bool | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageResult:
    """`generate()` for asyncio code (a notebook's top-level `await` included). The work
    runs on the package's own loop thread; this coroutine only waits for it, so the
    caller's loop stays free. Cancelling it cancels the run."""
    run, progress = _call(
        prompt, fields, params, base_url, timeout, progress, replay, stream=stream
    )
    view = _view(run, progress, _running_shell())
    run.watch(_LoopWatcher(asyncio.get_running_loop(), view))
    view.start()
    run.start()
    try:
        result = await asyncio.wrap_future(run.future)
    except asyncio.CancelledError:
        run.cancel()
        view.fail(f"cancelled after {run.elapsed:.1f} s")
        raise
    except BaseException:
        view.fail(f"failed after {run.elapsed:.1f} s")
        raise
    view.finish(result.summary())
    return result


class _LoopWatcher:
    """Hands a run's events to the awaiting loop, in the awaiting code's context (so a
    notebook cell's view updates land in that cell)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, view: ProgressView) -> None:
        self._loop = loop
        self._view = view
        self._context = contextvars.copy_context()

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args, context=self._context)

    def event(self, event: StreamEvent) -> None:
        self._call(self._view.update, event)

    def tick(self, elapsed: float) -> None:
        self._call(self._view.tick, elapsed)

    def ended(self, run: Generation) -> None:
        pass  # agenerate() finishes the view itself, on its own loop


def _running_shell() -> Any:
    """The running IPython shell, without importing IPython when it is not loaded."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _view(run: Generation, progress: str, shell: Any) -> ProgressView:
    from .views import make_view

    return make_view(run.heading, progress, shell)
