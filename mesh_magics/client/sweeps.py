"""Sweeps: many runs on the road of `prepare.py` (settings -> request -> runs -> results),
one per combination of prompts and swept values, at a bounded concurrency.

    s = mm.sweep(["A fox", "An owl"], model=["openai/gpt-image-1", "vertex/imagen-3"], seed=[1, 2])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..results.image_sweep import sweep_error
from ..schema import SETTINGS, check, check_image_count
from ..settings import client_settings, configured
from ..views.sweep_progress import sweep_view
from .prepare import (
    edit_inputs_of_call,
    operation_of,
    prepare,
    prompt_of,
    request_fields,
    running_shell,
    settings_of_call,
    show_in_notebook,
    stream_of_call,
)

if TYPE_CHECKING:
    from ..engine.generation import Generation
    from ..inputs import InputImage
    from ..results.image_sweep import ImageSweep


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
    inputs: tuple[InputImage, ...] = (),
) -> tuple[ImageSweep, list[Generation]]:
    """A sweep, ready to start: one `SweepRun` and one `Generation` per combination of
    `prompts` and the `swept` values (fields and swept values already checked), at most
    `concurrency` in flight per API host. Its `retry()` runs the failed ones again,
    blocking, with their own progress view."""
    from ..engine.sweeps import plan
    from ..results.image_sweep import ImageSweep, SweepRun, label_of
    from ..schema import SWEEPABLE

    config = configured() if config is None else config
    limit = concurrency or config["concurrency"]
    swept_names = [name for name in SWEEPABLE if name in swept]

    def generations_for(runs: list[SweepRun], replay: bool | None) -> list[Generation]:
        from ..engine.sweeps import in_flight_limit
        from ..http.client import SharedClient

        settings = client_settings(config, base_url)  # once: every run goes to the same API
        slot = in_flight_limit(limit)
        client = SharedClient(settings, len(runs))  # one connection pool for the sweep
        made = []
        for sweep_run in runs:
            run = prepare(
                sweep_run.prompt,
                {**fields, **sweep_run.params},
                config=config,
                timeout=timeout,
                stream=stream,
                replay=replay,
                cell=cell,
                settings=settings,
                inputs=inputs,
            )
            run.slot = slot
            run.client = client
            run.add_done_callback(client.release)
            made.append(run)
        return made

    def retry(failed: list[SweepRun]) -> ImageSweep:
        from ..engine.sweeps import run_sweep_blocking

        again = [SweepRun(r.prompt, dict(r.params), r.label) for r in failed]
        sweep = ImageSweep(again, swept=swept_names, retry=retry)
        generations = generations_for(again, False)  # a retry asks anew
        view = sweep_view(sweep, progress or config["progress"], running_shell(), generations)
        return run_sweep_blocking(sweep, generations, view)

    runs = [
        SweepRun(prompt, values, label_of(values)) for prompt, values in plan(prompts, dict(swept))
    ]
    return ImageSweep(runs, swept=swept_names, retry=retry), generations_for(runs, replay)


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
    stream: bool = True,
    raise_errors: bool = True,
    params: Mapping[str, Any] | None = None,
    edit: Any = None,
    mask: Any = None,
    **fields: Any,
) -> ImageSweep:
    """Every combination of `prompts` and the list-valued fields (`model`, `size`,
    `quality`, `seed`, `output_format`, `background`, `moderation`), run concurrently;
    the `ImageSweep`. More than `max_images_per_cell` images is an error before anything
    is sent, unless `yes=True`.

    When runs fail, the sweep is shown (in a notebook) and `SweepError` is raised; it
    carries the sweep as `.sweep`, whose `.retry()` runs the failed ones again.
    `raise_errors=False` returns the sweep instead (see `.failed`). Ctrl-C raises
    `RunInterrupted`, a `KeyboardInterrupt`, with the finished runs as `.partial`.

    `background=True` returns the sweep at once as a handle (`status`, `cancel()`,
    `wait()`, `result(timeout)`); in a notebook its progress and grid land in the cell.

    `edit` (and `mask`): every run edits these images, as `mm.edit()` takes them; e.g.
    `mm.sweep("At night", edit=fox, model=["openai/gpt-image-1", "local/sketch"])`."""
    from ..engine.lifecycle import Delivery, deliver
    from ..engine.sweeps import run_sweep_blocking
    from ..schema import SWEEPABLE

    if isinstance(background, str | list):  # the API's field, not the way to run
        fields["background"], background = background, False
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise OptionError("no prompts: give at least one prompt to sweep")
    swept = {name: fields.pop(name) for name in list(fields) if name in SWEEPABLE and
             isinstance(fields[name], list | tuple)}  # fmt: skip
    for name, values in swept.items():
        if not values:
            raise OptionError(f"{name}: an empty list sweeps nothing; give at least one value")
    checked_swept = {
        name: [request_fields({name: value}, None)[name] for value in values]
        for name, values in swept.items()
    }
    base_url, timeout, progress = settings_of_call(base_url, timeout, progress)
    if concurrency is not None:
        concurrency = check(SETTINGS["concurrency"], concurrency, source="concurrency")
    config = configured()
    inputs: tuple[InputImage, ...] = ()
    if edit is not None:
        inputs = edit_inputs_of_call(edit, mask, limit=config["max_input_image_bytes"])
    elif mask is not None:
        raise OptionError("mask goes with edit=: the images it masks")
    made, generations = prepare_sweep(
        [prompt_of(text, operation_of(fields, inputs)) for text in texts],
        request_fields(fields, params),
        checked_swept,
        config=config,
        base_url=base_url,
        timeout=timeout,
        concurrency=concurrency,
        progress=progress,
        stream=stream_of_call(stream),
        replay=replay,
        inputs=inputs,
    )
    images = sum(run.request.n for run in generations)
    check_image_count(images, len(generations), config, allow=yes)
    shell = running_shell()
    if background:
        if shell is not None:
            from ..views.in_cell import start_sweep_in_cell

            return start_sweep_in_cell(made, generations, shell, progress)
        for sweep_run, run in zip(made.runs, generations, strict=True):
            sweep_run.run = run.start()
        return made
    run_sweep_blocking(made, generations, sweep_view(made, progress, shell, generations))
    failure = sweep_error(made) if made.failed and raise_errors else None
    deliver(made, Delivery(show=show_in_notebook), failure=failure, returns=True)
    return made
