"""The module-level API: `mm.generate`, `agenerate`, `edit`, `aedit`, `sweep`, `asweep`,
`start` and `batch`, each the method of the same name on a default client (`clients.py`) that
follows `%config` and the environment.

    import mesh_magics as mm
    r = mm.generate("A fox", size="1024x1024", n=2)            # blocks, shows progress
    r = await mm.agenerate("A fox", quality="high")            # any asyncio program
    h = mm.start("A fox")                                      # a handle, at once

Keyword arguments are the request fields (`ImageFields`), checked exactly like the
magic's options (a bad value is an `OptionError`, also a `ValueError`); `params={...}`
passes any other field, like `-p`. `replay=True` answers from the store like
`--replay`, `False` asks anew like `--fresh`, None follows the settings. `preset="NAME"`
takes the fields of a named preset (`presets.py`) under the ones given. Works in a plain
script: nothing here imports IPython or ipywidgets unless IPython is running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .clients import Handle, default_async_client, default_client
from .fields import ImageFields, Progress, Prompts, SweepFields

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..results.image_sweep import ImageSweep
    from ..results.result import ImageResult
    from .batches import ImageBatch


def generate(
    prompt: str,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[ImageFields],
) -> ImageResult:
    """Generate images for `prompt`; block until they are here and return the
    `ImageResult`. `stream=False` asks with one plain request instead of a stream of
    events (the magic's `--no-stream`). To run in the background, `mm.start(...)`."""
    return default_client().generate(
        prompt, base_url=base_url, timeout=timeout, progress=progress, replay=replay, preset=preset,
        stream=stream, params=params, **fields,
    )  # fmt: skip


async def agenerate(
    prompt: str,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[ImageFields],
) -> ImageResult:
    """`generate()` for asyncio code (a notebook's top-level `await` included). The work
    runs on the package's own loop thread; this coroutine only waits for it, so the
    caller's loop stays free. Cancelling it cancels the run."""
    return await default_async_client().generate(
        prompt, base_url=base_url, timeout=timeout, progress=progress, replay=replay, preset=preset,
        stream=stream, params=params, **fields,
    )  # fmt: skip


def edit(
    images: Any,
    prompt: str = "",
    mask: Any = None,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[ImageFields],
) -> ImageResult:
    """Edit images through `/v1/images/edits`; block until the result is here and return
    it.

    `images`: one SOURCE or a list of them (at most 16 images in all): an `ImageResult`
    (all its images), one of its images (`result[0]`), a PIL image, bytes, a path or a
    `data:` URL. The first image is edited, the others are references. `mask`: a PNG
    with an alpha channel at the first image's size; its transparent pixels mark what to
    change. Fields are the edit's: `operation` ("edit", "inpaint", "outpaint", "mix",
    "reframe", "upscale", "remove_background"), `upscale_factor`, `expand_factor`,
    `mask_feather`, `model`, `n`, `size`, ... Every input is checked before anything is
    sent; the result records each input's hash and name (`result.inputs`) and finds the
    stored results they came from (`result.parents`)."""
    return default_client().edit(
        images, prompt, mask, base_url=base_url, timeout=timeout, progress=progress,
        replay=replay, preset=preset, params=params, **fields,
    )  # fmt: skip


async def aedit(
    images: Any,
    prompt: str = "",
    mask: Any = None,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[ImageFields],
) -> ImageResult:
    """`edit()` for asyncio code."""
    return await default_async_client().edit(
        images, prompt, mask, base_url=base_url, timeout=timeout, progress=progress,
        replay=replay, preset=preset, params=params, **fields,
    )  # fmt: skip


def sweep(
    prompts: Prompts,
    *,
    concurrency: int | None = None,
    yes: bool = False,
    raise_errors: bool = True,
    edit: Any = None,
    mask: Any = None,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[SweepFields],
) -> ImageSweep:
    """Every combination of `prompts` and the list-valued fields (`model`, `size`,
    `quality`, `seed`, `output_format`, `background`, `moderation`), run concurrently;
    the `ImageSweep`. A table (`prompts` a list of dicts or a pandas DataFrame, with a
    `prompt` column) makes one run a row, no cross product: its columns are fields, the
    keywords apply to every row, and a row's own value wins (`row 3: quality: ...` when
    one is wrong, before anything is sent). More than `max_images_per_cell` images is an
    error before anything is sent, unless `yes=True`.

    When runs fail, the sweep is shown (in a notebook) and `SweepError` is raised; it
    carries the sweep as `.sweep`, whose `.retry()` runs the failed ones again.
    `raise_errors=False` returns the sweep instead (see `.failed`). Ctrl-C raises
    `RunInterrupted`, a `KeyboardInterrupt`, with the finished runs as `.partial`.

    `edit` (and `mask`): every run edits these images, as `mm.edit()` takes them; e.g.
    `mm.sweep("At night", edit=fox, model=["openai/gpt-image-1", "local/sketch"])`."""
    return default_client().sweep(
        prompts, concurrency=concurrency, yes=yes, raise_errors=raise_errors, edit=edit,
        mask=mask, base_url=base_url, timeout=timeout, progress=progress, replay=replay,
        preset=preset, stream=stream, params=params, **fields,
    )  # fmt: skip


def batch(
    prompts: Prompts,
    *,
    yes: bool = False,
    base_url: str | None = None,
    timeout: float | None = None,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    **fields: Unpack[SweepFields],
) -> ImageBatch:
    """The runs `mm.sweep` would make of the same arguments (prompts and listed values, or
    a table's rows), sent through the provider's Batch API: half the price, done at the
    server within 24 hours, surviving the kernel. Returns an `ImageBatch` at once: `.id`,
    `.status`, `.wait()`, `.cancel()`, and `.result()`, the `ImageSweep` (every image in
    the store, as a sweep's).

    The batch's id is kept in the store: the same runs asked again (the same cell after a
    kernel restart) attach to it, and nothing new is sent. `metadata` goes with the batch
    (string keys and values). A server that takes no image batches is a one-line
    `BatchError`; then run the same arguments with `mm.sweep`."""
    return default_client().batch(
        prompts, yes=yes, base_url=base_url, timeout=timeout, preset=preset, params=params,
        metadata=metadata, **fields,
    )  # fmt: skip


async def asweep(
    prompts: Prompts,
    *,
    concurrency: int | None = None,
    yes: bool = False,
    raise_errors: bool = True,
    edit: Any = None,
    mask: Any = None,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[SweepFields],
) -> ImageSweep:
    """`sweep()` for asyncio code; cancelling the awaiting task cancels every run."""
    return await default_async_client().sweep(
        prompts, concurrency=concurrency, yes=yes, raise_errors=raise_errors, edit=edit,
        mask=mask, base_url=base_url, timeout=timeout, progress=progress, replay=replay,
        preset=preset, stream=stream, params=params, **fields,
    )  # fmt: skip


def start(
    prompt: Prompts,
    *,
    edit: Any = None,
    mask: Any = None,
    concurrency: int | None = None,
    yes: bool = False,
    base_url: str | None = None,
    timeout: float | None = None,
    progress: Progress = "auto",
    replay: bool | None = None,
    preset: str | None = None,
    stream: bool = True,
    params: Mapping[str, Any] | None = None,
    **fields: Unpack[SweepFields],
) -> Handle:
    """Start a generation, an edit (`edit=images`) or a sweep (a list of prompts, or
    listed values) and return its handle at once: `status`, `done()`, `cancel()`,
    `wait(timeout)`, `result(timeout)`. In a notebook its progress and images land in the
    running cell's output; where nothing could show them after the cell (nbclient,
    papermill, a terminal), the cell waits for them at its end."""
    return default_client().start(
        prompt, edit=edit, mask=mask, concurrency=concurrency, yes=yes, base_url=base_url,
        timeout=timeout, progress=progress, replay=replay, preset=preset, stream=stream,
        params=params, **fields,
    )  # fmt: skip
