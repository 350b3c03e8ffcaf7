"""`Client` and `AsyncClient`: the public surface, in the manner of httpx and the openai
SDK. Each holds its settings (checked as `%config` checks them; the key is never one of
them) and one connection pool for the runs it starts, and has the same methods:

    with mm.Client(base_url="local") as client:          # or: async with mm.AsyncClient(...)
        r = client.generate("A fox", size="1024x1024")   # ImageResult
        e = client.edit(r, "The same fox at night")       # ImageResult
        s = client.sweep(["A fox", "A cat"], seed=[1, 2]) # ImageSweep
        h = client.start("A fox")                         # a Handle: status, cancel(), ...

`generate`, `edit` and `sweep` block (the async client's are awaited) and always return
the same type; `start` returns a `Handle` at once, whatever it started: a `Generation`
for a prompt, an `ImageSweep` for several prompts or listed values. The module-level
`mm.generate`, `mm.agenerate`, `mm.edit`, `mm.aedit`, `mm.sweep`, `mm.asweep` and
`mm.start` use a default client that follows `%config` and the environment, and keeps no
connections between calls.

Every method also takes the per-call settings `base_url`, `timeout`, `progress` and
`replay`, which win over the client's for that call, and `preset` (`presets.py`): the
fields of a named preset, under the fields given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import threading
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import OptionError, warn_caller
from ..presets import with_preset
from ..redact import display_url
from ..schema import SETTINGS, check
from ..settings import configured
from .fields import ImageFields, Progress, Prompts, SweepFields
from .prepare import prepare_call
from .running import (
    await_run,
    await_sweep,
    run_in_foreground,
    run_sweep,
    start_run,
    start_sweep,
)
from .sweeps import plan_sweep

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..engine.generation import Generation
    from ..engine.sweeps import SweepPlan
    from ..http.client import SharedClient
    from ..results.image_sweep import ImageSweep
    from ..results.result import ImageResult
    from ..settings import ClientSettings
    from .batches import ImageBatch


class Handle(Protocol):
    """What `start()` returns: a run that goes on while the caller does other things,
    shaped like `concurrent.futures.Future` (a `Generation`, or an `ImageSweep`)."""

    @property
    def status(self) -> str: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def result(self, timeout: float | None = None) -> Any: ...


class _Client:
    """What `Client` and `AsyncClient` share: settings, the pool, and the planning of runs."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress = "auto",
        replay: bool | None = None,
        **settings: Any,
    ) -> None:
        given = {"base_url": base_url, "timeout": timeout, **settings}
        self._overrides = {name: _setting(name, value) for name, value in given.items()
                           if value is not None}  # fmt: skip
        self._progress = check(SETTINGS["progress"], progress, source="progress")
        self._replay = replay
        self._pools: dict[Hashable, SharedClient] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting this client runs with now: `%config` and the environment, with
        the client's own on top."""
        return {**configured(), **self._overrides}

    def __repr__(self) -> str:
        shown = [
            f"{name}={display_url(value) if name == 'base_url' else value!r}"
            for name, value in self._overrides.items()
        ]
        if self._progress != "auto":
            shown.append(f"progress={self._progress!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- planning runs -------------------------------------------------------------------

    def _run(
        self,
        prompt: Any,
        fields: dict[str, Any],
        params: Mapping[str, Any] | None,
        call: dict[str, Any],
        *,
        edit: tuple[Any, Any] | None = None,
        stream: Any = True,
    ) -> tuple[Generation, str]:
        _no_run_mode(fields)
        fields = with_preset(call.get("preset"), fields, as_flags=False)
        run, progress = prepare_call(
            prompt,
            fields,
            params,
            call.get("base_url"),
            call.get("timeout"),
            call.get("progress") or self._progress,
            self._replay if call.get("replay") is None else call["replay"],
            edit=edit,
            stream=stream,
            config=self.settings,
        )
        run.client = self._pool(run.settings)
        return run, progress

    def _sweep(
        self,
        prompts: Prompts,
        fields: dict[str, Any],
        params: Mapping[str, Any] | None,
        call: dict[str, Any],
        **plan: Any,
    ) -> tuple[ImageSweep, SweepPlan, str]:
        _no_run_mode(fields)
        fields = with_preset(call.get("preset"), fields, as_flags=False)
        return plan_sweep(
            prompts,
            fields,
            params,
            config=self.settings,
            base_url=call.get("base_url"),
            timeout=call.get("timeout"),
            progress=call.get("progress") or self._progress,
            replay=self._replay if call.get("replay") is None else call["replay"],
            pool=self._pool,
            **plan,
        )

    def _start(
        self,
        prompt: Prompts,
        fields: dict[str, Any],
        params: Mapping[str, Any] | None,
        call: dict[str, Any],
        *,
        edit: Any,
        mask: Any,
        concurrency: int | None,
        yes: bool,
        stream: Any,
    ) -> Handle:
        listed = any(isinstance(value, list | tuple) for value in fields.values())
        if isinstance(prompt, str) and not listed:
            images = None if edit is None else (edit, mask)
            run, progress = self._run(prompt, fields, params, call, edit=images, stream=stream)
            return start_run(run, progress)
        made, planned, progress = self._sweep(
            prompt, fields, params, call, edit=edit, mask=mask, concurrency=concurrency,
            yes=yes, stream=stream,
        )  # fmt: skip
        return start_sweep(made, planned, progress)

    def _batch(
        self,
        prompts: Prompts,
        fields: dict[str, Any],
        params: Mapping[str, Any] | None,
        call: dict[str, Any],
        *,
        yes: bool,
        metadata: Mapping[str, str] | None,
    ) -> ImageBatch:
        from .batches import open_batch

        made, planned, _ = self._sweep(
            prompts, fields, params, {**call, "replay": False}, yes=yes, stream=False
        )
        return open_batch(made, planned.made(len(made)), note=warn_caller, metadata=metadata)

    # -- the pool ------------------------------------------------------------------------

    def _pool(self, settings: ClientSettings) -> SharedClient:
        """The connection pool of this client for these settings. Settings that differ
        (another API, another key, other timeouts) get a pool of their own; past
        `MAX_POOLS`, the least recently used one is closed."""
        from ..http.client import SharedClient

        key = _pool_key(settings)
        with self._lock:
            pool = self._pools.pop(key, None) or SharedClient(settings, runs=None)
            self._pools[key] = pool  # the newest last
            evicted = list(self._pools)[: max(0, len(self._pools) - MAX_POOLS)]
            old = [self._pools.pop(name) for name in evicted]
        for stale in old:
            stale.close()
        return pool

    def _pools_to_close(self) -> list[SharedClient]:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        return pools


class Client(_Client):
    """Generate, edit and sweep images, blocking until they are here; `start` for a
    handle. A context manager: leaving it closes the connection pool."""

    def generate(
        self,
        prompt: str,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[ImageFields],
    ) -> ImageResult:
        """Images for `prompt`, once they are here (see `mm.generate`)."""
        call = _call(base_url, timeout, progress, replay, preset)
        run, mode = self._run(prompt, dict(fields), params, call, stream=stream)
        return run_in_foreground(run, mode)

    def edit(
        self,
        images: Any,
        prompt: str = "",
        mask: Any = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[ImageFields],
    ) -> ImageResult:
        """`images` edited through `/v1/images/edits` (see `mm.edit`)."""
        call = _call(base_url, timeout, progress, replay, preset)
        run, mode = self._run(prompt, dict(fields), params, call, edit=(images, mask))
        return run_in_foreground(run, mode)

    def sweep(
        self,
        prompts: Prompts,
        *,
        concurrency: int | None = None,
        yes: bool = False,
        raise_errors: bool = True,
        edit: Any = None,
        mask: Any = None,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[SweepFields],
    ) -> ImageSweep:
        """Every combination of `prompts` and the listed values, or every row of a table
        (a list of dicts, a DataFrame), run concurrently (see `mm.sweep`)."""
        call = _call(base_url, timeout, progress, replay, preset)
        made, planned, mode = self._sweep(
            prompts, dict(fields), params, call, edit=edit, mask=mask,
            concurrency=concurrency, yes=yes, stream=stream,
        )  # fmt: skip
        return run_sweep(made, planned, mode, raise_errors=raise_errors)

    def batch(
        self,
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
        """The runs a `sweep` of the same arguments would make, sent through the Batch API
        (see `mm.batch`): its handle, at once."""
        call = _call(base_url, timeout, None, None, preset)
        return self._batch(prompts, dict(fields), params, call, yes=yes, metadata=metadata)

    def start(
        self,
        prompt: Prompts,
        *,
        edit: Any = None,
        mask: Any = None,
        concurrency: int | None = None,
        yes: bool = False,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[SweepFields],
    ) -> Handle:
        """Start a generation, an edit (`edit=`) or a sweep (several prompts, or listed
        values) and return its handle at once (see `mm.start`)."""
        call = _call(base_url, timeout, progress, replay, preset)
        return self._start(prompt, dict(fields), params, call, edit=edit, mask=mask,
                           concurrency=concurrency, yes=yes, stream=stream)  # fmt: skip

    def close(self) -> None:
        """Close the connection pool (runs still going keep their own connection)."""
        for pool in self._pools_to_close():
            pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Client):
    """`Client` for asyncio code: `generate`, `edit` and `sweep` are awaited; the work runs
    on the package's own loop thread, so the caller's loop stays free, and cancelling
    the awaiting task cancels the runs."""

    async def generate(
        self,
        prompt: str,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[ImageFields],
    ) -> ImageResult:
        call = _call(base_url, timeout, progress, replay, preset)
        run, mode = self._run(prompt, dict(fields), params, call, stream=stream)
        return await await_run(run, mode)

    async def edit(
        self,
        images: Any,
        prompt: str = "",
        mask: Any = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[ImageFields],
    ) -> ImageResult:
        call = _call(base_url, timeout, progress, replay, preset)
        run, mode = self._run(prompt, dict(fields), params, call, edit=(images, mask))
        return await await_run(run, mode)

    async def sweep(
        self,
        prompts: Prompts,
        *,
        concurrency: int | None = None,
        yes: bool = False,
        raise_errors: bool = True,
        edit: Any = None,
        mask: Any = None,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[SweepFields],
    ) -> ImageSweep:
        call = _call(base_url, timeout, progress, replay, preset)
        made, planned, mode = self._sweep(
            prompts, dict(fields), params, call, edit=edit, mask=mask,
            concurrency=concurrency, yes=yes, stream=stream,
        )  # fmt: skip
        return await await_sweep(made, planned, mode, raise_errors=raise_errors)

    async def batch(
        self,
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
        """As `Client.batch`, the upload awaited; wait for the handle's result with
        `await asyncio.to_thread(batch.result)`."""
        call = _call(base_url, timeout, None, None, preset)
        return await asyncio.to_thread(
            self._batch, prompts, dict(fields), params, call, yes=yes, metadata=metadata
        )

    def start(
        self,
        prompt: Prompts,
        *,
        edit: Any = None,
        mask: Any = None,
        concurrency: int | None = None,
        yes: bool = False,
        base_url: str | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        replay: bool | None = None,
        preset: str | None = None,
        stream: bool = True,
        params: Mapping[str, Any] | None = None,
        **fields: Unpack[SweepFields],
    ) -> Handle:
        """As `Client.start`: the handle at once (await it with `asyncio.wrap_future` on
        a `Generation`'s `.future`, or poll `.done()`)."""
        call = _call(base_url, timeout, progress, replay, preset)
        return self._start(prompt, dict(fields), params, call, edit=edit, mask=mask,
                           concurrency=concurrency, yes=yes, stream=stream)  # fmt: skip

    async def aclose(self) -> None:
        """Close the connection pool."""
        pools = self._pools_to_close()
        await asyncio.gather(*(asyncio.to_thread(pool.close) for pool in pools))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# -- the default clients -----------------------------------------------------------------------

_defaults: dict[type, _Client] = {}


def default_client() -> Client:
    """The client the module-level functions use: it follows `%config` and the
    environment, and keeps one connection pool per API, as the openai SDK's module-level
    client does (an interrupted run still closes its own connection)."""
    return _default(Client)  # type: ignore[return-value]


def default_async_client() -> AsyncClient:
    return _default(AsyncClient)  # type: ignore[return-value]


def _default(kind: type[_Client]) -> _Client:
    if kind not in _defaults:
        _defaults[kind] = kind()
    return _defaults[kind]


# -- pieces ------------------------------------------------------------------------------------


MAX_POOLS = 8  # pools a client keeps (one per API and settings); more: the oldest closes


def _pool_key(settings: ClientSettings) -> Hashable:
    """What makes two runs' settings share a pool: every field, the key by its digest
    (a `Secret` compares by identity, and the key itself is kept nowhere new)."""
    key = settings.api_key
    digest = hashlib.sha256(key.reveal().encode()).hexdigest() if key is not None else None
    return (dataclasses.replace(settings, api_key=None), digest)


def _setting(name: str, value: Any) -> Any:
    option = SETTINGS.get(name)
    if option is None:
        close = difflib.get_close_matches(name, SETTINGS, 1, 0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise OptionError(f"unknown setting {name!r}{hint} (the settings of MeshImageMagics)")
    return check(option, value, source=name)


def _call(
    base_url: str | None,
    timeout: float | None,
    progress: str | None,
    replay: bool | None,
    preset: str | None,
) -> dict[str, Any]:
    return {"base_url": base_url, "timeout": timeout, "progress": progress, "replay": replay,
            "preset": preset}  # fmt: skip


def _no_run_mode(fields: Mapping[str, Any]) -> None:
    """`background` is the API's field (transparent, opaque, auto); running in the
    background is `start()`."""
    if isinstance(fields.get("background"), bool):
        raise OptionError(
            "background= is the API's field ('transparent', 'opaque' or 'auto'); to run in "
            "the background, call start(...) (mm.start), which returns the handle"
        )
