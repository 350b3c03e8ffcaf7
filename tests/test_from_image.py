"""Back from an image: `mm.fields_of` gives the fields that made a saved image, and
`%mesh from PATH` writes the cell that makes it again. The round trip is judged by the
request bodies the embedded backend recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

import mesh_magics as mm
from mesh_magics.ipython import commands
from mesh_magics.local import LocalServer

from .support import run_cell

PROMPT = "A fox {kept} in the snow\n-- its second line"


def generation_bodies(server: LocalServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.path.endswith("/images/generations")]


def made(server: LocalServer, folder: Path, **fields: Any) -> Path:
    result = mm.generate(PROMPT, base_url=server.url, progress="none", **fields)
    return result.save(folder)[0]


@pytest.mark.parametrize("suffix", ["png", "jpeg", "webp"])
def test_generate_save_fields_of_generate_gives_the_same_request_body(
    server: LocalServer, tmp_path: Path, suffix: str
) -> None:
    path = made(
        server, tmp_path, size="64x64", seed=3, quality="high", output_format=suffix,
        params={"mesh_local": {"latency": 0}},
    )  # fmt: skip
    fields = mm.fields_of(path)
    assert fields == {
        "prompt": PROMPT, "model": "openai/gpt-image-1", "size": "64x64", "seed": 3,
        "quality": "high", "output_format": suffix, "params": {"mesh_local": {"latency": 0}},
    }  # fmt: skip
    mm.generate(**fields, base_url=server.url, progress="none")
    first, again = generation_bodies(server)
    assert again == first


def test_fields_of_an_image_of_a_result_and_of_an_opened_file(
    server: LocalServer, tmp_path: Path
) -> None:
    result = mm.generate(PROMPT, size="32x32", seed=5, base_url=server.url, progress="none")
    assert mm.fields_of(result[0]) == {
        "prompt": PROMPT, "model": "openai/gpt-image-1", "size": "32x32", "seed": 5,
    }  # fmt: skip
    path = result.save(tmp_path / "out.jpg")[0]
    with Image.open(path) as opened:
        assert mm.fields_of(opened) == mm.fields_of(result[0])


def test_an_image_without_provenance_is_one_line(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(mm.OptionError, match="carries no mesh-magics provenance"):
        mm.fields_of(tmp_path / "plain.png")


def test_mesh_from_prints_the_cell_that_makes_it_again_and_that_cell_does(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path
) -> None:
    path = made(server, tmp_path, size="64x64", seed=3, params={"mesh_local": {"latency": 0}})
    run = run_cell(ip, f"%mesh from {path} -o t_again")
    assert run.success, run.error
    cell = run.stdout.strip()
    assert cell.startswith("%%meshimage -o t_again\n") and "{{kept}}" in cell
    run = run_cell(ip, cell)
    assert run.success, run.error
    first, again = generation_bodies(server)
    assert again == first
    assert ip.user_ns["t_again"].request == first


def test_mesh_from_puts_the_cell_below_where_a_frontend_can_insert_it(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mesh_magics.views

    path = made(server, tmp_path, size="64x64")
    inserted: list[str] = []
    monkeypatch.setattr(mesh_magics.views, "interactive_frontend", lambda shell: True)
    monkeypatch.setattr(ip, "set_next_input", inserted.append)
    run = run_cell(ip, f"%mesh from {path}")
    assert run.success, run.error
    assert run.stdout == "" and inserted == [commands.cell_of(str(path))]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("%mesh from", "the following arguments are required: PATH"),
        ("%mesh from nope.png", "nope.png: cannot be read: No such file"),
    ],
)
def test_mesh_from_mistakes_are_one_line(ip: InteractiveShell, line: str, said: str) -> None:
    run = run_cell(ip, line)
    assert isinstance(run.error, mm.OptionError) and said in str(run.error)


def test_mesh_from_has_help(ip: InteractiveShell) -> None:
    run = run_cell(ip, "%mesh from -h")
    assert run.success and "usage: %mesh from" in run.stdout


def test_mesh_from_an_image_saved_without_its_prompt(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path
) -> None:
    result = mm.generate("A fox", size="32x32", base_url=server.url, progress="none")
    path = result.save(tmp_path, embed_prompt=False)[0]
    run = run_cell(ip, f"%mesh from {path}")
    assert isinstance(run.error, mm.OptionError) and "without its prompt" in str(run.error)
