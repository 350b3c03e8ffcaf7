"""Sweeps: many runs on the road of `prepare.py` (settings -> request -> runs -> results),
one per combination of prompts and swept values, or one per row of a table, at a bounded
concurrency.

    s = mm.sweep(["A fox", "An owl"], model=["openai/gpt-image-1", "vertex/imagen-3"], seed=[1, 2])
    s = mm.sweep([{"prompt": "A fox", "seed": 1}, {"prompt": "An owl", "size": "512x512"}])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OptionError, warn_caller
from ..schema import SETTINGS, SWEEPABLE, check, check_image_count
from ..settings import client_settings, configured, replay_by_default
from ..tables import check_rows, columns_of, is_table
from ..views import sweep_view
from .prepare import (
    edit_inputs_of_call,
    operation_of,
    prepare,
    prompt_of,
    request_fields,
    running_shell,
    settings_of_call,
    stream_of_call,
)

if TYPE_CHECKING:
    from ..http.client import SharedClient
    from ..settings import ClientSettings

    Pool = Callable[[ClientSettings], SharedClient | None]
    from ..engine.generation import Generation
    from ..engine.sweeps import SweepPlan
    from ..inputs import InputImage
    from ..results.image_sweep import ImageSweep, SweepRun


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
    pool: Pool | None = None,
    rows: list[tuple[str, dict[str, Any]]] | None = None,
) -> tuple[ImageSweep, SweepPlan]:
    """A sweep, ready to start: one `SweepRun` per combination of `prompts` and the
    `swept` values (fields and swept values already checked), or per row of a table
    (`rows`: each a prompt and its own fields, checked; they win over `fields`), each
    checked as its run would be; and its `SweepPlan`, which makes each run's `Generation`
    as it starts, at most `concurrency` in flight per API host. Nothing is sent, and
    nothing per run is made but its `SweepRun`: planning 10,000 runs takes a fraction of a
    second. Its `retry()` runs the failed ones again, blocking, with their own progress
    view."""
    from ..engine.sweeps import plan
    from ..results.image_sweep import ImageSweep, SweepRun, label_of
    from ..schema import SWEEPABLE

    config = configured() if config is None else config
    if replay is None:  # here, on the caller's thread: marimo's context is per thread, and
        replay = replay_by_default(config)  # later runs are made on the engine's
    limit = concurrency or config["concurrency"]
    by_row = rows is not None
    swept_names = columns_of(rows) if rows is not None else [n for n in SWEEPABLE if n in swept]
    checked = _RunChecks(fields, inputs, config, as_flags=cell is not None, by_row=by_row)

    def plan_for(runs: list[SweepRun], replay: bool) -> SweepPlan:
        from ..engine.sweeps import SweepPlan, in_flight_limit
        from ..http.client import SharedClient
        from ..store import open_store

        settings = client_settings(config, base_url)  # once: every run goes to the same API
        store = open_store(config)  # once, not once a run
        slot = in_flight_limit(limit)
        # One connection pool for the sweep: the caller's (a Client's), else its own,
        # closed once every run has ended.
        client = (pool(settings) if pool is not None else None) or SharedClient(settings, 1)
        by_model = checked.images_by_model(runs)

        def make(index: int) -> Generation:
            sweep_run = runs[index]
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
                store=store,
                notes=False,  # said once, when the sweep was checked
            )
            run.slot = slot
            run.client = client
            run.keep_bytes = False  # once stored, its result reads its images from the store
            return run

        return SweepPlan(
            make=make,
            settings=settings,
            images=sum(by_model.values()),
            images_by_model=by_model,
            window=2 * limit,
            images_of=checked.images_of,
            finish=client.release,
        )

    def retry(failed: list[SweepRun]) -> ImageSweep:
        from ..engine.sweeps import run_sweep_blocking

        again = [SweepRun(r.prompt, dict(r.params), r.label) for r in failed]
        sweep = ImageSweep(again, swept=swept_names, retry=retry, by_row=by_row)
        planned = plan_for(again, False)  # a retry asks anew
        view = sweep_view(sweep, progress or config["progress"], running_shell(), planned.images)
        return run_sweep_blocking(sweep, planned, view)

    if rows is not None:  # a table: one run a row, labelled by its row ("row 2 · seed 3")
        runs = [
            SweepRun(prompt, values, " · ".join(filter(None, [f"row {number}",
                     label_of(values, swept_names)])))
            for number, (prompt, values) in enumerate(rows, start=1)
        ]  # fmt: skip
    else:
        runs = [
            SweepRun(prompt, values, label_of(values))
            for prompt, values in plan(prompts, dict(swept))
        ]
    for sweep_run in runs:
        checked(sweep_run)
    made = ImageSweep(runs, swept=swept_names, retry=retry, by_row=by_row)
    return made, plan_for(runs, replay)


class _RunChecks:
    """What `prepare()` would refuse in a sweep's run, checked for every run before any
    is made: its fields together (`schema.CONFLICTS`), and that its endpoint takes them.
    Cheap per run: what depends on the names of the fields is checked once per set of
    names, and an edit's notes (a field its operation ignores) are said once each."""

    def __init__(
        self,
        fields: Mapping[str, Any],
        inputs: tuple[InputImage, ...],
        config: Mapping[str, Any],
        *,
        as_flags: bool,
        by_row: bool,
    ) -> None:
        self._fields = fields
        self._inputs = inputs
        self._config = config
        self._as_flags = as_flags
        self._by_row = by_row
        self._names: set[frozenset[str]] = set()  # sets of field names checked already
        self._images: set[str] = set()  # each --image value checked, once

    def __call__(self, sweep_run: SweepRun) -> None:
        from ..request import check_fields_of, ignored_by_operation, input_images
        from ..schema import check_conflicts

        merged = {**self._fields, **sweep_run.params}
        try:
            check_conflicts(merged, as_flags=self._as_flags)
            names = frozenset(merged)
            if names not in self._names:
                check_fields_of("edits" if self._inputs else "generations", merged)
                if self._inputs:
                    masked = any(image.role == "mask" for image in self._inputs)
                    body = {**merged, "mask": ""} if masked else merged
                    for note in ignored_by_operation(body):
                        warn_caller(note)
                self._names.add(names)
            image = merged.get("image")  # a generation's --image: read and checked once
            if image is not None and repr(image) not in self._images:
                input_images(image, self._config["max_input_image_bytes"])
                self._images.add(repr(image))
        except OptionError as exc:  # a row's values with the cell's, e.g. a conflict
            if not self._by_row:
                raise
            raise OptionError(f"{sweep_run.label.partition(' · ')[0]}: {exc}") from None

    def images_by_model(self, runs: list[SweepRun]) -> dict[str, int]:
        """The images each model makes over `runs`."""
        counts: Counter[str] = Counter()
        for run in runs:
            counts[self.model_of(run)] += self.images_of(run)
        return dict(counts)

    def model_of(self, run: SweepRun) -> str:
        """The model `run` asks, as its request would: its own, the sweep's, the default."""
        model = run.params.get("model", self._fields.get("model", self._config.get("model")))
        return str(model or "")

    def images_of(self, run: SweepRun) -> int:
        """The images (-n) `run` asks, as `model_of` finds its model."""
        return int(run.params.get("n", self._fields.get("n", self._config.get("n") or 1)))


def plan_sweep(
    prompts: Any,
    fields: dict[str, Any],
    params: Mapping[str, Any] | None,
    *,
    config: Mapping[str, Any],
    base_url: str | None,
    timeout: float | None,
    progress: str,
    replay: bool | None,
    pool: Pool | None = None,
    edit: Any = None,
    mask: Any = None,
    concurrency: int | None = None,
    yes: bool = False,
    stream: Any = True,
) -> tuple[ImageSweep, SweepPlan, str]:
    """A sweep a call asks for (`Client.sweep`, `mm.sweep`, `start` of several prompts),
    every argument checked and every run planned, nothing sent: the sweep, its runs, and
    the progress mode. `prompts`: a prompt, a list of them, or a table (a list of dicts
    or a DataFrame: one run a row, no cross product). More than `max_images_per_cell`
    images is an error unless `yes`."""
    rows = None
    if is_table(prompts):
        rows = check_rows(prompts, as_flags=False)
        listed = [name for name, value in fields.items() if isinstance(value, list | tuple)]
        if listed:
            raise OptionError(
                f"{', '.join(listed)}: a table runs one run a row, so a keyword takes one "
                "value for every row; put the values in the rows"
            )
        texts = [prompt for prompt, _ in rows]
    else:
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
    inputs: tuple[InputImage, ...] = ()
    if edit is not None:
        inputs = edit_inputs_of_call(edit, mask, limit=config["max_input_image_bytes"])
    elif mask is not None:
        raise OptionError("mask goes with edit=: the images it masks")
    made, planned = prepare_sweep(
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
        pool=pool,
        rows=rows,
    )
    check_image_count(planned.images, len(made), config, allow=yes)
    return made, planned, progress
