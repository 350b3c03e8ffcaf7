"""`%meshimage` and `%%meshimage`: the configuration, and the wiring of the stations.

cell text -> options -> request -> client (on a worker thread, via `job`) -> events ->
view -> `ImageResult` (bound, returned, displayed). Each station lives in its own module
and is imported on first use, so `%load_ext mesh_magics` stays fast.

Every setting is checked when it is set (`%config`, a profile), with the same rules and
messages as the option of the same name (`schema.py`); a bad value is refused and the
old one kept, so one mistake cannot break every later cell.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, Int, TraitError, Unicode, validate

from ..errors import ConfigError, GenerationCancelled, IncompleteResultError, OptionError
from ..request import DEFAULT_MAX_INPUT_IMAGE_BYTES, build_request
from ..schema import SETTINGS, check, magic_help
from ..settings import DEFAULT_BASE_URL, ClientSettings, Secret, is_loopback, normalize_base_url
from .cell import parse_cell

if TYPE_CHECKING:
    from ..request import ImageRequest
    from ..results.models import ModelList
    from ..results.result import ImageResult

KEY_VARIABLES = ("MESHAPI_API_KEY", "MESH_API_KEY")
REQUEST_DEFAULTS = ("model", "size", "quality", "n")  # settings that are request fields


class SettingError(OptionError, TraitError):
    """A `MeshImageMagics` setting was given a value its option would refuse.

    A `TraitError` too, so traitlets keeps the old value."""

    label = "ConfigError"


def _help(text: str) -> Any:
    def document(function: Any) -> Any:
        function.__doc__ = text
        return function

    return document


@magics_class
class MeshImageMagics(Magics):
    """Generate images with MeshAPI. Configure with `%config MeshImageMagics.<name> = ...`."""

    model = Unicode("openai/gpt-image-1", help=SETTINGS["model"].help).tag(config=True)
    size = Unicode(None, allow_none=True, help=SETTINGS["size"].help).tag(config=True)
    quality = Unicode(None, allow_none=True, help=SETTINGS["quality"].help).tag(config=True)
    n = Int(None, allow_none=True, help=SETTINGS["n"].help).tag(config=True)
    base_url = Unicode(None, allow_none=True, help=SETTINGS["base_url"].help).tag(config=True)
    timeout = Float(None, allow_none=True, help=SETTINGS["timeout"].help).tag(config=True)
    read_timeout = Float(120.0, help=SETTINGS["read_timeout"].help).tag(config=True)
    max_retries = Int(2, help=SETTINGS["max_retries"].help).tag(config=True)
    max_retry_wait = Float(60.0, help=SETTINGS["max_retry_wait"].help).tag(config=True)
    max_image_bytes = Int(64 * 1024 * 1024, help=SETTINGS["max_image_bytes"].help).tag(config=True)
    max_input_image_bytes = Int(
        DEFAULT_MAX_INPUT_IMAGE_BYTES, help=SETTINGS["max_input_image_bytes"].help
    ).tag(config=True)
    preview_max_px = Int(1024, help=SETTINGS["preview_max_px"].help).tag(config=True)
    progress = Unicode("auto", help=SETTINGS["progress"].help).tag(config=True)
    allow_insecure_http = Bool(False, help=SETTINGS["allow_insecure_http"].help).tag(config=True)

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
    def meshimage(self, line: str, cell: str | None = None) -> ImageResult | ModelList | None:
        options = parse_cell(line, cell, self.shell.user_ns if self.shell else {})
        for warning in options.warnings:
            print(f"meshimage: {warning}", file=sys.stderr)
        if options.list_models:
            models = self._list_models(self.client_settings(options.base_url))
            self._bind(options.out, models)
            return models
        request = build_request(  # every check before any connection
            options.prompt,
            options.fields,
            self.defaults(exclude=options.fields),
            stream=options.stream,
            max_input_image_bytes=self.max_input_image_bytes,
        )
        settings = self.client_settings(options.base_url)
        timeout = options.timeout if options.timeout is not None else self.timeout
        result = self._generate(request, settings, timeout)
        self._bind(options.out, result)
        return None if options.no_display else result

    def _bind(self, name: str | None, value: object) -> None:
        if name and self.shell is not None:
            self.shell.user_ns[name] = value

    # -- configuration ---------------------------------------------------------------

    def defaults(self, exclude: Any = ()) -> dict[str, Any]:
        """The request fields the configuration sets, checked again (a profile may have set
        them before validation could run); fields in `exclude` are the cell's own, so a
        broken default never stands in the way of an explicit option."""
        return {
            name: check(SETTINGS[name], getattr(self, name), source=f"MeshImageMagics.{name}")
            for name in REQUEST_DEFAULTS
            if name not in exclude and getattr(self, name) is not None
        }

    def client_settings(self, base_url: str | None = None) -> ClientSettings:
        base, source = next(
            (value, source)
            for value, source in (
                (base_url, "--base-url"),
                (self.base_url, "MeshImageMagics.base_url"),
                (os.environ.get("MESHAPI_BASE_URL"), "$MESHAPI_BASE_URL"),
                (DEFAULT_BASE_URL, "the default base URL"),
            )
            if value
        )
        key = None
        if base.strip() == "local":
            from ..local import ensure_local_server

            base = ensure_local_server().url  # the embedded backend needs no key: send none
        else:
            try:
                with warnings.catch_warnings(record=True) as notes:  # shown as one line each
                    warnings.simplefilter("always")
                    base = normalize_base_url(base, allow_insecure_http=self.allow_insecure_http)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            for note in notes:
                print(f"meshimage: {note.message}", file=sys.stderr)
            key = next((os.environ[k] for k in KEY_VARIABLES if os.environ.get(k)), None)
            if key is None and not is_loopback(urlsplit(base).hostname or ""):
                raise ConfigError(
                    f"no API key for {base}: set MESHAPI_API_KEY in the environment that starts "
                    "Jupyter (or os.environ['MESHAPI_API_KEY'] = getpass.getpass() in a cell), "
                    "or use --base-url local to try the embedded backend without one"
                )
        return ClientSettings(
            base_url=base,
            api_key=Secret(key) if key else None,
            read_timeout=self.read_timeout,
            max_retries=self.max_retries,
            max_retry_wait=self.max_retry_wait,
            max_image_bytes=self.max_image_bytes,
            allow_insecure_http=self.allow_insecure_http,
        )

    # -- the work --------------------------------------------------------------------

    def _generate(
        self, request: ImageRequest, settings: ClientSettings, timeout: float | None
    ) -> ImageResult:
        from ..events import Completed, count_images
        from ..http.client import stream_generation
        from ..results.result import ImageResult
        from ..run.job import Job
        from ..views.base import make_view

        heading = f"{request.model} · {request.size} · {count_images(request.n)}"
        view = make_view(heading, self.progress, self.shell)
        job = Job(lambda: stream_generation(settings, request), timeout=timeout)
        view.start()
        try:
            events = job.run(view.update, view.tick, view.cancel_requested)
        except BaseException as exc:
            how = "cancelled" if isinstance(exc, GenerationCancelled) else "failed"
            view.fail(f"{how} after {job.elapsed:.1f} s")
            raise
        completed = events[-1]
        assert isinstance(completed, Completed)
        result = ImageResult(
            completed.images,
            request=request.body,
            model=completed.model or request.model,
            request_id=completed.request_id,
            usage=completed.usage,
            elapsed=job.elapsed,
            preview_max_px=self.preview_max_px,
        )
        if len(result) < request.n:
            view.fail(f"{len(result)} of {request.n} images after {job.elapsed:.1f} s")
            raise IncompleteResultError(
                f"asked for {request.n} images, the server returned {len(result)} "
                f"(request {result.request_id}); nothing was bound. The images that came are "
                "in sys.last_value.result",
                result,
            )
        view.finish(result.summary())
        return result

    def _list_models(self, settings: ClientSettings) -> ModelList:
        from ..http.client import fetch_models
        from ..results.models import ModelList
        from ..run.job import Job

        (models,) = Job(lambda: fetch_models(settings)).run(lambda _: None)
        return ModelList(models)


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
