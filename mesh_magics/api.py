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

from .errors import MeshError, OptionError
from .request import build_request
from .run.generation import Generation
from .run.wait import run_blocking
from .schema import REQUEST_FIELDS, SETTINGS, check
from .settings import ClientSettings, client_settings, configured

if TYPE_CHECKING:
    from .events import StreamEvent
    from .results.history import History
    from .results.result import ImageResult
    from .results.sweep import ImageSweep
    from .results.usage import UsageReport
    from .views.base import ProgressView
    from .views.sweep import SweepView

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
) -> Generation:
    """A run of `prompt` with `fields` (already checked), ready to start. Every check that
    needs no network happens here, before anything is sent.

    `replay`: True (`--replay`) answers from the store when it holds the same request,
    False (`--fresh`) never does, None follows `MeshImageMagics.replay` or
    `MESHAPI_REPLAY=1`."""
    from .store import open_store

    config = configured() if config is None else config
    request = build_request(
        prompt,
        fields,
        defaults(config, exclude=fields),
        stream=stream,
        max_input_image_bytes=config["max_input_image_bytes"],
    )
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
        elif name in ("prompt", "stream"):
            raise OptionError(f"params: {name!r} is not a parameter here")
        else:
            checked[name] = value
    for name, value in checked.items():  # NaN or an object would fail later, in the run
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise OptionError(
                f"{name}: invalid value {value!r}; expected JSON with finite numbers"
            ) from None
    return checked


def _prompt(prompt: Any) -> str:
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


# -- the functions -----------------------------------------------------------------------------


def generate(
    prompt: str,
    *,
    background: bool | str = False,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    replay: bool | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageResult | Generation:
    """Generate images for `prompt`; block until they are here and return the
    `ImageResult`. `background=True` returns a `Generation` handle at once instead (in a
    notebook its progress and images land in the running cell's output; where nothing
    could show them later, it waits before returning, so a saved notebook holds them).

    `background` is also the name of a request field: a string (`"transparent"`,
    `"opaque"`, `"auto"`) is that field, `True`/`False` the way to run. For both, pass
    the field in `params={"background": "transparent"}`."""
    if isinstance(background, str):  # the API's field (transparent, opaque, auto)
        fields["background"], background = background, False
    base_url, timeout, progress = _settings_of_call(base_url, timeout, progress)
    run = prepare(
        _prompt(prompt),
        request_fields(fields, params),
        base_url=base_url,
        timeout=timeout,
        replay=replay,
    )
    shell = _running_shell()
    if background:
        if shell is not None:
            from .ipython.background import start_in_cell

            return start_in_cell(run, shell, progress)
        return run.start()
    return run_blocking(run, _view(run, progress, shell))


async def agenerate(
    prompt: str,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    replay: bool | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageResult:
    """`generate()` for asyncio code (a notebook's top-level `await` included). The work
    runs on the package's own loop thread; this coroutine only waits for it, so the
    caller's loop stays free. Cancelling it cancels the run."""
    base_url, timeout, progress = _settings_of_call(base_url, timeout, progress)
    run = prepare(
        _prompt(prompt),
        request_fields(fields, params),
        base_url=base_url,
        timeout=timeout,
        replay=replay,
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


# -- history and usage ------------------------------------------------------------------------


def history(
    text: str | None = None, limit: int = 20, *, config: Mapping[str, Any] | None = None
) -> History:
    """The latest stored generations, newest first, filtered by `text` (in the prompt, the
    model or the request id); each an `ImageResult` whose images load when touched."""
    from .results.history import History
    from .store import open_store

    store = open_store(configured() if config is None else config)
    return History(store.history(text, limit) if store is not None else [])


def usage_prices(settings: ClientSettings, models: set[str]) -> dict[str, float | None]:
    """The per-image price of each of `models` that `/v1/models` gives (None: no price,
    or the list could not be had)."""
    from .http.client import fetch_models
    from .run.usage import price_per_image
    from .run.wait import call

    try:
        listed = call(fetch_models(settings), "asking for prices")
    except MeshError:
        listed = []
    by_id = {str(m.get("id")): m for m in listed}
    return {model: price_per_image(by_id.get(model)) for model in models}


def usage_report(*, config: Mapping[str, Any] | None = None) -> UsageReport:
    """This session's requests, images and replays per model, with an estimated cost where
    `/v1/models` gives a per-image price (asked once per API host)."""
    from .results.usage import UsageReport
    from .run.usage import session_usage

    config = configured() if config is None else config
    lines = session_usage().lines()
    prices: dict[str, float | None] = {}
    for host in {line.api_host for line in lines}:
        models = {line.model for line in lines if line.api_host == host}
        for model, price in usage_prices(client_settings(config, host), models).items():
            if prices.get(model) is None:  # a host without a price hides no other's
                prices[model] = price
    return UsageReport(lines, prices)


# -- sweeps ------------------------------------------------------------------------------------


def prepare_sweep(
    prompts: list[str],
    fields: Mapping[str, Any],
    swept: Mapping[str, list[Any]],
    *,
    config: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    stream: bool = True,
    replay: bool | None = None,
    cell: str | None = None,
    concurrency: int | None = None,
    progress: str | None = None,
) -> tuple[ImageSweep, list[Generation]]:
    """A sweep, ready to start: one `SweepRun` and one `Generation` per combination of
    `prompts` and the `swept` values (fields and swept values already checked), at most
    `concurrency` in flight per API host. Its `retry()` runs the failed ones again,
    blocking, with their own progress view."""
    from .results.sweep import ImageSweep, SweepRun, label_of
    from .run.sweep import SWEPT_ORDER, plan

    config = configured() if config is None else config
    limit = concurrency or config["concurrency"]
    swept_names = [name for name in SWEPT_ORDER if name in swept]

    def generations_for(runs: list[SweepRun], replay: bool | None) -> list[Generation]:
        from .http.hosts import host_of
        from .run.sweep import HostSlots

        slots = HostSlots(limit)
        made = []
        for sweep_run in runs:
            run = prepare(
                sweep_run.prompt,
                {**fields, **sweep_run.params},
                config=config,
                base_url=base_url,
                timeout=timeout,
                stream=stream,
                replay=replay,
                cell=cell,
            )
            run.slot = slots.for_host(host_of(run.settings.base_url))
            made.append(run)
        return made

    def retry(failed: list[SweepRun]) -> ImageSweep:
        from .run.sweep import run_sweep_blocking

        again = [SweepRun(r.prompt, dict(r.params), r.label) for r in failed]
        sweep = ImageSweep(again, swept=swept_names, retry=retry)
        generations = generations_for(again, False)  # a retry asks anew
        view = _sweep_view(sweep, progress or config["progress"], _running_shell(), generations)
        return run_sweep_blocking(sweep, generations, view)

    runs = [
        SweepRun(prompt, values, label_of(values)) for prompt, values in plan(prompts, dict(swept))
    ]
    return ImageSweep(runs, swept=swept_names, retry=retry), generations_for(runs, replay)


def _sweep_view(
    sweep: ImageSweep,
    progress: str,
    shell: Any,
    generations: list[Generation] | None = None,
    on_cancel: Callable[[], object] | None = None,
) -> SweepView:
    from .views.sweep import make_sweep_view

    images = sum(run.request.n for run in generations or [])
    heading = f"sweep · {len(sweep.runs)} runs" + (f" · {images} images" if images else "")
    labels = [f"{r.label} · {r.prompt[:40]}" for r in sweep.runs]
    return make_sweep_view(heading, labels, progress, shell, on_cancel=on_cancel)


def sweep(
    prompts: str | list[str],
    *,
    background: bool | str = False,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: str = "auto",
    concurrency: int | None = None,
    yes: bool = False,
    replay: bool | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ImageSweep:
    """Every combination of `prompts` and the list-valued fields (`model`, `size`,
    `quality`, `seed`, `output_format`, `background`, `moderation`), run concurrently;
    the `ImageSweep`. Failed runs don't raise: see `.failed`, `.retry()`. More than
    `max_images_per_cell` images is an error before anything is sent, unless `yes=True`."""
    from .ipython.cell import SWEEPABLE
    from .run.sweep import run_sweep_blocking

    if isinstance(background, str | list):  # the API's field, not the way to run
        fields["background"], background = background, False
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    swept = {name: fields.pop(name) for name in list(fields) if name in SWEEPABLE and
             isinstance(fields[name], list | tuple)}  # fmt: skip
    checked_swept = {
        name: [request_fields({name: value}, None)[name] for value in values]
        for name, values in swept.items()
    }
    base_url, timeout, progress = _settings_of_call(base_url, timeout, progress)
    if concurrency is not None:
        concurrency = check(SETTINGS["concurrency"], concurrency, source="concurrency")
    config = configured()
    made, generations = prepare_sweep(
        [_prompt(text) for text in texts],
        request_fields(fields, params),
        checked_swept,
        config=config,
        base_url=base_url,
        timeout=timeout,
        concurrency=concurrency,
        progress=progress,
        replay=replay,
    )
    check_image_count(made, generations, config, allow=yes)
    shell = _running_shell()
    if background and shell is not None:
        from .ipython.background import start_sweep_in_cell

        return start_sweep_in_cell(made, generations, shell, progress)
    return run_sweep_blocking(made, generations, _sweep_view(made, progress, shell, generations))


def check_image_count(
    sweep: ImageSweep, generations: list[Generation], config: Mapping[str, Any], *, allow: bool
) -> int:
    """The number of images a sweep would make; more than `max_images_per_cell` is an
    error before anything is sent, unless `allow` (`--yes`)."""
    count = sum(run.request.n for run in generations)
    limit = config["max_images_per_cell"]
    if count > limit and not allow:
        raise OptionError(
            f"this would make {count} images in {len(generations)} runs, more than "
            f"MeshImageMagics.max_images_per_cell ({limit}); add --yes to go ahead"
        )
    return count
