"""A cell of the `%%meshimage` grammar, run: the one road of the magic (`ipython/magic.py`)
and of `mm.cell` (marimo, scripts, anything without magics).

    fox = mm.cell('''--size 1024x1024
    A fox in the snow''')

The text is parsed by `cell.parse_cell`, as a magic's cell is; then `run_cell` does what
the cell asks: a dry run, a run or a sweep, blocking with a progress view or (in a Jupyter
kernel) in the background, then the run lifecycle (`engine/lifecycle.py`): bind `-o NAME`,
show, `--save`. What differs between the front ends is only where a cell runs, a `Place`:
its namespace, its settings, how it binds and shows a value, its IPython shell if any.

`mm.cell` in marimo: marimo has no namespace to bind into (a cell's names are what it
assigns), so the value is returned: `fox = mm.cell(...)` is the marimo way. `-o NAME`
binds into `namespace=` when the caller passes one, else a note says the value is only
returned. `{name}` fields are filled from `namespace=`, else from the caller's variables;
in marimo pass them (`namespace={"animal": animal}`), so that marimo sees that the cell
uses them and reruns it when they change.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cell import CellOptions, parse_cell
from ..engine.lifecycle import Delivery, deliver, note_on_stderr, nothing
from ..errors import GenerationCancelled, OptionError, RunInterrupted
from ..frontends import in_marimo
from ..presets import with_preset
from ..schema import check_image_count
from ..settings import configured
from ..wording import plural

if TYPE_CHECKING:
    from ..engine.generation import Generation
    from ..engine.sweeps import SweepPlan
    from ..inputs import InputImage
    from ..results.image_sweep import ImageSweep
    from ..results.result import ImageResult
    from .batches import ImageBatch


MAGIC = "%%meshimage"


@dataclass
class Place:
    """Where a cell runs: what the front end gives it."""

    namespace: Mapping[str, Any]  # `{name}` fields, `--prompts NAME`, `--edit SOURCE`
    config: Mapping[str, Any]  # the settings (`%config`, the environment)
    bind: Callable[[str, Any], object]  # `-o NAME`
    show: Callable[[Any], object]  # display a value now (a dry run's plan)
    shell: Any = None  # IPython's, when there is one: progress views and `--bg` use it
    note: Callable[[str], object] = note_on_stderr


class Plan:
    """What a dry run would send: text, shown as it is in every frontend."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text}


def run_cell(
    options: CellOptions, source: str, place: Place
) -> ImageResult | ImageSweep | ImageBatch | None:
    """Do what the parsed cell `options` asks (its text: `source`). The value, once bound,
    shown only if it is about to raise (the caller shows it by returning it), saved; None
    for a dry run (its plan is shown) and a background run (its handle is bound)."""
    for warning in options.warnings:
        place.note(warning)
    if options.preset is not None:  # under the options given, comma lists too
        options.fields = with_preset(
            options.preset, options.fields, as_flags=True, beside=options.sweep
        )
    replay = True if options.replay else False if options.fresh else None
    inputs = _inputs(options, place)
    if options.batch:
        return _batch(options, source, inputs, place)
    if options.is_sweep:
        return _sweep(options, source, replay, inputs, place)
    from .prepare import prepare

    with notes_to(place.note):
        run = prepare(
            options.prompt,
            options.fields,
            config=place.config,
            base_url=options.base_url,
            timeout=options.timeout,
            stream=options.stream,
            replay=replay,
            cell=source,
            inputs=inputs,
        )
    check_image_count(run.request.n, 1, place.config, allow=options.yes)
    run.note = place.note  # what /v1/models says the model ignores, as a note
    if options.dry_run:
        place.show(Plan(dry_run_text(run)))
        return None
    delivery = _delivery(options, place)
    if options.bg:
        from ..views.in_cell import start_in_cell

        delivery.bind(run)  # the handle, at once; once done, it is the result
        with interrupt_as_cancel():  # only where it runs in the foreground (Colab)
            start_in_cell(run, _kernel(place), place.config["progress"], delivery.effects)
        return None
    from ..engine.wait import run_blocking
    from ..errors import IncompleteResultError
    from ..views import make_view

    view = make_view(run.heading, place.config["progress"], place.shell)
    try:
        with interrupt_as_cancel():
            result = run_blocking(run, view)
    except IncompleteResultError as exc:  # billed images: kept, then the cell fails
        deliver(exc.result, delivery, failure=exc, returns=True)
        raise  # not reached: deliver raises `failure`
    deliver(result, delivery, returns=True)
    return result


def _sweep(
    options: CellOptions,
    source: str,
    replay: bool | None,
    inputs: tuple[InputImage, ...],
    place: Place,
) -> ImageSweep | None:
    from ..engine.sweeps import run_sweep_blocking
    from ..results.image_sweep import sweep_error
    from ..views import sweep_view

    sweep, planned = _planned(options, source, inputs, place, stream=options.stream, replay=replay)
    planned.note = _once(place.note)  # a note on a field the model ignores: once for the sweep
    if options.dry_run:
        place.show(Plan(sweep_dry_run_text(sweep, planned)))
        return None
    delivery = _delivery(options, place)
    progress = place.config["progress"]
    if options.bg:
        from ..views.in_cell import start_sweep_in_cell

        delivery.bind(sweep)  # the handle, at once; it fills in
        with interrupt_as_cancel():  # only where it runs in the foreground (Colab)
            start_sweep_in_cell(sweep, planned, _kernel(place), progress, delivery.effects)
        return None
    view = sweep_view(sweep, progress, place.shell, planned.images)
    try:
        with interrupt_as_cancel():
            run_sweep_blocking(sweep, planned, view)
    except GenerationCancelled as exc:  # the runs that finished were billed: kept
        kept = exc.partial if exc.partial is not None and exc.partial.results else None
        deliver(kept, delivery, failure=exc, returns=True)
        raise
    deliver(sweep, delivery, failure=sweep_error(sweep) if sweep.failed else None, returns=True)
    return sweep


def _batch(
    options: CellOptions, source: str, inputs: tuple[InputImage, ...], place: Place
) -> ImageBatch | None:
    """`--batch`: the cell's runs, planned as a sweep's, sent as one batch (or attached
    to, when the same requests went up before); its handle is bound and shown."""
    from .batches import open_batch, plan_text

    for flag, given, instead in (
        ("--bg", options.bg, "a batch runs at the server already; the cell returns at once"),
        ("--save", options.save, "its images come later: b.result().save(DIR)"),
        ("--replay", options.replay, "a rerun attaches to its batch"),
        ("--fresh", options.fresh, "a batch always asks anew; a rerun attaches to it"),
    ):
        if given:
            raise OptionError(f"--batch and {flag} do not go together: {instead}")
    sweep, planned = _planned(options, source, inputs, place, stream=False, replay=False)
    if options.dry_run:
        first = planned.made(min(BATCH_LINES_SHOWN, len(sweep)))
        place.show(Plan(plan_text(sweep, first, planned.images)))
        return None
    batch = open_batch(sweep, planned.made(len(sweep)), note=place.note)
    deliver(batch, _delivery(options, place), returns=True)
    return batch


def _planned(
    options: CellOptions,
    source: str,
    inputs: tuple[InputImage, ...],
    place: Place,
    *,
    stream: bool,
    replay: bool | None,
) -> tuple[ImageSweep, SweepPlan]:
    """The cell's runs as a sweep's plan, every run checked and nothing sent (a sweep's
    and a batch's), within `max_images_per_cell` unless `--yes`."""
    from .sweeps import prepare_sweep

    with notes_to(place.note):
        sweep, planned = prepare_sweep(
            options.prompt_list,
            options.fields,
            options.sweep,
            config=place.config,
            base_url=options.base_url,
            timeout=options.timeout,
            stream=stream,
            replay=replay,
            cell=source,
            concurrency=options.concurrency,
            inputs=inputs,
            rows=options.rows,
        )
    check_image_count(planned.images, len(sweep), place.config, allow=options.yes)
    return sweep, planned


def _inputs(options: CellOptions, place: Place) -> tuple[InputImage, ...]:
    """An edit's images (`--edit`, `--mask`), read and checked; () for a generation."""
    if not options.edit:
        if options.mask is not None:
            raise OptionError("--mask goes with --edit SOURCE: the image it masks")
        return ()
    from ..inputs import edit_inputs
    from .sources import edit_sources

    images, mask = edit_sources(options.edit, options.mask, place.namespace)
    return edit_inputs(images, mask, limit=place.config["max_input_image_bytes"])


def _delivery(options: CellOptions, place: Place) -> Delivery:
    """Where a cell's value goes: `-o NAME`, the cell's output (unless `--no-display`),
    then `--save DIR`."""
    name, folder = options.out, options.save
    return Delivery(
        bind=(lambda value: place.bind(name, value)) if name else nothing,
        show=nothing if options.no_display else place.show,
        effects=[lambda value: value.save(folder)] if folder else [],
        note=place.note,
    )


def _kernel(place: Place) -> Any:
    """The IPython shell a background run writes its output through; `--bg` needs one."""
    if place.shell is None:
        where = "in marimo" if in_marimo() else "here"
        raise OptionError(
            f"--bg runs in the background of an IPython cell, and there is none {where}: "
            "drop --bg (the cell waits), or start the run with mm.start(...)"
        )
    return place.shell


# -- what a dry run says ------------------------------------------------------------------------


def dry_run_text(run: Generation) -> str:
    from ..redact import display_url
    from ..request import shown_body

    target = f"POST {display_url(run.settings.base_url)}{run.request.path}"
    body = json.dumps(shown_body(run.request), indent=2, ensure_ascii=False)
    return f"dry run, nothing sent: {target}\n{body}"


DRY_RUN_RUNS = 10  # runs a sweep's dry run lists; the rest are counted
BATCH_LINES_SHOWN = 3  # the lines of its JSONL a batch's dry run shows


def sweep_dry_run_text(sweep: ImageSweep, planned: SweepPlan) -> str:
    """What a sweep would send: where, how many runs and images, the first
    `DRY_RUN_RUNS` runs and how many more, and the estimated cost. A few lines however
    many runs: the runs are counted, not listed."""
    from ..redact import display_url
    from .history import usage_prices

    prices = usage_prices(planned.settings, set(planned.images_by_model))
    target = display_url(planned.settings.base_url)
    counts = f"{plural(len(sweep), 'run')}, {plural(planned.images, 'image')}"
    lines = [f"dry run, nothing sent: {counts}, to {target}"]
    for sweep_run in sweep.runs[:DRY_RUN_RUNS]:
        n = planned.images_of(sweep_run)
        lines.append(f"  {sweep_run.label} · {n} × {sweep_run.prompt[:60]!r}")
    if len(sweep) > DRY_RUN_RUNS:
        lines.append(f"  … and {len(sweep) - DRY_RUN_RUNS:,} more runs")
    cost, unknown = 0.0, set()
    for model, images in planned.images_by_model.items():
        price = prices.get(model)
        if price is None:
            unknown.add(model)
        else:
            cost += price * images
    if unknown:
        missing = ", ".join(sorted(unknown))
        lines.append(
            f"estimated cost: unknown (no price from /v1/models for {missing}); "
            f"the priced runs: ~${cost:.3f}"
        )
    else:
        lines.append(f"estimated cost: ~${cost:.3f}")
    return "\n".join(lines)


# -- on the way ---------------------------------------------------------------------------------


@contextmanager
def interrupt_as_cancel() -> Iterator[None]:
    """In a cell, an interrupt that stopped a run reads as one line, `GenerationCancelled`;
    what had finished rides on it as `.partial`, as on the `RunInterrupted` it replaces."""
    try:
        yield
    except RunInterrupted as exc:
        raise GenerationCancelled(str(exc), partial=exc.partial) from None


@contextmanager
def notes_to(note: Callable[[str], object]) -> Iterator[None]:
    """Warnings (e.g. a base URL's credentials are not sent) said by `note`, each once."""
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        yield
    for text in dict.fromkeys(str(item.message) for item in notes):  # a sweep's, once
        note(text)


# -- mm.cell ----------------------------------------------------------------------------------


def cell(
    text: str, *, namespace: Mapping[str, Any] | None = None
) -> ImageResult | ImageSweep | ImageBatch | None:
    """Run `text`, a cell of the `%%meshimage` grammar (option lines, then the prompt),
    exactly as the magic would, and return its value: an `ImageResult`, an `ImageSweep`
    for a sweep, None for a dry run (its plan is shown). A first line `%%meshimage
    OPTIONS` is read as the magic's line; the text is dedented as a docstring is, so it
    may be indented with the code.

    `namespace`: where `{name}` fields, `--prompts NAME` and `--edit NAME` are looked up,
    and where `-o NAME` binds (when it can be written to); default: the caller's variables,
    read, never written (so `fox = mm.cell(...)`, not `-o fox`)."""
    if not isinstance(text, str):
        raise OptionError(f"mm.cell takes the cell's text, not {type(text).__name__}")
    given = namespace
    if namespace is None:
        caller = sys._getframe(1)
        namespace = {**caller.f_globals, **caller.f_locals}
    line, body = "", inspect.cleandoc(text)  # indented with the code, as a docstring is
    if text.lstrip().startswith(MAGIC):  # a cell pasted whole, or a form's value
        first, _, body = text.lstrip().partition("\n")
        line = first[len(MAGIC) :]
    options = parse_cell(line, body, namespace)
    if options.command is not None:
        raise OptionError(
            f"mm.cell generates images; {options.command} is a command of %mesh in IPython "
            "(in Python: mm.history(), mm.form(), mm.Client().models() ...)"
        )
    place = Place(
        namespace=namespace,
        config=configured(),
        bind=_binder(given),
        show=show_now,
        shell=_running_shell(),
    )
    return run_cell(options, f"mm.cell({text!r})", place)


def _binder(namespace: Mapping[str, Any] | None) -> Callable[[str, Any], None]:
    """How `-o NAME` binds for `mm.cell`: into the namespace the caller passed, else not."""

    def bind(name: str, value: Any) -> None:
        if isinstance(namespace, MutableMapping):
            namespace[name] = value
        else:
            note_on_stderr(
                f"-o {name}: mm.cell returns the value and binds no name; write "
                f"{name} = mm.cell(...), or pass namespace=globals()"
            )

    return bind


def show_now(value: Any) -> None:
    """Show `value` where the caller looks: marimo's cell output, a Jupyter cell's, else
    printed (a script)."""
    from .prepare import show_in_notebook

    if not show_in_notebook(value):
        print(repr(value))


def _running_shell() -> Any:
    from .prepare import running_shell

    return running_shell()


def _once(say: Callable[[str], object]) -> Callable[[str], None]:
    """`say`, saying each text once."""
    said: set[str] = set()

    def once(text: str) -> None:
        if text not in said:
            said.add(text)
            say(text)

    return once
