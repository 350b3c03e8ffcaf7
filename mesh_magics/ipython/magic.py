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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, Int, TraitError, TraitType, Unicode, validate

from ..errors import GenerationCancelled, OptionError
from ..schema import SETTINGS, check, check_image_count, magic_help
from .cell import CellOptions, parse_cell

if TYPE_CHECKING:
    from ..inputs import InputImage
    from ..results.models import ModelList
    from ..results.result import ImageResult
    from ..run.generation import Generation
    from ..run.jobs import JobList
    from ..run.lifecycle import Delivery


class SettingError(OptionError, TraitError):
    """A `MeshImageMagics` setting was given a value its option would refuse.

    A `TraitError` too, so traitlets keeps the old value."""

    label = "ConfigError"


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
    retry_backoff = _setting(Float, "retry_backoff")
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
    def meshimage(
        self, line: str, cell: str | None = None
    ) -> ImageResult | ModelList | JobList | None:
        options = parse_cell(line, cell, self.shell.user_ns if self.shell else {})
        for warning in options.warnings:
            _note(warning)
        if options.command is not None:
            return self._command(options)
        source = f"%%meshimage {line}\n{cell}" if cell is not None else f"%meshimage {line}"
        replay = True if options.replay else False if options.fresh else None
        inputs = self._inputs(options)
        if options.is_sweep:
            return self._sweep(options, source, replay, inputs)
        from ..api import prepare

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
        if options.dry_run:
            self._show_dry_run(run)
            return None
        if options.bg:
            self._background(run, options)
            return None
        from ..errors import IncompleteResultError
        from ..run.wait import run_blocking
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
        from ..run.lifecycle import Delivery

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
        from ..run.lifecycle import deliver

        deliver(value, self._delivery(options), failure=failure, returns=True)

    def _sweep(
        self,
        options: CellOptions,
        source: str,
        replay: bool | None,
        inputs: tuple[InputImage, ...],
    ) -> Any:
        from ..research import prepare_sweep, sweep_view
        from ..results.sweep import SweepError
        from ..run.sweep import run_sweep_blocking

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
        if options.dry_run:
            self._show_sweep_dry_run(sweep, generations, images)
            return None
        if options.bg:
            from .background import start_sweep_in_cell

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
        self._deliver(sweep, options, failure=SweepError.of(sweep) if sweep.failed else None)
        return None if options.no_display else sweep

    def _show_sweep_dry_run(self, sweep: Any, generations: list[Generation], images: int) -> None:
        from IPython.display import display

        from ..redact import display_url
        from ..research import usage_prices

        prices = usage_prices(generations[0].settings, {g.request.model for g in generations})
        target = display_url(generations[0].settings.base_url)
        lines = [f"dry run, nothing sent: {len(generations)} runs, {images} images, to {target}"]
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
        from .background import start_in_cell

        self._bind(options.out, run)  # the handle, at once; once done, it is the result
        start_in_cell(run, self.shell, self.progress, self._delivery(options).effects)

    def _command(self, options: CellOptions) -> Any:
        if options.form:
            return self._form(options)
        if options.list_models:
            value: Any = self._list_models(options.base_url)
        elif options.jobs:
            from ..run.jobs import JobList, jobs

            value = JobList(jobs().all())
        elif options.history:
            from ..research import history

            value = history(options.prompt or None, config=self.settings())
        elif options.usage:
            from ..research import usage_report

            return usage_report(config=self.settings())
        else:
            from ..run.jobs import jobs

            left = jobs().wait(options.timeout)
            if left:
                _note(f"--wait: {len(left)} background run(s) still going after the timeout")
            return None
        self._bind(options.out, value)
        return value

    def _form(self, options: CellOptions) -> Any:
        """`--form`: the interactive form, prefilled with the cell's options and prompt."""
        try:
            from ..forms.widget import MeshForm
        except ImportError as exc:
            raise OptionError(f"--form needs ipywidgets ({exc}): pip install ipywidgets") from None
        from .cell import interpolate

        prompt = interpolate(options.prompt, self.shell.user_ns if self.shell else {})
        return MeshForm(prompt, options.fields, out=options.out, base_url=options.base_url,
                        shell=self.shell, config=self.settings())  # fmt: skip

    def _list_models(self, base_url: str | None) -> ModelList:
        from ..http.client import fetch_models
        from ..results.models import ModelList
        from ..run.wait import call
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
        manager.magics[kind].pop("meshimage", None)
    instance = manager.registry.pop("MeshImageMagics", None)
    if instance is None:
        return
    for name in instance.class_trait_names(config=True):
        shell.config.MeshImageMagics[name] = getattr(instance, name)
    if instance in shell.configurables:
        shell.configurables.remove(instance)
