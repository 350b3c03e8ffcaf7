"""A notebook saved after `%%meshimage` carries each image once, at preview size, and its
nbconvert HTML export still shows every image.

Real kernels (nbclient) and real HTTP. The images are photo-like in the way that matters
here: noise, different per image, that no encoder can shrink. (The embedded backend draws
flat shapes that compress to almost nothing and would hide a copy too many.) A scripted
server answers each cell's plain JSON request from a path of its own.
"""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from PIL import Image

from mesh_magics.images import check_image
from mesh_magics.results.previews import make_preview

from .servers import ScriptedServer, b64, send_json
from .support import FAKE_KEY

SIDE = 1024
PREVIEW = 1024  # preview_max_px, the default
TILE = 640  # a grid tile: twice the 320 px it is shown at
DATA_URI = re.compile(r"data:image/[a-z+]+;base64,([A-Za-z0-9+/=]+)")


def noise(seed: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A SIDE x SIDE image of random pixels: as incompressible as images come."""
    pixels = random.Random(seed).randbytes(SIDE * SIDE * len(mode))
    buffer = io.BytesIO()
    Image.frombytes(mode, (SIDE, SIDE), pixels).save(buffer, fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class Case:
    """One cell: what the server sends, and the size each image should be kept at."""

    originals: list[bytes]
    revised: list[str | None]
    kept_px: int

    def answer(self) -> dict[str, object]:
        data = [
            {"b64_json": b64(image), **({"revised_prompt": text} if text else {})}
            for image, text in zip(self.originals, self.revised, strict=True)
        ]
        return {"created": 1, "data": data}

    def one_preview_each(self) -> int:
        """The bytes of one preview per image, made by the function the display uses."""
        images = [check_image(data, what="original") for data in self.originals]
        return sum(len(make_preview(image, self.kept_px).data) for image in images)


CASES = {
    "revised": Case(
        [noise(1)], ["A red fox curled up asleep in deep snow, photographed at dusk"], PREVIEW
    ),
    "grid": Case(
        [noise(seed) for seed in (2, 3, 4, 5)],
        [f"Fox {i} of 4, <b>standing</b> in fresh snow" for i in range(1, 5)],
        TILE,
    ),
    "webp": Case([noise(6, "WEBP")], [None], PREVIEW),
    "transparent": Case([noise(7, "PNG", "RGBA")], [None], PREVIEW),
}


@dataclass(frozen=True)
class Saved:
    cells: dict[str, nbformat.NotebookNode]  # the executed cell of each case, read back
    html: str  # nbconvert's HTML export of the saved notebook


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    workdir = tmp_path_factory.mktemp("saved-notebook")
    routes = {f"/{name}/v1/images/generations": send_json(c.answer()) for name, c in CASES.items()}
    nb = nbformat.v4.new_notebook()
    with ScriptedServer(routes) as api, pytest.MonkeyPatch.context() as env:
        env.setenv("MESHAPI_API_KEY", FAKE_KEY)  # the kernel inherits this environment
        env.delenv("MESHAPI_BASE_URL", raising=False)
        nb.cells = [nbformat.v4.new_code_cell("%load_ext mesh_magics")] + [
            nbformat.v4.new_code_cell(
                f"%%meshimage -o {name} -n {len(case.originals)} --no-stream "
                f"--base-url {api.url}/{name}\nA fox in the snow"
            )
            for name, case in CASES.items()
        ]
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        ).execute()
    path = workdir / "foxes.ipynb"
    nbformat.write(nb, path)
    back = nbformat.read(path, as_version=4)
    html, _ = HTMLExporter().from_notebook_node(back)
    yield Saved(dict(zip(CASES, back.cells[1:], strict=True)), html)


def stored_images(cell: nbformat.NotebookNode) -> list[bytes]:
    """Every image the saved cell holds: image/* outputs, and data URIs in any text."""
    found = []
    for output in cell.outputs:
        for mime, value in output.get("data", {}).items():
            if mime.startswith("image/"):
                found.append(base64.b64decode(value))
            elif isinstance(value, str):
                found += [base64.b64decode(uri) for uri in DATA_URI.findall(value)]
    return found


def long_side(data: bytes) -> int:
    return max(Image.open(io.BytesIO(data)).size)


@pytest.mark.parametrize("name", CASES)
def test_each_image_is_stored_once_at_preview_size(saved: Saved, name: str) -> None:
    case, cell = CASES[name], saved.cells[name]
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    stored = stored_images(cell)
    assert len(stored) == len(case.originals)
    assert [long_side(data) for data in stored] == [case.kept_px] * len(stored)
    assert sum(map(len, stored)) <= 1.1 * case.one_preview_each()


def test_a_single_image_is_an_ordinary_image_output_with_its_revised_prompt_as_text(
    saved: Saved,
) -> None:
    (result,) = [o for o in saved.cells["revised"].outputs if o.output_type == "execute_result"]
    assert set(result.data) == {"image/png", "text/plain"}
    revised = CASES["revised"].revised[0]
    assert result.data["text/plain"].endswith(f"revised prompt: {revised}")
    assert result.metadata["mesh_magics"] == {"revised_prompts": [revised]}
    assert len(result.data["text/plain"]) < 500


@pytest.mark.parametrize("name", ["webp", "transparent"])
def test_webp_and_transparency_are_shown_as_formats_every_renderer_reads(
    saved: Saved, name: str
) -> None:
    (result,) = [o for o in saved.cells[name].outputs if o.output_type == "execute_result"]
    expected = "image/png" if name == "transparent" else "image/jpeg"
    assert set(result.data) == {expected, "text/plain"}


def test_a_grid_is_one_html_output_of_captioned_tiles_shown_at_half_their_pixels(
    saved: Saved,
) -> None:
    (result,) = [o for o in saved.cells["grid"].outputs if o.output_type == "execute_result"]
    assert set(result.data) == {"text/html", "text/plain"}
    html = result.data["text/html"]
    assert re.findall(r'width="(\d+)" height="(\d+)"', html) == [("320", "320")] * 4
    assert html.count("&lt;b&gt;standing&lt;/b&gt;") == 4 * 2  # caption and alt
    assert "<b>" not in html
    assert result.data["text/plain"].splitlines()[1:] == [
        f"{i}: Fox {i} of 4, <b>standing</b> in fresh snow" for i in range(1, 5)
    ]


def test_the_html_export_shows_every_image(saved: Saved) -> None:
    assert saved.html.count("<img") == sum(len(case.originals) for case in CASES.values())
    assert FAKE_KEY not in saved.html
