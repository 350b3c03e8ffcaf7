"""`%meshimage` and `%%meshimage`: the configuration, and the thinnest layer over the
function API: cell text -> `parse_cell` -> `api.prepare` (request, settings) -> a run,
blocking (`run_blocking`) or in the background (`background.start_in_cell`) -> bound,
returned, displayed.

Every setting is checked when it is set (`%config`, a profile), with the same rules and
messages as the option of the same name (`schema.py`); a bad value is refused and the
old one kept, so one mistake cannot break every later cell. Everything past the parser is
imported on first use, so `%load_ext mesh_magics` stays fast.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, Int, TraitType, Unicode, validate

from ..cell import CellOptions, parse_cell
from ..errors import GenerationCancelled, OptionError, SettingError
from ..schema import BY_FLAG, SETTINGS, check, check_image_count, magic_help
from ..wording import plural
from .commands import overview as commands_overview

if TYPE_CHECKING:
    from ..engine.generation import Generation
    from ..engine.lifecycle import Delivery
    from ..inputs import InputImage
    from ..results.model_list import ModelList
    from ..results.result import ImageResult


def _help(text: str) -> Any:
    def document(function: Any) -> Any:
        function.__doc__ = text
        return function

    return document


def _setting(kind: type[TraitType[Any, Any]], name: str) -> Any:
    """The trait of setting `name`: its default, help and whether it may be unset come
    from the schema; its check is `_check_setting`."""
    option = SETTINGS[name]
    return kind(option.default, allow_none=option.optional, help=option.help).tag(config=True)


@magics_class
class MeshImageMagics(Magics):
    """Generate images with MeshAPI. Configure with `%config MeshImageMagics.<name> = ...`."""

    model = _setting(Unicode, "model")
    size = _setting(Unicode, "size")
    quality = _setting(Unicode, "quality")
    n = _setting(Int, "n")
    base_url = _setting(Unicode, "base_url")
    timeout = _setting(Float, "timeout")
    read_timeout = _setting(Float, "read_timeout")
    max_retries = _setting(Int, "max_retries")
    max_retry_wait = _setting(Float, "max_retry_wait")
    max_image_bytes = _setting(Int, "max_image_bytes")
    max_response_mb = _setting(Float, "max_response_mb")
    idle_timeout = _setting(Float, "idle_timeout")
    total_timeout = _setting(Float, "total_timeout")
    max_input_image_bytes = _setting(Int, "max_input_image_bytes")
    preview_max_px = _setting(Int, "preview_max_px")
    progress = _setting(Unicode, "progress")
    allow_insecure_http = _setting(Bool, "allow_insecure_http")
    concurrency = _setting(Int, "concurrency")
    max_images_per_cell = _setting(Int, "max_images_per_cell")
    replay = _setting(Bool, "replay")
    store = _setting(Bool, "store")
    store_dir = _setting(Unicode, "store_dir")
    store_max_bytes = _setting(Int, "store_max_bytes")
    embed_prompt = _setting(Bool, "embed_prompt")

    @validate(*SETTINGS)
    def _check_setting(self, proposal: Any) -> Any:
        option = SETTINGS[proposal["trait"].name]
        try:
            return check(option, proposal["value"], source=f"MeshImageMagics.{option.dest}")
        except OptionError as exc:
            raise SettingError(f"{exc}; the setting is unchanged") from None

    @no_var_expand
    @line_cell_magic
    @_help(magic_help())
    def meshimage(self, line: str, cell: str | None = None) -> ImageResult | None:
        options = parse_cell(line, cell, self.shell.user_ns if self.shell else {})
        for warning in options.warnings:
            _note(warning)
        if options.command is not None:
            from .commands import pointer

            raise pointer(options.command)
        source = f"%%meshimage {line}\n{cell}" if cell is not None else f"%meshimage {line}"
        replay = True if options.replay else False if options.fresh else None
        inputs = self._inputs(options)
        if options.is_sweep:
            return self._sweep(options, source, replay, inputs)
        from ..client.prepare import prepare

        with _notes_on_stderr():
            run = prepare(
                options.prompt,
                options.fields,
                config=self.settings(),
                base_url=options.base_url,
                timeout=options.timeout,
                stream=options.stream,
                replay=replay,
                cell=source,
                inputs=inputs,
            )
        check_image_count(run.request.n, 1, self.settings(), allow=options.yes)
        run.note = _note  # what /v1/models says the model ignores, as a note
        if options.dry_run:
            self._show_dry_run(run)
            return None
        if options.bg:
            self._background(run, options)
            return None
        from ..engine.wait import run_blocking
        from ..errors import IncompleteResultError
        from ..views import make_view

        view = make_view(run.heading, self.progress, self.shell)
        try:
            with _interrupt_as_cancel():
                result = run_blocking(run, view)
        except IncompleteResultError as exc:  # billed images: kept, then the cell fails
            self._deliver(exc.result, options, failure=exc)
            raise  # not reached: _deliver raises `failure`
        self._deliver(result, options)
        return None if options.no_display else result

    def settings(self) -> dict[str, Any]:
        """Every setting's value, as the function API takes them."""
        return {name: getattr(self, name) for name in SETTINGS}

    def _inputs(self, options: CellOptions) -> tuple[InputImage, ...]:
        """An edit's images (`--edit`, `--mask`), read and checked; () for a generation."""
        if not options.edit:
            if options.mask is not None:
                raise OptionError("--mask goes with --edit SOURCE: the image it masks")
            return ()
        from ..inputs import edit_inputs
        from .sources import edit_sources

        images, mask = edit_sources(
            options.edit, options.mask, self.shell.user_ns if self.shell else {}
        )
        return edit_inputs(images, mask, limit=self.max_input_image_bytes)

    def _bind(self, name: str | None, value: object) -> None:
        if name and self.shell is not None:
            self.shell.user_ns[name] = value

    def _delivery(self, options: CellOptions) -> Delivery:
        """Where a cell's value goes: `-o NAME`, the cell's output (unless
        `--no-display`), then `--save DIR` (`run/lifecycle.py`)."""
        from ..engine.lifecycle import Delivery

        folder = options.save
        return Delivery(
            bind=lambda value: self._bind(options.out, value),
            show=_nothing if options.no_display else _display,
            effects=[lambda value: value.save(folder)] if folder else [],
            note=_note,
        )

    def _deliver(
        self, value: Any, options: CellOptions, *, failure: BaseException | None = None
    ) -> None:
        """Record (done by the run), bind, show, then side effects: the lifecycle of a
        blocking cell, whose value shows as the cell's own (`Out[n]`) when it succeeds."""
        from ..engine.lifecycle import deliver

        deliver(value, self._delivery(options), failure=failure, returns=True)

    def _sweep(
        self,
        options: CellOptions,
        source: str,
        replay: bool | None,
        inputs: tuple[InputImage, ...],
    ) -> Any:
        from ..client.sweeps import prepare_sweep
        from ..engine.sweeps import run_sweep_blocking
        from ..views.sweep_progress import sweep_view

        config = self.settings()
        with _notes_on_stderr():
            sweep, generations = prepare_sweep(
                options.prompt_list,
                options.fields,
                options.sweep,
                config=config,
                base_url=options.base_url,
                timeout=options.timeout,
                stream=options.stream,
                replay=replay,
                cell=source,
                concurrency=options.concurrency,
                inputs=inputs,
            )
        images = sum(run.request.n for run in generations)
        check_image_count(images, len(generations), config, allow=options.yes)
        said = _once(_note)  # a note on a field the model ignores: once for the sweep
        for run in generations:
            run.note = said
        if options.dry_run:
            self._show_sweep_dry_run(sweep, generations, images)
            return None
        if options.bg:
            from ..views.in_cell import start_sweep_in_cell

            delivery = self._delivery(options)
            self._bind(options.out, sweep)  # the handle, at once; it fills in
            start_sweep_in_cell(sweep, generations, self.shell, self.progress, delivery.effects)
            return None
        view = sweep_view(sweep, self.progress, self.shell, generations)
        try:
            with _interrupt_as_cancel():
                run_sweep_blocking(sweep, generations, view)
        except GenerationCancelled as exc:  # the runs that finished were billed: kept
            kept = exc.partial if exc.partial is not None and exc.partial.results else None
            self._deliver(kept, options, failure=exc)
            raise
        from ..results.image_sweep import sweep_error

        self._deliver(sweep, options, failure=sweep_error(sweep) if sweep.failed else None)
        return None if options.no_display else sweep

    def _show_sweep_dry_run(self, sweep: Any, generations: list[Generation], images: int) -> None:
        from IPython.display import display

        from ..client.history import usage_prices
        from ..redact import display_url

        prices = usage_prices(generations[0].settings, {g.request.model for g in generations})
        target = display_url(generations[0].settings.base_url)
        counts = f"{plural(len(generations), 'run')}, {plural(images, 'image')}"
        lines = [f"dry run, nothing sent: {counts}, to {target}"]
        cost, unknown = 0.0, set()
        for sweep_run, run in zip(sweep.runs, generations, strict=True):
            price = prices.get(run.request.model)
            if price is None:
                unknown.add(run.request.model)
            else:
                cost += price * run.request.n
            lines.append(f"  {sweep_run.label} · {run.request.n} × {sweep_run.prompt[:60]!r}")
        if unknown:
            missing = ", ".join(sorted(unknown))
            lines.append(
                f"estimated cost: unknown (no price from /v1/models for {missing}); "
                f"the priced runs: ~${cost:.3f}"
            )
        else:
            lines.append(f"estimated cost: ~${cost:.3f}")
        display({"text/plain": "\n".join(lines)}, raw=True)

    def _background(self, run: Generation, options: CellOptions) -> None:
        from ..views.in_cell import start_in_cell

        self._bind(options.out, run)  # the handle, at once; once done, it is the result
        start_in_cell(run, self.shell, self.progress, self._delivery(options).effects)

    # -- what %mesh's commands call (commands.py) -------------------------------------------

    @no_var_expand
    @line_cell_magic
    @_help(commands_overview())
    def mesh(self, line: str, cell: str | None = None) -> Any:
        from .commands import run_command

        return run_command(self, line, cell)

    def bind(self, name: str | None, value: Any) -> Any:
        """Bind `value` to NAME (`-o NAME`), where one was given; the value."""
        if name:
            self._bind(check(BY_FLAG["-o"], name, source="-o"), value)
        return value

    def form(self, line: str, cell: str | None) -> Any:
        """The interactive form, prefilled with the options and prompt of `line` and
        `cell`, as a cell of `%%meshimage` would give them."""
        try:
            from ..forms.widget import MeshForm
        except ImportError as exc:
            raise OptionError(
                f"%mesh form needs ipywidgets ({exc}): pip install ipywidgets"
            ) from None
        from ..cell import interpolate

        namespace = self.shell.user_ns if self.shell else {}
        options = parse_cell(f"--form {line}", cell, namespace)
        prompt = interpolate(options.prompt, namespace)
        return MeshForm(prompt, options.fields, out=options.out, base_url=options.base_url,
                        shell=self.shell, config=self.settings())  # fmt: skip

    def list_models(self, base_url: str | None) -> ModelList:
        from ..engine.wait import call
        from ..http.client import fetch_models
        from ..results.model_list import ModelList
        from ..settings import client_settings

        with _notes_on_stderr():
            settings = client_settings(self.settings(), base_url)
        return ModelList(call(fetch_models(settings), "listing the models"))

    def _show_dry_run(self, run: Generation) -> None:
        from IPython.display import display

        from ..redact import display_url
        from ..request import shown_body

        target = f"POST {display_url(run.settings.base_url)}{run.request.path}"
        body = json.dumps(shown_body(run.request), indent=2, ensure_ascii=False)
        display({"text/plain": f"dry run, nothing sent: {target}\n{body}"}, raw=True)


def _note(text: str) -> None:
    print(f"meshimage: {text}", file=sys.stderr)


def _once(say: Callable[[str], None]) -> Callable[[str], None]:
    """`say`, saying each text once."""
    said: set[str] = set()

    def once(text: str) -> None:
        if text not in said:
            said.add(text)
            say(text)

    return once


def _nothing(value: Any) -> None:
    pass


def _display(value: Any) -> None:
    from IPython.display import display

    display(value)


@contextmanager
def _interrupt_as_cancel() -> Iterator[None]:
    """In a cell, an interrupt that stopped a run reads as one line, `GenerationCancelled`;
    what had finished rides on it as `.partial`, as on the `RunInterrupted` it replaces."""
    from ..errors import RunInterrupted

    try:
        yield
    except RunInterrupted as exc:
        raise GenerationCancelled(str(exc), partial=exc.partial) from None


@contextmanager
def _notes_on_stderr() -> Iterator[None]:
    """Warnings (e.g. a base URL's credentials are not sent) as one `meshimage:` line."""
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        yield
    for text in dict.fromkeys(str(note.message) for note in notes):  # a sweep's, once
        _note(text)


def unload(shell: Any) -> None:
    """Take the magics out of `shell` again (`%unload_ext mesh_magics`).

    The settings made with `%config` are kept in the shell's config, so that `%load_ext`
    (or `%reload_ext`) brings them back, as a profile's would be."""
    manager = shell.magics_manager
    for kind in ("line", "cell"):
        for name in ("meshimage", "mesh"):
            manager.magics[kind].pop(name, None)
    instance = manager.registry.pop("MeshImageMagics", None)
    if instance is None:
        return
    for name in instance.class_trait_names(config=True):
        shell.config.MeshImageMagics[name] = getattr(instance, name)
    if instance in shell.configurables:
        shell.configurables.remove(instance)
