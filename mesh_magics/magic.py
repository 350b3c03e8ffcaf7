"""`%meshimage` and `%%meshimage`: the configuration, and the wiring of the stations.

cell text -> options -> request -> client (on a worker thread, via `job`) -> events ->
view -> `ImageResult` (bound, returned, displayed). Each station lives in its own module
and is imported on first use, so `%load_ext mesh_magics` stays fast.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Enum, Float, Int, Unicode

from .errors import ConfigError, GenerationCancelled, IncompleteResultError
from .options import build_request, parse_cell, validate_field
from .settings import DEFAULT_BASE_URL, ClientSettings, Secret, is_loopback, normalize_base_url

if TYPE_CHECKING:
    from .options import ImageRequest
    from .result import ImageResult

KEY_VARIABLES = ("MESHAPI_API_KEY", "MESH_API_KEY")


@magics_class
class MeshImageMagics(Magics):
    """Generate images with MeshAPI. Configure with `%config MeshImageMagics.<name> = ...`."""

    model = Unicode("openai/gpt-image-1", help="Model used when a cell names none.").tag(
        config=True
    )
    size = Unicode("auto", help="Default size: auto or WIDTHxHEIGHT.").tag(config=True)
    quality = Unicode("auto", help="Default quality: auto low medium high hd standard.").tag(
        config=True
    )
    n = Int(1, help="Default number of images, 1..10.").tag(config=True)
    base_url = Unicode(
        None,
        allow_none=True,
        help="API base URL; 'local' runs the embedded backend. "
        "Default: $MESHAPI_BASE_URL, else https://api.meshapi.ai.",
    ).tag(config=True)
    timeout = Float(
        None, allow_none=True, help="Give up after this many seconds (default: no limit)."
    ).tag(config=True)
    read_timeout = Float(
        120.0, help="Fail when the server sends nothing, not even a ping, for this long."
    ).tag(config=True)
    max_retries = Int(2, help="Retries for connection failures and 429/502/503/504.").tag(
        config=True
    )
    max_retry_wait = Float(
        60.0, help="Longest wait between retries, even if Retry-After asks more."
    ).tag(config=True)
    max_image_bytes = Int(
        64 * 1024 * 1024, help="Largest image fetched from a remote URL, in bytes."
    ).tag(config=True)
    preview_max_px = Int(1024, help="Inline previews fit this many pixels; 0 = full size.").tag(
        config=True
    )
    progress = Enum(
        ["auto", "widget", "text"], "auto", help="Progress display: auto, widget or text."
    ).tag(config=True)
    allow_insecure_http = Bool(
        False, help="Allow plain http:// to a non-loopback base URL (sends the key unencrypted)."
    ).tag(config=True)

    @no_var_expand
    @line_cell_magic
    def meshimage(self, line: str, cell: str | None = None) -> ImageResult | None:
        """Generate images: `%%meshimage [options]` then option lines, then the prompt.

        Options (the magic line, or lines starting with `-` at the top of the cell):
          --model M, -n N (1..10), --size auto|WxH, --quality auto|low|medium|high|hd|standard
          --format/--output-format png|jpeg|webp, --output-compression 0..100
          --response-format url|b64_json, --background transparent|opaque|auto
          --moderation low|auto, --partial-images 0..3, --seed -1..2147483647
          --aspect-ratio R, --resolution R, --guidance-scale 1..10, --watermark true|false
          --image FILE|DATA_URL, --sequential-image-generation V,
          --sequential-image-generation-options JSON, --optimize-prompt-options JSON
          -p/--param KEY=VALUE   any other request field (VALUE parsed as JSON if it can be)
          -o/--out NAME          bind the ImageResult to NAME
          --no-stream            plain request instead of SSE streaming
          --no-display           bind, show no images
          --base-url URL|local   API base URL for this cell; local = embedded backend
          --timeout SECONDS      give up after this long
          --list-models          (line magic) list the image models
        `{name}` in the prompt is filled from your variables; `{{` and `}}` are braces.
        Lines starting with `#` are comments.
        """
        options = parse_cell(line, cell, self.shell.user_ns if self.shell else {})
        if options.list_models:
            self._list_models(self.client_settings(options.base_url))
            return None
        request = build_request(options, self.defaults())  # every check before any connection
        settings = self.client_settings(options.base_url)
        timeout = options.timeout if options.timeout is not None else self.timeout
        result = self._generate(request, settings, timeout)
        if options.out and self.shell is not None:
            self.shell.user_ns[options.out] = result
        return None if options.no_display else result

    # -- configuration ---------------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """Request fields from the configuration, checked like the options are."""
        values = {"model": self.model, "size": self.size, "quality": self.quality, "n": self.n}
        return {
            name: validate_field(name, str(value), source=f"MeshImageMagics.{name}")
            for name, value in values.items()
        }

    def client_settings(self, base_url: str | None = None) -> ClientSettings:
        base = base_url or self.base_url or os.environ.get("MESHAPI_BASE_URL") or DEFAULT_BASE_URL
        key = None
        if base.strip() == "local":
            from .local import ensure_local_server

            base = ensure_local_server().url  # the embedded backend needs no key: send none
        else:
            base = normalize_base_url(base, allow_insecure_http=self.allow_insecure_http)
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
        from .client import stream_generation
        from .events import Completed, count_images
        from .job import Job
        from .result import ImageResult
        from .view import make_view

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

    def _list_models(self, settings: ClientSettings) -> None:
        from IPython.display import display

        from .client import fetch_models
        from .job import Job

        (models,) = Job(lambda: fetch_models(settings)).run(lambda _: None)
        rows = [
            (
                str(m.get("id", "")),
                str(m.get("name", "")),
                "yes" if m.get("supports_image_edit") else "",
            )
            for m in models
        ]
        width = max([len(r[0]) for r in rows] + [2])
        text = "\n".join([f"{'id':<{width}}  name", *(f"{r[0]:<{width}}  {r[1]}" for r in rows)])
        cells = "".join(
            f"<tr><td><code>{html.escape(i)}</code></td><td>{html.escape(n)}</td><td>{e}</td></tr>"
            for i, n, e in rows
        )
        table = f"<table><tr><th>id</th><th>name</th><th>edits</th></tr>{cells}</table>"
        display({"text/plain": text, "text/html": table}, raw=True)
