"""The public surface, as a Python user meets it: `mm.Client` and `mm.AsyncClient` with
the same methods, one connection pool per client, typed fields that match the schema,
and module-level functions whose return type never depends on a flag."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import typing

import pytest

import mesh_magics as mm
from mesh_magics.client.fields import ImageFields, SweepFields
from mesh_magics.engine.generation import Generation
from mesh_magics.local import LocalServer
from mesh_magics.results.image_sweep import ImageSweep
from mesh_magics.results.result import ImageResult
from mesh_magics.schema import REQUEST_FIELDS, SWEEPABLE
from mesh_magics.value_kinds import Choice

from .support import FAKE_KEY, open_sockets, script_env, settled


def test_the_typed_fields_are_the_schemas_request_fields() -> None:
    hints = typing.get_type_hints(ImageFields)
    assert set(hints) == set(REQUEST_FIELDS)
    assert set(typing.get_type_hints(SweepFields)) == set(REQUEST_FIELDS)
    for name, option in REQUEST_FIELDS.items():
        if isinstance(option.kind, Choice):  # every value the schema allows is typed
            allowed = set(typing.get_args(hints[name]))
            assert set(option.kind.values) <= allowed, name
    for name in SWEEPABLE:  # a sweep takes a list of each
        assert "Sequence" in str(typing.get_type_hints(SweepFields)[name]), name


def test_a_client_checks_its_settings_and_its_repr_never_shows_the_key() -> None:
    client = mm.Client(base_url="https://user:pw@api.example.com/v1", timeout=30, max_retries=1)
    shown = repr(client)
    assert shown.startswith("Client(base_url='https://api.example.com")
    assert "timeout=30" in shown and "max_retries=1" in shown
    assert FAKE_KEY not in shown and "pw" not in shown
    with pytest.raises(mm.OptionError, match="did you mean max_retries"):
        mm.Client(max_retry=3)
    with pytest.raises(mm.OptionError, match="timeout"):
        mm.Client(timeout=-1)
    with pytest.raises(mm.OptionError, match="progress"):
        mm.Client(progress="loud")  # type: ignore[arg-type]


def test_a_client_generates_edits_sweeps_and_starts_over_one_connection_pool(
    server: LocalServer,
) -> None:
    sockets_before = open_sockets()
    before = server.connections_accepted
    with mm.Client(base_url=server.url, progress="none") as client:
        fox = client.generate("A fox", size="64x64")
        grid = client.sweep("An owl", seed=[1, 2], size="64x64", concurrency=1)
        handle = client.start("A cat", size="64x64")
        assert isinstance(handle, Generation)
        cat = handle.result(timeout=30)
        # One pool: these runs, one after another, all went over one connection.
        assert server.connections_accepted - before == 1
        night = client.edit(fox, "The same fox at night")
        many = client.start(["A hen", "A cow"], size="64x64")
        assert isinstance(many, ImageSweep)
        assert many.result(timeout=30) is many
    assert isinstance(fox, ImageResult) and isinstance(night, ImageResult)
    assert night.is_edit and isinstance(grid, ImageSweep) and len(grid.results) == 2
    assert len(cat) == 1 and len(many.results) == 2
    assert settled(lambda: open_sockets() <= sockets_before, timeout=10), "the pool stayed open"


def test_an_async_client_awaits_the_same_methods(server: LocalServer) -> None:
    async def main() -> tuple[ImageResult, ImageResult, ImageSweep]:
        async with mm.AsyncClient(base_url=server.url, progress="none") as client:
            fox = await client.generate("A fox", size="64x64")
            night = await client.edit(fox, "At night")
            grid = await client.sweep(["An owl", "A cat"], size="64x64")
            return fox, night, grid

    fox, night, grid = asyncio.run(main())
    assert len(fox) == 1 and night.is_edit and len(grid.results) == 2


def test_an_async_sweep_with_failed_runs_raises_sweep_error(server: LocalServer) -> None:
    fault = {"mesh_local": {"fault": "status:500"}}

    async def main() -> None:
        await mm.asweep(["a fox", "an owl"], base_url=server.url, size="64x64",
                        progress="none", params=fault)  # fmt: skip

    with pytest.raises(mm.SweepError) as raised:
        asyncio.run(main())
    assert len(raised.value.sweep.failed) == 2


def test_the_module_functions_never_change_their_return_type_with_a_flag(
    server: LocalServer,
) -> None:
    for function in (mm.generate, mm.edit, mm.sweep):
        assert "background" not in inspect.signature(function).parameters
    with pytest.raises(mm.OptionError, match=r"call start\(\.\.\.\) \(mm\.start\)"):
        mm.generate("a fox", base_url=server.url, background=True)  # type: ignore[call-arg]
    assert server.request_count == 0
    assert inspect.signature(mm.generate).return_annotation == "ImageResult"


def test_start_aedit_and_asweep_from_a_plain_script(server: LocalServer) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import asyncio
            import mesh_magics as mm
            url = {server.url!r}
            handle = mm.start("a fox", base_url=url, size="64x64", progress="none")
            fox = handle.result(timeout=30)
            async def main():
                night = await mm.aedit(fox, "at night", base_url=url, progress="none")
                grid = await mm.asweep("an owl", seed=[1, 2], base_url=url, size="64x64",
                                       progress="none")
                return night, grid
            night, grid = asyncio.run(main())
            print(type(handle).__name__, len(fox), night.is_edit, len(grid.results))
        """),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=script_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Generation 1 True 2"


def test_the_module_functions_share_a_pool_per_api_and_key(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the openai SDK's module-level client: calls one after another reuse one
    connection; settings that differ (here the key, rotated in the environment) get a
    pool of their own, so a new key is never sent over an old client."""
    from mesh_magics.client.clients import _pool_key
    from mesh_magics.settings import client_settings, configured

    before = server.connections_accepted
    for seed in (1, 2, 3):
        mm.generate("a fox", base_url=server.url, size="64x64", seed=seed, progress="none")
    assert server.connections_accepted - before == 1
    remote = {**configured(), "base_url": "https://api.example.com"}
    first = _pool_key(client_settings(remote))
    assert _pool_key(client_settings(remote)) == first  # equal settings, one pool
    monkeypatch.setenv("MESHAPI_API_KEY", "rsk_rotated_0123456789")
    assert _pool_key(client_settings(remote)) != first
    assert "rsk_rotated" not in repr(_pool_key(client_settings(remote)))
