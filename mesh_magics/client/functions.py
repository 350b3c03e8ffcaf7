"""The function API: `generate`, `agenerate` and `edit`, over the road of `prepare.py`.

    import mesh_magics as mm
    r = mm.generate("A fox", size="1024x1024", n=2)            # blocks, shows progress
    r = await mm.agenerate("A fox", quality="high")            # any asyncio program
    h = mm.generate("A fox", background=True)                  # a Generation handle

Keyword arguments are the request fields, checked exactly like the magic's options;
`params={...}` passes any other field, like `-p`. `replay=True` answers from the store
like `--replay`, `False` asks anew like `--fresh`, None follows the settings. Works in a
plain script: nothing here imports IPython or ipywidgets unless IPython is running.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..engine.generation import Generation
from ..engine.lifecycle import Delivery, deliver
from ..engine.wait import run_blocking
from ..errors import IncompleteResultError
from .prepare import prepare_call, progress_view, running_shell, show_in_notebook

if TYPE_CHECKING:
    from ..events import StreamEvent
    from ..results.result import ImageResult
    from ..views.base import ProgressView


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
    run, progress = prepare_call(
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
    run, progress = prepare_call(
        prompt, fields, params, base_url, timeout, progress, replay, edit=(images, mask)
    )
    return _go(run, progress, background=bool(background))


def _go(run: Generation, progress: str, *, background: bool) -> ImageResult | Generation:
    """Start `run` in the background (in the running cell, if there is one), or run it
    with a progress view and return its result."""
    shell = running_shell()
    if background:
        if shell is not None:
            from ..views.in_cell import start_in_cell

            return start_in_cell(run, shell, progress)
        return run.start()
    try:
        return run_blocking(run, progress_view(run, progress, shell))
    except IncompleteResultError as exc:  # billed images are kept and shown, then raised
        deliver(exc.result, Delivery(show=show_in_notebook), failure=exc, returns=True)
        raise


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
    run, progress = prepare_call(
        prompt, fields, params, base_url, timeout, progress, replay, stream=stream
    )
    view = progress_view(run, progress, running_shell())
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
