"""`ImageResult`: images, metadata, saving, and how it displays."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import re
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mesh_magics.errors import MeshError, SaveError
from mesh_magics.images import check_image
from mesh_magics.results import saving as files
from mesh_magics.results.metadata import read_metadata
from mesh_magics.results.names import safe_stem
from mesh_magics.results.result import ImageResult


def encoded(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    color = (200, 80, 40, 128) if mode == "RGBA" else (200, 80, 40)
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def result_of(
    *blobs: bytes,
    prompt: str = "A fox, in snow!",
    revised: str | None = None,
    request: dict[str, object] | None = None,
    **kw: object,
) -> ImageResult:
    images = [check_image(b, what="test image", revised_prompt=revised) for b in blobs]
    return ImageResult(
        images,
        request=request or {"prompt": prompt, "n": len(blobs)},
        model="openai/gpt-image-1",
        request_id="req_1",
        elapsed=1.5,
        **kw,
    )  # type: ignore[arg-type]


def shown_images(data: dict[str, str]) -> list[Image.Image]:
    """Every image a bundle carries: image/* outputs and data URIs inside its HTML."""
    blobs = [base64.b64decode(v) for k, v in data.items() if k.startswith("image/")]
    blobs += [
        base64.b64decode(uri)
        for uri in re.findall(
            r"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)", data.get("text/html", "")
        )
    ]
    return [Image.open(io.BytesIO(blob)) for blob in blobs]


# -- the images and what came with them ----------------------------------------------------


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


# -- saving into a folder ------------------------------------------------------------------


def test_save_writes_safe_names_with_metadata(tmp_path: Path) -> None:
    result = result_of(encoded(40, 30), encoded(20, 10, "JPEG"), revised="deeper snow")
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == ["a-fox-in-snow-1.png", "a-fox-in-snow-2.jpg"]
    png = Image.open(paths[0])
    assert png.text["prompt"] == "A fox, in snow!" and png.text["model"] == "openai/gpt-image-1"
    assert png.size == (40, 30)
    jpeg = Image.open(paths[1])
    assert b"deeper snow" in jpeg.info["xmp"] and jpeg.size == (20, 10)
    again = result.save(tmp_path)
    assert again[0].name == "a-fox-in-snow-1-v2.png"  # never overwrites
    assert Image.open(paths[0]).size == (40, 30)
    assert not list(tmp_path.glob(".mesh-*"))  # no temporary files left


def test_overwrite_replaces_the_prompt_named_files(tmp_path: Path) -> None:
    (first,) = result_of(encoded(40, 30)).save(tmp_path)
    (second,) = result_of(encoded(8, 6)).save(tmp_path, overwrite=True)
    assert second == first and Image.open(second).size == (8, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, files.MANIFEST]


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("一只狐狸在雪中", "一只狐狸在雪中.png"),
        ("Лиса в снегу", "лиса-в-снегу.png"),
        ("नमस्ते दुनिया", "नमस्ते-दुनिया.png"),  # combining vowel signs kept with their letters
        ("🦊 in the snow", "in-the-snow.png"),
        ("🦊🦊🦊", "image.png"),
        ("CON", "con-image.png"),  # a name Windows reserves
    ],
)
def test_prompts_in_any_script_name_their_files(tmp_path: Path, prompt: str, name: str) -> None:
    (path,) = result_of(encoded(8, 8), prompt=prompt).save(tmp_path)
    assert path.name == name and path.exists()
    assert Image.open(path).text["prompt"] == prompt


@pytest.mark.parametrize(
    "prompt", ["../../etc/passwd", "a/b\\c\0d", "ü" * 300, "", "..", "🦊 " * 80, "-rf ."]
)
def test_saved_names_stay_inside_the_directory(tmp_path: Path, prompt: str) -> None:
    (path,) = result_of(encoded(8, 8), prompt=prompt).save(tmp_path / "out")
    assert path.parent == tmp_path / "out" and len(path.name.encode()) <= 110
    assert path.name == f"{safe_stem(prompt)}.png"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_prompt_gives_a_short_safe_stem(prompt: str) -> None:
    stem = safe_stem(prompt)
    assert stem and stem not in (".", "..") and stem[0] not in ".-"
    assert not any(c in stem for c in "/\\\0") and all(c.isprintable() for c in stem)
    assert len(stem.encode("utf-8")) <= 100 and unicodedata.is_normalized("NFC", stem)


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=200))
def test_any_prompt_saves_inside_the_folder(prompt: str) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "out"
        (path,) = result_of(encoded(4, 4), prompt=prompt).save(folder)
        assert path.parent == folder and path.resolve().parent == folder.resolve()
        assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, files.MANIFEST])


# -- saving to a file name -----------------------------------------------------------------


def test_a_file_name_is_a_file_not_a_folder(tmp_path: Path) -> None:
    (path,) = result_of(encoded(40, 30)).save(tmp_path / "out" / "fox.png")
    assert path == tmp_path / "out" / "fox.png" and path.is_file()
    assert Image.open(path).text["prompt"] == "A fox, in snow!"


def test_several_images_to_one_file_name_are_numbered(tmp_path: Path) -> None:
    paths = result_of(encoded(40, 30), encoded(20, 10)).save(tmp_path / "fox.png")
    assert [p.name for p in paths] == ["fox-1.png", "fox-2.png"]
    assert [Image.open(p).size for p in paths] == [(40, 30), (20, 10)]


def test_the_suffix_names_the_format_you_get(tmp_path: Path) -> None:
    jpeg_as_png, transparent_as_jpeg, webp_as_webp = (
        result_of(encoded(40, 30, "JPEG")).save(tmp_path / "a.png")[0],
        result_of(encoded(40, 30, "PNG", "RGBA")).save(tmp_path / "b.JPG")[0],
        result_of(encoded(40, 30, "WEBP")).save(tmp_path / "c.webp")[0],
    )
    assert Image.open(jpeg_as_png).format == "PNG"
    assert Image.open(jpeg_as_png).text["model"] == "openai/gpt-image-1"
    flattened = Image.open(transparent_as_jpeg)
    assert flattened.format == "JPEG" and transparent_as_jpeg.name == "b.JPG"
    assert flattened.getpixel((0, 0))[0] > 200  # half-transparent red over white
    assert Image.open(webp_as_webp).format == "WEBP"
    assert read_metadata(webp_as_webp)["prompt"] == "A fox, in snow!"  # in its XMP


def test_a_taken_file_name_is_an_error_unless_overwrite(tmp_path: Path) -> None:
    taken = tmp_path / "fox-2.png"
    taken.write_bytes(b"mine")
    result = result_of(encoded(40, 30), encoded(20, 10))
    with pytest.raises(SaveError) as caught:
        result.save(tmp_path / "fox.png")
    assert str(taken) in str(caught.value) and "overwrite=True" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox-2.png"]  # nothing half saved
    assert taken.read_bytes() == b"mine"
    result.save(tmp_path / "fox.png", overwrite=True)
    assert Image.open(taken).size == (20, 10)


def test_stem_with_a_file_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SaveError, match="stem="):
        result_of(encoded(8, 8)).save(tmp_path / "fox.png", stem="other")


# -- when saving fails ---------------------------------------------------------------------


def fails_to_save(result: ImageResult, *args: object, **kw: object) -> str:
    """Save, expect a one-line `SaveError`; return its message."""
    with pytest.raises(SaveError) as caught:
        result.save(*args, **kw)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, MeshError) and isinstance(error, OSError)
    (line,) = error._render_traceback_()
    assert "SaveError" in line and len(line) < 200 + len(str(args[0]))  # the path, and a line
    return str(error)


def test_saving_into_a_file_says_it_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("mine")
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / "notes")
    assert str(tmp_path / "notes") in message and "not a folder" in message
    assert (tmp_path / "notes").read_text() == "mine"


def test_a_folder_under_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("mine")
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / "notes" / "fox.png")
    assert "not a folder" in message


def test_a_file_name_that_is_too_long_says_so(tmp_path: Path) -> None:
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / ("f" * 300 + ".png"))
    assert "too long" in message and "shorter" in message


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "no space left"),
    ],
)
def test_an_unwritable_folder_names_the_path_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    def refuse(*args: object, **kw: object) -> object:
        raise OSError(code, os.strerror(code), str(tmp_path / ".mesh-x.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what such a file system answers
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path)
    assert words in message and str(tmp_path / "a-fox-in-snow.png") in message
    assert ".mesh-" not in message  # the path the user asked for, not our temporary file


def test_a_file_that_appears_while_saving_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = files._temporary

    def and_meanwhile(folder: Path, data: bytes) -> Path:
        temp = real(folder, data)
        for name in ("a-fox-in-snow.png", "fox.png"):
            (folder / name).write_bytes(b"another process")
        return temp

    monkeypatch.setattr(files, "_temporary", and_meanwhile)
    (path,) = result_of(encoded(8, 8)).save(tmp_path)
    assert path.name == "a-fox-in-snow-v2.png"
    assert (tmp_path / "a-fox-in-snow.png").read_bytes() == b"another process"
    (tmp_path / "fox.png").unlink()
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / "fox.png")
    assert "already exists" in message
    assert (tmp_path / "fox.png").read_bytes() == b"another process"
    assert not list(tmp_path.glob(".mesh-*"))


def test_a_crash_mid_write_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = result_of(encoded(40, 30), encoded(40, 30))
    calls = []

    def crash_on_second_image(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:  # 1: the first image, 2: its manifest line, 3: the second image
            raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash_on_second_image)
    with pytest.raises(OSError, match="disk full"):  # a SaveError, and an OSError
        result.save(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["a-fox-in-snow-1.png", files.MANIFEST]  # whole, or absent
    assert (tmp_path / files.MANIFEST).read_text().count("\n") == 1
    assert Image.open(tmp_path / "a-fox-in-snow-1.png").size == (40, 30)


# -- display -------------------------------------------------------------------------------


def test_single_image_displays_as_an_ordinary_image_output() -> None:
    data, metadata = result_of(encoded(40, 30))._repr_mimebundle_()
    assert set(data) == {"image/png", "text/plain"}
    assert Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).size == (40, 30)
    assert metadata["image/png"] == {"width": 40, "height": 30}


def test_a_revised_prompt_costs_no_image_bytes() -> None:
    data, metadata = result_of(encoded(40, 30), revised="a fox in deep snow")._repr_mimebundle_()
    assert set(data) == {"image/png", "text/plain"}  # no HTML copy of the image
    assert data["text/plain"].endswith("\nrevised prompt: a fox in deep snow")
    assert metadata["mesh_magics"] == {"revised_prompts": ["a fox in deep snow"]}


def test_previews_are_capped_but_the_result_keeps_full_size() -> None:
    result = result_of(encoded(2000, 1000), preview_max_px=500)
    (shown,) = shown_images(result._repr_mimebundle_()[0])
    assert shown.size == (500, 250) and result[0].size == (2000, 1000)
    (full,) = shown_images(result_of(encoded(2000, 1000), preview_max_px=0)._repr_mimebundle_()[0])
    assert full.size == (2000, 1000)


def test_webp_is_saved_with_xmp_and_displayed_as_png_or_jpeg(tmp_path: Path) -> None:
    result = result_of(encoded(30, 20, "WEBP", "RGBA"))
    (path,) = result.save(tmp_path)
    assert path.suffix == ".webp" and b"A fox, in snow!" in Image.open(path).info["xmp"]
    assert not Path(str(path) + ".json").exists()  # no sidecar: the XMP chunk holds it
    data, _ = result._repr_mimebundle_()
    assert "image/png" in data and "image/webp" not in data  # alpha kept as PNG


def test_several_images_are_one_html_grid_of_tiles_at_twice_their_shown_size() -> None:
    result = result_of(*[encoded(1024, 768)] * 3, encoded(500, 1000), revised="a fox")
    data, _ = result._repr_mimebundle_()
    assert set(data) == {"text/html", "text/plain"}  # the grid is the one carrier of pixels
    html = data["text/html"]
    assert html.count("<img ") == 4 and html.count("<figcaption") == 4
    assert [im.size for im in shown_images(data)] == [(640, 480)] * 3 + [(320, 640)]
    shown = re.findall(r'width="(\d+)" height="(\d+)"', html)
    assert shown == [("320", "240")] * 3 + [("160", "320")]


def test_preview_max_px_caps_grid_tiles_too() -> None:
    data, _ = result_of(
        encoded(1024, 1024), encoded(1024, 1024), preview_max_px=200
    )._repr_mimebundle_()
    assert [im.size for im in shown_images(data)] == [(200, 200)] * 2


def test_server_text_is_escaped_in_html_and_flattened_in_text() -> None:
    evil = '<img src=x onerror="alert(1)">\x1b[31m red\nline\u202e' + " and snow" * 30
    data, _ = result_of(encoded(40, 30), encoded(40, 30), revised=evil)._repr_mimebundle_()
    html = data["text/html"]
    assert "<img src=x" not in html and 'onerror="' not in html
    escaped = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    assert html.count(escaped) == 2 * 3  # caption, alt, and the long text's title
    assert "\x1b" not in data["text/plain"] and "\u202e" not in data["text/plain"]
    flattened = '<img src=x onerror="alert(1)"> [31m red line and snow and snow'
    lines = data["text/plain"].splitlines()
    assert len(lines) == 3 and all(line[3:].startswith(flattened) for line in lines[1:])
    assert all(len(line) < 170 and line.endswith("…") for line in lines[1:])


def test_the_display_shows_no_request_fields() -> None:
    request = {"prompt": "a fox", "n": 2, "user": "user-4821", "seed": 987654321}
    data, metadata = result_of(
        encoded(40, 30), encoded(40, 30), request=request
    )._repr_mimebundle_()
    shown = json.dumps([data, metadata])
    assert "user-4821" not in shown and "987654321" not in shown


def test_a_folder_named_like_an_image_is_not_taken_for_a_file(tmp_path: Path) -> None:
    (tmp_path / "fox.png").mkdir()  # what save("fox.png") made before it took file names
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / "fox.png")
    assert "is a folder" in message and "fox.png/" in message
    (path,) = result_of(encoded(8, 8)).save(f"{tmp_path / 'fox.png'}/")
    assert path == tmp_path / "fox.png" / "a-fox-in-snow.png"


def test_previews_made_side_by_side_are_the_ones_made_one_by_one() -> None:
    from mesh_magics.results.previews import make_preview

    blobs = [encoded(900, 600), encoded(700, 700, mode="RGBA"), encoded(200, 100, "JPEG")]
    result = result_of(*blobs)
    made = result.previews(320)
    alone = [make_preview(image, 320) for image in result_of(*blobs)._images]
    assert [(p.mime, p.width, p.height, p.data) for p in made] == [
        (p.mime, p.width, p.height, p.data) for p in alone
    ]
    assert [(p.width, p.height) for p in made] == [(320, 213), (320, 320), (200, 100)]
    assert result.preview(1, 320) is made[1]  # kept: showing it again makes nothing


# -- what save refuses: formats it does not write, symlinks ----------------------------------


@pytest.mark.parametrize("name", ["x.bmp", "scan.TIFF", "logo.svg"])
def test_another_image_suffix_is_refused_naming_those_written(tmp_path: Path, name: str) -> None:
    message = fails_to_save(result_of(encoded(8, 8)), tmp_path / name)
    assert all(suffix in message for suffix in (".png", ".jpg", ".jpeg", ".webp"))
    assert list(tmp_path.iterdir()) == []  # no folder named like a file
    (path,) = result_of(encoded(8, 8)).save(f"{tmp_path / name}/")  # a folder, said so
    assert path.parent == tmp_path / name and path.suffix == ".png"


def test_a_folder_that_exists_is_saved_into_whatever_its_name(tmp_path: Path) -> None:
    (tmp_path / "scans.bmp").mkdir()
    (path,) = result_of(encoded(8, 8)).save(tmp_path / "scans.bmp")
    assert path == tmp_path / "scans.bmp" / "a-fox-in-snow.png"
    (path,) = result_of(encoded(8, 8)).save(tmp_path / "run.2024-05")  # no image suffix
    assert path.parent.is_dir() and path.parent.name == "run.2024-05"


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of the user's outside the folder being saved into: `authorized_keys`."""
    keys = tmp_path_factory.mktemp("home") / ".ssh" / "authorized_keys"
    keys.parent.mkdir()
    keys.write_bytes(b"ssh-ed25519 AAAA... me@laptop\n")
    return keys


def test_a_manifest_that_is_a_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path, outside: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / files.MANIFEST).symlink_to(outside)
    before = outside.read_bytes(), outside.stat().st_mtime_ns

    message = fails_to_save(result_of(encoded(8, 8)), folder)

    assert "symlink" in message and str(folder / files.MANIFEST) in message
    assert (outside.read_bytes(), outside.stat().st_mtime_ns) == before
    assert sorted(p.name for p in folder.iterdir()) == [files.MANIFEST]  # nothing half saved


def test_a_manifest_swapped_for_a_symlink_while_saving_is_not_followed(
    tmp_path: Path, outside: Path
) -> None:
    manifest = tmp_path / files.MANIFEST
    manifest.symlink_to(outside)  # after the folder was checked, before the append
    with pytest.raises(OSError):
        files.append_line(manifest, b'{"file": "x.png"}')
    assert outside.read_bytes() == b"ssh-ed25519 AAAA... me@laptop\n"


def test_a_save_folder_that_is_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to(outside.parent, target_is_directory=True)
    for target in (link, link / "fox.png"):
        message = fails_to_save(result_of(encoded(8, 8)), target)
        assert "symlink" in message and str(outside.parent) in message
    assert sorted(p.name for p in outside.parent.iterdir()) == ["authorized_keys"]
