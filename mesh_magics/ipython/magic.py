"""`%meshimage` and `%%meshimage`: the configuration, and the thinnest layer over the
function API: cell text -> `parse_cell` -> `client.cells.run_cell` (the road `mm.cell`
takes too: `prepare`, a run blocking or in the background, the lifecycle) -> bound,
returned, displayed.

Every setting is checked when it is set (`%config`, a profile), with the same rules and
messages as the option of the same name (`schema.py`); a bad value is refused and the
old one kept, so one mistake cannot break every later cell. Everything past the parser is
imported on first use, so `%load_ext mesh_magics` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, Int, TraitType, Unicode, validate

from ..cell import parse_cell
from ..errors import OptionError, SettingError
from ..schema import BY_FLAG, SETTINGS, check, magic_help
from .commands import overview as commands_overview

if TYPE_CHECKING:
    from ..client.batches import ImageBatch
    from ..client.cells import Place
    from ..results.image_sweep import ImageSweep
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
    ) -> ImageResult | ImageSweep | ImageBatch | None:
        options = parse_cell(line, cell, self.shell.user_ns if self.shell else {})
        if options.command is not None:
            from .commands import pointer

            raise pointer(options.command)
        source = f"%%meshimage {line}\n{cell}" if cell is not None else f"%meshimage {line}"
        from ..client.cells import run_cell

        value = run_cell(options, source, self._place())
        return None if options.no_display else value

    def settings(self) -> dict[str, Any]:
        """Every setting's value, as the function API takes them."""
        return {name: getattr(self, name) for name in SETTINGS}

    def _bind(self, name: str | None, value: object) -> None:
        if name and self.shell is not None:
            self.shell.user_ns[name] = value

    def _place(self) -> Place:
        """Where this magic's cells run (`client/cells.py`): the notebook's namespace,
        `%config`, the notebook's display."""
        from ..client.cells import Place

        return Place(
            namespace=self.shell.user_ns if self.shell else {},
            config=self.settings(),
            bind=self._bind,
            show=_display,
            shell=self.shell,
            note=_note,
        )

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


def _note(text: str) -> None:
    print(f"meshimage: {text}", file=sys.stderr)


def _display(value: Any) -> None:
    from IPython.display import display

    display(value)


def _notes_on_stderr() -> Any:
    """Warnings (e.g. a base URL's credentials are not sent) as one `meshimage:` line."""
    from ..client.cells import notes_to

    return notes_to(_note)


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
