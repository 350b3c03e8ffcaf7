"""Provenance in every saved file: what `save()` embeds, `manifest.jsonl`, and
`read_metadata` giving back exactly what was stored, for every format."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mesh_magics as mm
from mesh_magics import settings as mesh_settings
from mesh_magics._version import __version__
from mesh_magics.images import check_image
from mesh_magics.local import LocalServer
from mesh_magics.results import metadata
from mesh_magics.results.metadata import read_metadata
from mesh_magics.results.result import ImageResult
from mesh_magics.results.saving import MANIFEST, append_line

from .servers import KeyRelay
from .support import FAKE_KEY

CREATED = 1735787045  # 2025-01-02T03:04:05Z
REQUEST: dict[str, Any] = {
    "model": "gpt-image-1",
    "size": "30x20",
    "quality": "high",
    "n": 1,
    "seed": 42,
    "stream": True,
}
PROMPTS = [
    "A fox, in snow!",
    "一只狐狸在雪中",
    "🦊 in the snow 🌨️, 👨‍👩‍👧",
    "\"quoted\" and 'single' <b>bold</b> & more &amp; ]]> -->",
    "line one\nline two\r\nthree\rfour\ttab  ",
    "nul \x00 bell \x07 escape \x1b[31m \ufffe",  # characters XML 1.0 cannot hold
    "  leading and trailing spaces  ",
    "",
]
NS = "{" + metadata.NAMESPACE + "}"


def encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (30, 20), **kw: Any) -> bytes:
    """A small image with varied pixels, so a re-encode would show."""
    img = Image.new(mode, size)
    img.putdata(
        [
            (x * 8 % 256, y * 12 % 256, (x * y) % 256, (x + y) * 5 % 256)[: len(mode)]
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kw)
    return buffer.getvalue()


# What the server may send: simple lossy and lossless WebP, extended (VP8X) WebP.
SOURCES = {
    "png": lambda: encoded("PNG"),
    "png-rgba": lambda: encoded("PNG", "RGBA"),
    "jpeg": lambda: encoded("JPEG", quality=90),
    "webp-lossy": lambda: encoded("WEBP", quality=80),
    "webp-lossless": lambda: encoded("WEBP", lossless=True),
    "webp-lossless-rgba": lambda: encoded("WEBP", "RGBA", lossless=True),
    "webp-lossy-rgba": lambda: encoded("WEBP", "RGBA", quality=80),  # VP8X + ALPH
}

BLOBS = {name: make() for name, make in SOURCES.items()}


def result_of(
    blob: bytes,
    prompt: str = "A fox, in snow!",
    revised: str | None = "a fox in deep snow",
    request: dict[str, Any] | None = None,
) -> ImageResult:
    result = ImageResult(
        [check_image(blob, what="test image", revised_prompt=revised)],
        request={"prompt": prompt, **(REQUEST if request is None else request)},
        model="openai/gpt-image-1",
        request_id="req_1",
    )
    result.created = CREATED
    return result


def expected(
    prompt: str | None, revised: str | None = "a fox in deep snow", *, blob: bytes
) -> dict[str, Any]:
    """What `read_metadata` gives for `result_of(blob, prompt, revised)` saved."""
    body = dict(REQUEST) if prompt is None else {"prompt": prompt, **REQUEST}
    return {
        **body,
        "prompt": prompt,
        "revised_prompt": revised,
        "model": "openai/gpt-image-1",  # the model that answered, over the one asked
        "request_id": "req_1",
        "created": "2025-01-02T03:04:05Z",
        "mesh_magics_version": __version__,
        "sha256": hashlib.sha256(blob).hexdigest(),  # of the image as made, before metadata
        "inputs": None,  # a generation
    }


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.mode, img.size, img.tobytes()


def exiftool(path: Path) -> dict[str, Any]:
    found = subprocess.run(
        ["exiftool", "-j", "-b", "-n", "-a", "-G1", "-charset", "utf8", str(path)],
        capture_output=True,
        check=True,
        text=True,
        encoding="utf-8",
    )
    (tags,) = json.loads(found.stdout)
    return dict(tags)


def check_with_other_readers(path: Path, original: bytes, prompt: str | None) -> None:
    """Pillow opens the file, its pixels are the original's, and Pillow and exiftool (where
    installed) find the metadata where the format keeps it."""
    data = path.read_bytes()
    assert pixels(data) == pixels(original)  # never re-encoded
    with Image.open(path) as img:
        if img.format == "PNG":
            assert json.loads(img.text["request"])["seed"] == 42
            assert img.text["model"] == "openai/gpt-image-1"
            assert img.text["mesh_magics_version"] == __version__
            if prompt is not None and not metadata._NOT_XML.search(prompt):
                assert img.text["prompt"] == prompt
        else:
            assert img.format in ("JPEG", "WEBP")
            root = ElementTree.fromstring(img.info["xmp"])
            found = {el.tag.removeprefix(NS): el.text or "" for el in root.iter() if NS in el.tag}
            assert found["model"] == "openai/gpt-image-1"
            if prompt is not None and not metadata._NOT_XML.search(prompt):
                assert found["prompt"] == prompt
            xmp = img.getxmp()  # needs defusedxml; {} without it
            if xmp:
                assert xmp["xmpmeta"]["RDF"]["Description"]["model"] == "openai/gpt-image-1"
    if data[8:12] == b"WEBP" and shutil.which("webpinfo"):  # libwebp's own validator
        assert (
            subprocess.run(["webpinfo", "-quiet", str(path)], capture_output=True).returncode == 0
        )
    if shutil.which("exiftool"):
        tags = exiftool(path)
        group = "PNG" if data.startswith(b"\x89PNG") else "XMP-meshmagics"
        assert tags[f"{group}:Model"] == "openai/gpt-image-1"
        assert json.loads(tags[f"{group}:Request"])["seed"] == 42
        assert tags[f"{group}:Request_id"] == "req_1"
        if prompt is None:
            assert f"{group}:Prompt" not in tags and f"{group}:Prompt_json" not in tags
        elif metadata._NOT_XML.search(prompt):
            assert json.loads(tags[f"{group}:Prompt_json"]) == prompt
        else:
            assert tags[f"{group}:Prompt"] == prompt
        if group != "PNG":
            assert tags["XMP-xmp:CreatorTool"] == f"mesh-magics {__version__}"


# -- every format round-trips ------------------------------------------------------------


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("prompt", PROMPTS)
def test_saved_metadata_reads_back_identically(tmp_path: Path, source: str, prompt: str) -> None:
    original = SOURCES[source]()
    (path,) = result_of(original, prompt=prompt).save(tmp_path)
    assert read_metadata(path) == expected(prompt, blob=original)
    assert mm.read_metadata(str(path)) == expected(prompt, blob=original)
    check_with_other_readers(path, original, prompt)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".gif"])
@pytest.mark.parametrize("source", ["png-rgba", "jpeg", "webp-lossy"])
def test_converted_files_carry_it_too(tmp_path: Path, source: str, suffix: str) -> None:
    original = SOURCES[source]()
    (path,) = result_of(original, prompt="一只狐狸 & <fox>").save(tmp_path / f"f{suffix}")
    # the hash of the image as made, not of the converted file: the one an edit names
    assert read_metadata(path) == expected("一只狐狸 & <fox>", blob=original)
    assert Image.open(path).format == {".jpg": "JPEG"}.get(suffix, suffix[1:].upper())
    sidecar = path.with_name(path.name + ".json")
    assert sidecar.exists() == (suffix == ".gif")  # XMP covers the others: no sidecar


def test_a_revised_prompt_and_request_id_of_none_read_back_as_none(tmp_path: Path) -> None:
    for source in ("png", "jpeg", "webp-lossy"):
        original = SOURCES[source]()
        result = result_of(original, revised=None)
        result.request_id = None
        (path,) = result.save(tmp_path)
        made = expected("A fox, in snow!", None, blob=original)
        assert read_metadata(path) == {**made, "request_id": None}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt=st.text(),
    revised=st.none() | st.text(max_size=50),
    source=st.sampled_from(["png", "jpeg", "webp-lossy", "webp-lossless-rgba"]),
)
def test_any_prompt_in_any_format_round_trips(
    prompt: str, revised: str | None, source: str
) -> None:
    original = BLOBS[source]
    with tempfile.TemporaryDirectory() as temp:
        (path,) = result_of(original, prompt=prompt, revised=revised).save(temp)
        assert read_metadata(path) == expected(prompt, revised, blob=original)
        assert pixels(path.read_bytes()) == pixels(original)
        (line,) = (Path(temp) / MANIFEST).read_text("utf-8").splitlines()
        assert json.loads(line)["metadata"] == expected(prompt, revised, blob=original)


INPUT = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["image", "reference", "mask"]),
        "sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
        "name": st.none() | st.text(max_size=30),
        "format": st.just("png"),
        "width": st.integers(1, 4096),
        "height": st.integers(1, 4096),
        "bytes": st.integers(1, 50_000_000),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.lists(INPUT, min_size=1, max_size=4),
    suffix=st.sampled_from([".png", ".jpg", ".webp", ".gif"]),
    embed_prompt=st.booleans(),
)
def test_an_edits_inputs_round_trip_in_any_format(
    inputs: list[dict[str, Any]], suffix: str, embed_prompt: bool
) -> None:
    original = BLOBS["png"]
    request = {**REQUEST, "image": f"sha256:{inputs[0]['sha256']}", "operation": "edit"}
    result = ImageResult(
        [check_image(original, what="edited image")],
        request={"prompt": "Make it night", **request},
        model="openai/gpt-image-1",
        inputs=inputs,
    )
    with tempfile.TemporaryDirectory() as temp:
        (path,) = result.save(Path(temp) / f"night{suffix}", embed_prompt=embed_prompt)
        found = read_metadata(path)
        assert found["inputs"] == inputs  # kept without the prompt too: they hold none
        assert found["sha256"] == hashlib.sha256(original).hexdigest()
        assert found["image"] == request["image"]
        (line,) = (Path(temp) / MANIFEST).read_text("utf-8").splitlines()
        assert json.loads(line)["metadata"] == found


def test_a_prompt_too_big_for_one_jpeg_segment_goes_to_extended_xmp(tmp_path: Path) -> None:
    prompt = "一只狐狸 & <雪> " * 6000  # ~150 KB of XMP, over the 64 KB of one APP1 segment
    original = SOURCES["jpeg"]()
    (path,) = result_of(original, prompt=prompt).save(tmp_path)
    data = path.read_bytes()
    assert data.count(b"http://ns.adobe.com/xmp/extension/\0") >= 3
    assert read_metadata(path) == expected(prompt, blob=original)
    assert pixels(data) == pixels(original)
    with Image.open(path) as img:  # the standard packet alone still parses
        root = ElementTree.fromstring(img.info["xmp"])
        assert root.find(f".//{NS}model") is not None and root.find(f".//{NS}prompt") is None
    if shutil.which("exiftool"):
        tags = exiftool(path)
        assert tags["XMP-meshmagics:Prompt"] == prompt
        assert json.loads(tags["XMP-meshmagics:Request"])["prompt"] == prompt


# -- the manifest --------------------------------------------------------------------------


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / MANIFEST).read_text("utf-8").splitlines()]


def test_each_saved_file_gets_a_manifest_line(tmp_path: Path) -> None:
    result = ImageResult(
        [check_image(BLOBS["png"], what="a"), check_image(BLOBS["jpeg"], what="b")],
        request={"prompt": "a fox\u2028on two lines", "n": 2},
        model="m",
        request_id="req_2",
    )
    paths = result.save(tmp_path) + result.save(tmp_path)
    lines = manifest(tmp_path)
    assert [line["file"] for line in lines] == [p.name for p in paths]
    for line, path in zip(lines, paths, strict=True):
        assert line["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert line["metadata"] == read_metadata(path)
        assert line["metadata"]["prompt"] == "a fox\u2028on two lines"
    (named,) = result_of(BLOBS["webp-lossy"]).save(tmp_path / "sub" / "fox.webp")
    (line,) = manifest(tmp_path / "sub")  # a file name: the manifest of its folder
    assert line["file"] == "fox.webp" and line["metadata"] == read_metadata(named)
    (tmp_path / "sub" / "fox.webp").unlink()


def test_two_processes_appending_interleave_whole_lines(tmp_path: Path) -> None:
    target = tmp_path / MANIFEST
    script = (
        "import sys, json; from pathlib import Path\n"
        "from mesh_magics.results.saving import append_line\n"
        "who = sys.argv[2]\n"
        "for i in range(300):\n"
        "    line = json.dumps({'who': who, 'i': i, 'pad': who * (i * 97 % 20000)})\n"
        "    append_line(Path(sys.argv[1]), line.encode())\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(target), who]) for who in "ab"]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    lines = [json.loads(line) for line in target.read_bytes().split(b"\n") if line]
    for who in "ab":
        assert [line["i"] for line in lines if line["who"] == who] == list(range(300))
    assert target.read_bytes().endswith(b"\n")


def test_a_line_cut_short_by_a_crash_does_not_swallow_the_next(tmp_path: Path) -> None:
    target = tmp_path / MANIFEST
    target.write_bytes(b'{"file": "a.png"}\n{"file": "b.p')  # a writer died mid-line
    append_line(target, b'{"file": "c.png"}')
    assert target.read_bytes().splitlines()[-1] == b'{"file": "c.png"}'


def test_a_manifest_that_cannot_be_written_is_a_save_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).mkdir()  # something in its way
    with pytest.raises(mm.MeshError, match=MANIFEST):
        result_of(BLOBS["png"]).save(tmp_path)


# -- embed_prompt=False --------------------------------------------------------------------


def everything_saved(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("how", ["argument", "setting"])
def test_embed_prompt_false_leaves_the_prompt_out_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    prompt, revised = "a secret fox 一只狐狸 plan", "the secret revised fox"
    if how == "setting":
        real = mesh_settings.configured
        monkeypatch.setattr(mesh_settings, "configured", lambda: {**real(), "embed_prompt": False})
        keyword: dict[str, Any] = {}
    else:
        keyword = {"embed_prompt": False}
    for source in ("png", "jpeg", "webp-lossy", "webp-lossless-rgba"):
        result = result_of(BLOBS[source], prompt=prompt, revised=revised)
        (path,) = result.save(tmp_path, **keyword)
        assert path.name.startswith("image")  # the name would tell the prompt too
        assert read_metadata(path) == expected(None, None, blob=BLOBS[source])
    result.save(tmp_path / "fox.gif", **keyword)
    assert read_metadata(tmp_path / "fox.gif") == expected(None, None, blob=BLOBS[source])
    saved = everything_saved(tmp_path)
    for secret in (prompt, revised, "secret", "一只狐狸"):
        for form in (secret.encode(), json.dumps(secret).encode(), secret.encode("utf-16-le")):
            assert form not in saved
    assert all(line["metadata"]["prompt"] is None for line in manifest(tmp_path))
    (shown,) = result_of(BLOBS["png"], prompt=prompt).save(tmp_path / "out", embed_prompt=True)
    assert read_metadata(shown)["prompt"] == prompt  # the argument wins over the setting


# -- the request body ------------------------------------------------------------------------


def test_input_images_are_stored_as_digests_not_megabytes(tmp_path: Path) -> None:
    image = BLOBS["png"]
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    request = {**REQUEST, "image": [url, url], "mask": url}
    (path,) = result_of(BLOBS["jpeg"], request=request).save(tmp_path)
    digest = f"sha256:{hashlib.sha256(image).hexdigest()}"
    found = read_metadata(path)
    assert found["image"] == [digest, digest] and found["mask"] == digest
    assert len(path.read_bytes()) < len(BLOBS["jpeg"]) + 4000


def test_older_metadata_in_the_file_is_replaced_not_doubled(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"a comfyui graph": 1}')  # another tool's chunk of that name
    info.add_text("parameters", "kept")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(BLOBS["png"])).save(buffer, "PNG", pnginfo=info)
    (first,) = result_of(buffer.getvalue()).save(tmp_path)
    assert read_metadata(first) == expected("A fox, in snow!", blob=buffer.getvalue())
    assert Image.open(first).info["parameters"] == "kept"
    for name in ("png", "jpeg", "webp-lossy", "webp-lossy-rgba"):
        (once,) = result_of(BLOBS[name], prompt="OLD-PROMPT").save(tmp_path)
        (twice,) = result_of(once.read_bytes(), prompt="new").save(tmp_path)
        data = twice.read_bytes()
        made = expected("new", blob=once.read_bytes())
        assert read_metadata(twice) == made and b"OLD-PROMPT" not in data
        assert pixels(data) == pixels(BLOBS[name])


def test_files_without_our_metadata(tmp_path: Path) -> None:
    for name, blob in BLOBS.items():
        (tmp_path / name).write_bytes(blob)
        assert read_metadata(tmp_path / name) == {}
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a PNG"):
        read_metadata(tmp_path / "notes.txt")


def test_xmp_with_a_dtd_is_not_parsed(tmp_path: Path) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><mm:mesh_magics_version xmlns:mm="'
        + metadata.NAMESPACE.encode()
        + b'">&a;</mm:mesh_magics_version></x:xmpmeta>'
    )
    payload = b"http://ns.adobe.com/xap/1.0/\0" + bomb
    jpeg = BLOBS["jpeg"]
    data = jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]
    (tmp_path / "x.jpg").write_bytes(data)
    assert read_metadata(tmp_path / "x.jpg") == {}


# -- the key ------------------------------------------------------------------------------


def test_the_key_is_in_no_saved_file_nor_the_manifest(tmp_path: Path) -> None:
    with LocalServer() as server, KeyRelay(server) as api:  # an API that is sent the key
        result = asyncio.run(
            mm.agenerate("a fox", base_url=api.url, size="64x64", n=2, seed=7, progress="none")
        )
    assert f"Bearer {FAKE_KEY}" in api.authorizations  # the key was in hand, and went there
    paths = [*result.save(tmp_path), *result.save(tmp_path / "f.jpg")]
    paths += [*result.save(tmp_path / "f.webp"), *result.save(tmp_path / "f.gif")]
    assert read_metadata(paths[0])["seed"] == 7 and read_metadata(paths[-1])["seed"] == 7
    saved = everything_saved(tmp_path)
    assert len(saved) > 1000
    for secret in (FAKE_KEY, FAKE_KEY[:12], FAKE_KEY[-16:]):
        for form in (secret.encode(), base64.b64encode(secret.encode())):
            assert form not in saved
