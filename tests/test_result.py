"""`ImageResult`: images, metadata, saving, and how it displays."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from mesh_magics.images import check_image
from mesh_magics.result import ImageResult, safe_stem


def encoded(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    color = (200, 80, 40, 128) if mode == "RGBA" else (200, 80, 40)
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def result_of(
    *blobs: bytes, prompt: str = "A fox, in snow!", revised: str | None = None, **kw: object
) -> ImageResult:
    images = [check_image(b, what="test image", revised_prompt=revised) for b in blobs]
    return ImageResult(
        images,
        request={"prompt": prompt, "n": len(blobs)},
        model="openai/gpt-image-1",
        request_id="req_1",
        elapsed=1.5,
        **kw,
    )  # type: ignore[arg-type]


def test_sequence_of_pil_images_with_info() -> None:
    result = result_of(encoded(40, 30), encoded(20, 10, "JPEG"), revised="a fox in deep snow")
    assert len(result) == 2 and result[-1].size == (20, 10)
    assert [im.size for im in result] == [(40, 30), (20, 10)] == [im.size for im in result.images]
    assert [im.size for im in result[0:1]] == [(40, 30)]
    assert result[0].info["prompt"] == "A fox, in snow!"
    assert result[0].info["revised_prompt"] == "a fox in deep snow"
    assert result[0].info["model"] == "openai/gpt-image-1"
    assert result.formats == ["png", "jpeg"] and result.data[1].startswith(b"\xff\xd8")
    with pytest.raises(IndexError):
        result[2]


def test_summary_and_repr() -> None:
    result = result_of(encoded(40, 30))
    assert repr(result) == "<ImageResult 1 image · openai/gpt-image-1 · 40x30 png · 1.5 s>"


def test_save_writes_safe_names_with_metadata(tmp_path: Path) -> None:
    result = result_of(encoded(40, 30), encoded(20, 10, "JPEG"), revised="deeper snow")
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == ["a-fox-in-snow-1.png", "a-fox-in-snow-2.jpg"]
    png = Image.open(paths[0])
    assert png.text["prompt"] == "A fox, in snow!" and png.text["model"] == "openai/gpt-image-1"
    assert png.size == (40, 30)
    jpeg = Image.open(paths[1])
    assert b"deeper snow" in jpeg.info["comment"] and jpeg.size == (20, 10)
    again = result.save(tmp_path)
    assert again[0].name == "a-fox-in-snow-1-v2.png"  # never overwrites
    assert not list(tmp_path.glob(".mesh-*"))  # no temporary files left


@pytest.mark.parametrize(
    "prompt", ["../../etc/passwd", "a/b\\c\0d", "ü" * 300, "", "..", "🦊 " * 80]
)
def test_saved_names_stay_inside_the_directory(tmp_path: Path, prompt: str) -> None:
    (path,) = result_of(encoded(8, 8), prompt=prompt).save(tmp_path / "out")
    assert path.parent == tmp_path / "out" and len(path.name) < 80
    assert path.name == f"{safe_stem(prompt)}.png"


def test_webp_is_saved_with_a_sidecar_and_displayed_as_png_or_jpeg(tmp_path: Path) -> None:
    result = result_of(encoded(30, 20, "WEBP", "RGBA"))
    (path,) = result.save(tmp_path)
    assert path.suffix == ".webp" and Path(str(path) + ".json").exists()
    data, _ = result._repr_mimebundle_()
    assert "image/png" in data and "image/webp" not in data  # alpha kept as PNG


def test_single_image_displays_as_an_ordinary_image_output() -> None:
    data, metadata = result_of(encoded(40, 30))._repr_mimebundle_()
    assert set(data) == {"image/png", "text/plain"}
    assert Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).size == (40, 30)
    assert metadata["image/png"] == {"width": 40, "height": 30}


def test_previews_are_capped_but_the_result_keeps_full_size() -> None:
    result = result_of(encoded(2000, 1000), preview_max_px=500)
    data, _ = result._repr_mimebundle_()
    (mime,) = [k for k in data if k.startswith("image/")]
    assert Image.open(io.BytesIO(base64.b64decode(data[mime]))).size == (500, 250)
    assert result[0].size == (2000, 1000)


def test_several_images_show_a_grid_with_captions_and_a_plain_image() -> None:
    result = result_of(encoded(40, 30), encoded(40, 30), encoded(40, 30), revised="<b>fox</b>")
    data, _ = result._repr_mimebundle_()
    assert data["text/html"].count("<img ") == 3
    assert "&lt;b&gt;fox&lt;/b&gt;" in data["text/html"]
    assert "image/jpeg" in data or "image/png" in data


def test_a_crash_mid_write_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = result_of(encoded(40, 30), encoded(40, 30))
    calls = []

    def crash_on_second(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a-fox-in-snow-1.png"]  # whole, or absent
    assert Image.open(tmp_path / "a-fox-in-snow-1.png").size == (40, 30)
