"""Models say what they ignore: what `/v1/models` says a model takes and can do, read once
per API host, and said before anything is sent. A field the model does not take is one
line (a `meshimage:` note in a cell, a `UserWarning` at the caller's line in Python); an
edit the model cannot make is refused with nothing sent; where the catalogue says nothing,
nothing is said. Against the embedded backend over loopback HTTP, whose catalogue
publishes these flags (`openai/dall-e-3` takes no `background`, `vertex/imagen-3` lists no
parameters at all)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.engine import model_check
from mesh_magics.local import MODELS, LocalServer
from mesh_magics.request import ImageRequest

from .servers import ScriptedServer, b64, png_bytes, send_json
from .support import run_cell

DALLE = "openai/dall-e-3"
NOTE = f"{DALLE} does not take --background: the gateway would drop it silently"
GENERATIONS, EDITS = "/v1/images/generations", "/v1/images/edits"


@pytest.fixture(autouse=True)
def _no_kept_lists() -> Iterator[None]:
    """Each test reads its server's catalogue afresh."""
    model_check._listed.clear()
    yield
    model_check._listed.clear()


def refused(ip: InteractiveShell, server: LocalServer, cell: str) -> str:
    """Run `cell`; it fails with a one-line `OptionError`, binds nothing and sends no edit
    (the model list may be read for it). Returns the message."""
    run = run_cell(ip, cell)
    assert not run.success and isinstance(run.error, mm.OptionError), repr(run.error)
    (line,) = run.error._render_traceback_()
    assert line.startswith("OptionError: ") and "\n" not in line and len(line) < 400, line
    assert "t_out" not in ip.user_ns and posts(server, EDITS) == 0
    return line.removeprefix("OptionError: ")


def posts(server: LocalServer, path: str) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path == path)


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "does not take" in line]


# -- a field the model does not take ---------------------------------------------------------


def test_a_cell_setting_a_field_the_model_ignores_says_so_in_one_line_and_runs(
    ip: InteractiveShell, server: LocalServer
) -> None:
    run = run_cell(
        ip,
        f"%%meshimage -o t_fox --model {DALLE} --background transparent --quality hd "
        "--size 64x64 --no-display\nA fox",
    )
    assert run.success, run.error
    assert notes(run.stderr) == [f"meshimage: {NOTE}"]  # --quality: dall-e-3 takes it
    assert posts(server, GENERATIONS) == 1 and len(ip.user_ns["t_fox"]) == 1


def test_a_dry_run_sends_nothing_not_even_for_the_list(
    ip: InteractiveShell, server: LocalServer
) -> None:
    run = run_cell(ip, f"%%meshimage --model {DALLE} --background opaque --dry-run\nA fox")
    assert run.success and notes(run.stderr) == []
    assert server.requests == []


def test_a_sweep_says_it_once(ip: InteractiveShell, server: LocalServer) -> None:
    run = run_cell(
        ip,
        f"%%meshimage --model {DALLE},local/sketch --seed 1,2 --background transparent "
        "--size 64x64 --no-display\nA fox",
    )
    assert run.success, run.error
    assert notes(run.stderr) == [f"meshimage: {NOTE}"]  # local/sketch takes it
    assert posts(server, GENERATIONS) == 4


def test_mm_generate_warns_at_the_callers_line_and_runs(server: LocalServer) -> None:
    with pytest.warns(UserWarning) as caught:
        result = mm.generate(
            "A fox", model=DALLE, background="transparent", size="64x64",
            params={"style": "vivid", "sharpness": 3}, base_url=server.url, progress="none",
        )  # fmt: skip
    said = [str(w.message) for w in caught if "does not take" in str(w.message)]
    sharpness = f"{DALLE} does not take 'sharpness': the gateway would drop it silently"
    assert sorted(said) == sorted([NOTE, sharpness])  # style: dall-e-3 takes it
    assert {Path(w.filename).name for w in caught} == {"test_capabilities.py"}
    assert len(result) == 1 and posts(server, GENERATIONS) == 1


def test_the_catalogue_is_read_once_per_host(server: LocalServer) -> None:
    for _ in range(3):
        with pytest.warns(UserWarning, match="does not take --background"):
            mm.generate("A fox", model=DALLE, background="opaque", size="64x64",
                        base_url=server.url, progress="none")  # fmt: skip
    assert sum(1 for r in server.requests if r.path.startswith("/v1/models")) == 1


# -- where the catalogue says nothing --------------------------------------------------------


def test_a_model_without_a_parameter_list_brings_no_note(
    ip: InteractiveShell, server: LocalServer
) -> None:
    imagen = next(m for m in MODELS if m["id"] == "vertex/imagen-3")
    assert "supported_parameters" not in imagen
    run = run_cell(
        ip,
        "%%meshimage --model vertex/imagen-3 --background transparent --quality hd "
        "--size 64x64 --no-display\nA fox",
    )
    assert run.success and notes(run.stderr) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the call
        mm.generate("A fox", model="vertex/imagen-3", quality="hd", size="64x64",
                    base_url=server.url, progress="none")  # fmt: skip


def test_a_field_the_model_takes_brings_no_note(ip: InteractiveShell, server: LocalServer) -> None:
    run = run_cell(
        ip, "%%meshimage --background transparent --seed 3 --size 64x64 --no-display\nA fox"
    )
    assert run.success and notes(run.stderr) == []


def test_an_api_without_a_model_list_runs_without_a_word() -> None:
    answer = {"created": 1, "data": [{"b64_json": b64(png_bytes())}]}
    with ScriptedServer({GENERATIONS: send_json(answer)}) as api, warnings.catch_warnings():
        warnings.simplefilter("error")
        result = mm.generate("A fox", model=DALLE, background="opaque", stream=False,
                             base_url=api.url, progress="none")  # fmt: skip
    assert len(result) == 1 and api.paths().count(GENERATIONS) == 1


def test_a_list_that_does_not_come_holds_the_run_back_only_a_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_check, "WAIT_SECONDS", 0.5)
    released = threading.Event()

    def stalled(handler: Any) -> None:
        released.wait(60)
        send_json([])(handler)

    answer = {"created": 1, "data": [{"b64_json": b64(png_bytes())}]}
    with ScriptedServer({"/v1/models": stalled, GENERATIONS: send_json(answer)}) as api:
        began = time.monotonic()
        try:
            result = mm.generate("A fox", model=DALLE, background="opaque", stream=False,
                                 base_url=api.url, progress="none")  # fmt: skip
        finally:
            released.set()
        assert time.monotonic() - began < 30  # not the 60 s the list takes
    assert len(result) == 1


# -- an edit the model cannot make -----------------------------------------------------------


@pytest.fixture
def fox(ip: InteractiveShell) -> None:
    assert run_cell(ip, "%%meshimage -o t_fox --size 64x48 --no-display\nA fox").success


def test_an_edit_on_a_model_that_cannot_edit_is_refused_and_nothing_is_sent(
    ip: InteractiveShell, server: LocalServer, fox: None
) -> None:
    message = refused(ip, server, f"%%meshimage -o t_out --edit t_fox[0] --model {DALLE}\nNight")
    assert DALLE in message and "does not support edits" in message
    assert "local/sketch, openai/gpt-image-1" in message  # the models that do
    assert posts(server, EDITS) == 0
    with pytest.raises(mm.OptionError, match="does not support edits"):
        mm.edit(ip.user_ns["t_fox"], "Night", model=DALLE, base_url=server.url, progress="none")
    assert posts(server, EDITS) == 0


@pytest.mark.parametrize(
    ("flag", "options", "says"),
    [
        ("supports_image_inpaint", "--mask t_mask", "a --mask (inpainting)"),
        ("supports_image_reference", "--edit t_fox[1]", "reference images"),
        ("supports_image_upscale", "--operation upscale", "--operation upscale"),
    ],
)
def test_an_edit_the_catalogue_says_the_model_cannot_make_is_refused(
    ip: InteractiveShell,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    options: str,
    says: str,
) -> None:
    sketch = next(m for m in MODELS if m["id"] == "local/sketch")
    monkeypatch.setitem(sketch, flag, False)  # what the server publishes from now on
    assert run_cell(ip, "%%meshimage -o t_fox -n 2 --size 64x48 --no-display\nA fox").success
    from PIL import Image

    ip.user_ns["t_mask"] = Image.new("RGBA", (64, 48))
    cell = f"%%meshimage -o t_out --edit t_fox[0] {options} --model local/sketch\nNight"
    message = refused(ip, server, cell)
    assert says in message and "local/sketch" in message.partition(":")[0]
    assert "models that do: openai/gpt-image-1" in message
    assert posts(server, EDITS) == 0


# -- what a catalogue entry may look like ------------------------------------------------------


def test_parameters_as_a_list_or_a_mapping_and_anything_else_says_nothing() -> None:
    assert model_check.taken_parameters({"supported_parameters": ["seed"]}) == {"seed"}
    mapping = {"supported_parameters": {"seed": {"type": "boolean"}, "resolution": {}}}
    assert model_check.taken_parameters(mapping) == {"seed", "resolution"}
    for said in (None, "seed", [1, 2], 3):
        assert model_check.taken_parameters({"supported_parameters": said}) is None
    request = ImageRequest({"prompt": "A fox", "model": "m", "seed": 1, "stream": True})
    models: dict[str, dict[str, Any]] = {"m": {"id": "m", "supported_parameters": []}}
    assert model_check.ignored_fields(models, request) == [
        "m does not take --seed: the gateway would drop it silently"
    ]
    assert model_check.ignored_fields({"m": {"id": "m"}}, request) == []
    assert model_check.ignored_fields(None, request) == []
