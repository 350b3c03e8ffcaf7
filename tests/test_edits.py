"""Image edits as a user meets them: `%%meshimage --edit SOURCE` and `mm.edit()`, over real
HTTP on loopback, to the embedded backend or to a scripted server that keeps the raw
body it received. Every kind of SOURCE, every check made before anything is sent, every
operation, the mask, replay, sweeps, background runs, the wire body (validated with the
official SDK), the retry policy, `--dry-run`, and provenance."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

import mesh_magics as mm
from mesh_magics.engine.generation import Generation
from mesh_magics.local import LocalServer
from mesh_magics.results.result import ImageResult

from .servers import (
    Route,
    ScriptedServer,
    b64,
    hang_up,
    in_turn,
    lent,
    reads_body,
    send_json,
)
from .support import EDITS, CellRun, refused, run_cell

PROMPT = "Make it night"


# -- helpers ---------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def picture(width: int = 64, height: int = 48, ink: tuple[int, int, int] = (20, 40, 160)) -> bytes:
    """A white picture with a dark square in the middle: something to keep and to see."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    img.paste(ink, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return png(img)


def mask_png(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """Opaque everywhere (keep) except the transparent `box` (change)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)
    return png(mask)


def rgba(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGBA")


def pixels(data: bytes) -> bytes:
    """The RGBA pixels of an encoded image, row by row."""
    return rgba(data).tobytes()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


class Sent:
    """Counts the edit requests the embedded backend received from now on."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.since = time.monotonic()

    def edits(self) -> list[Any]:
        return [r for r in self.server.requests if r.path == EDITS and r.at >= self.since]

    def __call__(self) -> int:
        return len(self.edits())


def cell(ip: InteractiveShell, text: str) -> CellRun:
    return run_cell(ip, text)


def ok(ip: InteractiveShell, text: str) -> CellRun:
    run = run_cell(ip, text)
    assert run.success, run.error
    return run


def magic(options: str, prompt: str) -> str:
    """A cell that runs `options`; a prompt-less edit is a line magic (IPython refuses a
    %%cell with an empty body)."""
    return f"%%meshimage {options}\n{prompt}" if prompt else f"%meshimage {options}"


def decoded_data_url(value: str) -> bytes:
    header, comma, payload = value.partition(",")
    assert comma and header.startswith("data:image/") and header.endswith(";base64"), header[:60]
    return base64.b64decode(payload, validate=True)


@pytest.fixture(scope="module")
def running() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.2) as local:
        yield local


@pytest.fixture
def server(running: LocalServer) -> Iterator[LocalServer]:
    """The module's embedded backend, lent to one test (for `ip` too)."""
    yield from lent(running, ping_interval=0.2)


@pytest.fixture
def fox(ip: InteractiveShell, store_dir: Path) -> ImageResult:
    """Two generated images, bound to `t_fox` as a user would have them."""
    ok(ip, "%%meshimage -o t_fox --size 64x64 -n 2 --seed 7 --no-display\nA fox in the snow")
    result = ip.user_ns["t_fox"]
    assert isinstance(result, ImageResult) and len(result) == 2
    return result


# -- a server that keeps the raw bodies it was sent ------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        parsed = json.loads(self.raw)
        assert isinstance(parsed, dict)
        return parsed


@dataclass
class Capture:
    """What an edits endpoint received, request by request."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, then: Route) -> Route:
        def keep(handler: BaseHTTPRequestHandler) -> None:
            raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in handler.headers.items()}
            with self.lock:
                self.received.append(Received(headers, raw))
            then(handler)

        return reads_body(keep)


def edit_answer(*images: bytes) -> Route:
    made = images or (picture(ink=(200, 30, 30)),)
    return send_json({"created": 1, "data": [{"b64_json": b64(data)} for data in made]})


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer({}) as held:
        yield held


@pytest.fixture
def capture(scripted: ScriptedServer) -> tuple[ScriptedServer, Capture]:
    """The scripted server, answering every edit with one image and keeping its body."""
    kept = Capture()
    scripted.routes.clear()
    scripted.routes[EDITS] = kept.route(edit_answer())
    scripted.requests.clear()
    return scripted, kept


# -- 1. every kind of SOURCE ------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A SOURCE: the code that makes it, how the magic and the function name it, the
    images (bytes) it should send, and the names recorded with them."""

    setup: str  # run in the shell first; `{dir}` is a folder of the test's own
    magic: str  # what follows --edit
    call: str  # the first argument of mm.edit
    names: Callable[[str], list[str | None]]  # the recorded names, by the --edit text
    expected: Callable[[dict[str, Any], Path], list[bytes]]


def _file_bytes(ns: dict[str, Any], folder: Path) -> list[bytes]:
    return [(folder / "in.png").read_bytes()]


OPEN = "from pathlib import Path as t_P\n"

KINDS = {
    "an ImageResult": Kind(
        "", "t_fox", "t_fox", lambda _: ["t_fox[0]", "t_fox[1]"], lambda ns, _: ns["t_fox"].data
    ),
    "one image of one": Kind(
        "", "t_fox[1]", "t_fox[1]", lambda _: ["t_fox[1]"], lambda ns, _: [ns["t_fox"].data[1]]
    ),
    "a PIL image": Kind(
        "import PIL.Image as t_I\nt_pil = t_I.open({dir!r} + '/in.png').convert('RGB')",
        "t_pil",
        "t_pil",
        lambda _: ["t_pil"],
        lambda ns, _: [png(ns["t_pil"])],  # pixels compared below, not the encoding
    ),
    "bytes": Kind(
        OPEN + "t_raw = t_P({dir!r}, 'in.png').read_bytes()",
        "t_raw",
        "t_raw",
        lambda _: ["t_raw"],
        _file_bytes,
    ),
    "a Path variable": Kind(
        OPEN + "t_path = t_P({dir!r}, 'in.png')",
        "t_path",
        "t_path",
        lambda _: ["t_path"],
        _file_bytes,
    ),
    "a str holding a path": Kind(
        OPEN + "t_str = str(t_P({dir!r}, 'in.png'))",
        "t_str",
        "t_str",
        lambda _: ["t_str"],
        _file_bytes,
    ),
    "a literal file path": Kind(
        "", "{dir}/in.png", "'{dir}/in.png'", lambda text: [text.strip("'")], _file_bytes
    ),
    "a data: URL": Kind(
        "",
        "data:image/png;base64,{pic_b64}",
        "'data:image/png;base64,{pic_b64}'",
        lambda _: [None],
        _file_bytes,
    ),
    "an open binary file": Kind(
        OPEN + "t_file = open(t_P({dir!r}, 'in.png'), 'rb')",
        "t_file",
        "t_file",
        lambda _: ["t_file"],
        _file_bytes,
    ),
    "a finished Generation": Kind(
        "", "t_gen", "t_gen", lambda _: ["t_gen"], lambda ns, _: ns["t_gen"].result().data
    ),
}


@pytest.mark.parametrize("front", ["magic", "mm.edit"])
@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_every_kind_of_source_sends_its_bytes_and_records_its_name(
    ip: InteractiveShell,
    server: LocalServer,
    fox: ImageResult,
    capture: tuple[ScriptedServer, Capture],
    tmp_path: Path,
    kind: str,
    front: str,
) -> None:
    scripted, kept = capture
    source = KINDS[kind]
    pic = picture()
    (tmp_path / "in.png").write_bytes(pic)
    if kind == "a finished Generation":
        ok(ip, "%%meshimage --bg -o t_gen --size 64x64 --seed 3\nA hare")
        assert isinstance(ip.user_ns["t_gen"], Generation) and ip.user_ns["t_gen"].done()
    fill = {"dir": str(tmp_path), "pic_b64": b64(pic)}
    if source.setup:
        ok(ip, source.setup.format(**fill))
    text = source.magic.format(**fill)
    if front == "magic":
        ok(ip, f"%%meshimage -o t_out --base-url {scripted.url} --edit {text}\n{PROMPT}")
    else:
        call = source.call.format(**fill)
        ok(
            ip,
            f"import mesh_magics as mm\nt_out = mm.edit({call}, {PROMPT!r}, "
            f"base_url={scripted.url!r}, progress='none')",
        )
    result = ip.user_ns["t_out"]
    expected = source.expected(ip.user_ns, tmp_path)
    try:
        assert isinstance(result, ImageResult) and len(result) == 1
        assert [i["name"] for i in result.inputs] == source.names(
            text if front == "magic" else call
        )
        assert [i["role"] for i in result.inputs] == ["image"] + ["reference"] * (len(expected) - 1)
        [received] = kept.received
        body = received.body
        sent = [decoded_data_url(body["image"])]
        sent += [decoded_data_url(ref) for ref in body.get("reference_images", [])]
        assert [i["sha256"] for i in result.inputs] == [sha(data) for data in sent]
        if kind == "a PIL image":  # re-encoded as PNG: the same pixels
            assert [pixels(data) for data in sent] == [pixels(data) for data in expected]
            assert sent[0][:8] == b"\x89PNG\r\n\x1a\n"
        else:  # the very bytes
            assert sent == expected
    finally:
        handle = ip.user_ns.get("t_file")
        if handle is not None:
            handle.close()
            del ip.user_ns["t_file"]


def test_an_image_of_a_result_sends_its_original_bytes_until_drawn_on(
    ip: InteractiveShell, fox: ImageResult, capture: tuple[ScriptedServer, Capture]
) -> None:
    scripted, kept = capture
    edit = f"%%meshimage -o t_out --base-url {scripted.url} --edit t_fox[0]\n{PROMPT}"
    ok(ip, edit)
    first = ip.user_ns["t_out"].inputs[0]
    assert first["name"] == "t_fox[0]" and first["sha256"] == sha(fox.data[0])
    assert decoded_data_url(kept.received[0].body["image"]) == fox.data[0]

    ok(
        ip,
        "from PIL import ImageDraw\nImageDraw.Draw(t_fox[0]).rectangle((4, 4, 30, 30), fill='red')",
    )
    ok(ip, edit)
    drawn = decoded_data_url(kept.received[1].body["image"])
    assert drawn != fox.data[0] and drawn[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixels(drawn) == fox[0].convert("RGBA").tobytes()  # what was drawn is sent
    assert rgba(drawn).getpixel((10, 10)) == (255, 0, 0, 255)
    assert ip.user_ns["t_out"].inputs[0]["sha256"] == sha(drawn) != sha(fox.data[0])


# -- 2. every check before sending -------------------------------------------------------------

SETUP_CHECKS = """\
import PIL.Image as t_I
from pathlib import Path as t_P
t_text = t_P({dir!r}, 'notes.png')
t_text.write_text('not a picture at all')
t_small = t_I.new('RGB', (64, 48), 'white')
t_rgb_mask = t_I.new('RGB', (64, 48), 'black')
t_small_mask = t_I.new('RGBA', (32, 32), (0, 0, 0, 0))
"""

CHECKS = {
    "not an image": ("--edit t_text", PROMPT, ["--edit t_text", "not an image"]),
    "17 images": (" ".join(["--edit t_small"] * 17), PROMPT, ["--edit", "17 images", "16"]),
    "a mask without alpha": (
        "--edit t_small --mask t_rgb_mask --operation inpaint",
        "",
        ["--mask t_rgb_mask", "alpha"],
    ),
    "a mask of another size": (
        "--edit t_small --mask t_small_mask --operation inpaint",
        "",
        ["--mask t_small_mask", "32x32", "64x48", "t_small"],
    ),
    "an input over the limit": ("--edit t_fox[0]", PROMPT, ["--edit t_fox[0]", "over the"]),
    "an unknown operation": (
        "--edit t_small --operation paint",
        PROMPT,
        ["--operation", "paint", "inpaint", "outpaint", "remove_background", "upscale"],
    ),
    "a model that cannot edit": (
        "--edit t_small --model openai/dall-e-3",
        PROMPT,
        ["openai/dall-e-3", "does not support"],
    ),
    "a field edits do not take": (
        "--edit t_small --quality high",
        PROMPT,
        ["--quality", "edits endpoint does not take"],
    ),
    "an edit-only field without --edit": (
        "--upscale-factor 2x",
        PROMPT,
        ["--upscale-factor", "is for edits", "--edit"],
    ),
    "--mask without --edit": ("--mask t_small", PROMPT, ["--mask", "--edit"]),
    "a missing variable or file": ("--edit t_nothing", PROMPT, ["--edit t_nothing", "no image"]),
    "an edit that needs a prompt": ("--edit t_small --operation mix", "", ["no prompt", "mix"]),
}


@pytest.mark.parametrize("case", list(CHECKS), ids=list(CHECKS))
def test_every_check_is_made_before_anything_is_sent(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult, tmp_path: Path, case: str
) -> None:
    options, prompt, says = CHECKS[case]
    ok(ip, SETUP_CHECKS.format(dir=str(tmp_path)))
    if case == "an input over the limit":
        ok(ip, f"%config MeshImageMagics.max_input_image_bytes = {len(fox.data[0]) - 1}")
    sent = Sent(server)
    failed = cell(ip, magic(f"-o t_bad {options}", prompt))
    assert not failed.success
    message = failed.error_text
    assert all(part in message for part in says), message
    assert len(message) < 400 and "Traceback" not in message
    assert sent() == 0
    assert "t_bad" not in ip.user_ns


def test_the_function_api_makes_the_same_checks(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path
) -> None:
    sent = Sent(server)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    small = Image.new("RGB", (64, 48), "white")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"images": text}, ["images", "not an image"]),
        ({"images": [small] * 17}, ["17 images"]),
        ({"images": small, "mask": Image.new("RGB", (64, 48))}, ["mask", "alpha"]),
        ({"images": small, "operation": "paint"}, ["operation", "inpaint"]),
        ({"images": small, "model": "openai/dall-e-3"}, ["openai/dall-e-3", "does not support"]),
        ({"images": small, "quality": "high"}, ["quality", "edits endpoint does not take"]),
        ({"images": small, "prompt": ""}, ["no prompt"]),
    ]
    for kwargs, says in cases:
        kwargs.setdefault("prompt", PROMPT)
        with pytest.raises(mm.OptionError) as raised:
            mm.edit(**kwargs, base_url=server.url, progress="none")
        assert all(part in str(raised.value) for part in says), str(raised.value)
    assert sent() == 0


class Box:
    """A user's object whose properties raise, as a half-built wrapper's may."""

    @property
    def image(self) -> bytes:
        raise RuntimeError("not loaded yet")

    @property
    def read(self) -> Callable[[int], bytes]:
        raise ConnectionResetError("the stream went away")

    def __getitem__(self, index: int) -> bytes:
        raise RuntimeError(f"no frame {index}")


class BrokenPath:
    def __fspath__(self) -> str:
        raise PermissionError("locked")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("t_box.image", "--edit t_box.image: t_box.image raised RuntimeError: not loaded yet"),
        ("t_box[2]", "--edit t_box[2]: t_box[2] raised RuntimeError: no frame 2"),
        ("t_box", "--edit t_box: .read raised ConnectionResetError: the stream went away"),
        ("t_path", "--edit t_path: __fspath__() raised PermissionError: locked"),
    ],
)
def test_a_source_whose_property_raises_is_a_one_line_error(
    ip: InteractiveShell, server: LocalServer, source: str, says: str
) -> None:
    ip.user_ns.update(t_box=Box(), t_path=BrokenPath())
    message = refused(ip, server, f"%%meshimage -o t_out --edit {source}\n{PROMPT}")
    assert message == says
    with pytest.raises(mm.OptionError, match=r"images: \.read raised ConnectionResetError"):
        mm.edit(Box(), PROMPT, base_url=server.url, progress="none")


def test_a_bug_of_ours_keeps_its_traceback(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesh_magics import inputs

    def broken(*args: object, **kw: object) -> bytes:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(inputs, "file_bytes", broken)
    ip.user_ns["t_path"] = Path("anything.png")
    run = run_cell(ip, f"%%meshimage -o t_out --edit t_path\n{PROMPT}")
    assert isinstance(run.error, ZeroDivisionError)  # not an OptionError: a traceback shows


def test_a_file_named_like_an_attribute_of_a_variable_is_the_file(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t_img.png").write_bytes(picture())
    ip.user_ns["t_img"] = Image.new("RGB", (8, 8))  # has no attribute `png`
    sent = Sent(server)
    ok(ip, f"%%meshimage -o t_out --edit t_img.png\n{PROMPT}")
    assert sent() == 1
    assert ip.user_ns["t_out"].inputs[0]["sha256"] == sha(picture())
    assert ip.user_ns["t_out"].inputs[0]["name"] == "t_img.png"
    failed = cell(ip, f"%%meshimage -o t_out2 --edit t_img.jpg\n{PROMPT}")  # no such file
    assert "t_img.jpg" in failed.error_text and "AttributeError" in failed.error_text


# -- 3. every operation against the embedded backend ------------------------------------------


def test_every_operation_gives_what_it_says(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    pic, other = picture(), picture(ink=(200, 180, 20))
    ip.user_ns.update(t_pic=pic, t_other=other, t_mask=mask_png((64, 48), (0, 0, 32, 24)))
    sent = Sent(server)

    def run(name: str, options: str, prompt: str = PROMPT) -> ImageResult:
        ok(ip, magic(f"-o {name} --no-display --edit t_pic {options}", prompt))
        result = ip.user_ns[name]
        assert isinstance(result, ImageResult) and len(result) == 1 and result.is_edit
        assert result.inputs[0]["sha256"] == sha(pic)
        return result

    edited = run("t_edit", "")
    assert size_of(edited.data[0]) == (64, 48) and pixels(edited.data[0]) != pixels(pic)
    inpainted = run("t_inpaint", "--operation inpaint --mask t_mask", "")
    assert [i["role"] for i in inpainted.inputs] == ["image", "mask"]
    assert inpainted.inputs[1]["name"] == "t_mask"
    assert pixels(inpainted.data[0]) not in (pixels(pic), pixels(edited.data[0]))
    outpainted = run("t_out", "--operation outpaint --expand-factor 2")
    assert size_of(outpainted.data[0]) == (128, 96)
    mixed = run("t_mix", "--edit t_other --operation mix")
    assert [(i["role"], i["name"]) for i in mixed.inputs] == [
        ("image", "t_pic"),
        ("reference", "t_other"),
    ]
    assert pixels(mixed.data[0]) != pixels(edited.data[0])  # the reference shows
    reframed = run("t_reframe", "--operation reframe --aspect-ratio 1:1", "")
    assert size_of(reframed.data[0]) == (64, 64)
    upscaled = run("t_up", "--operation upscale --upscale-factor 2x", "")
    assert size_of(upscaled.data[0]) == (128, 96)
    cut = run("t_cut", "--operation remove_background", "")
    alpha = rgba(cut.data[0]).getchannel("A")
    assert alpha.getextrema() == (0, 255)  # the white border gone, the square kept
    assert alpha.getpixel((0, 0)) == 0 and alpha.getpixel((32, 24)) == 255

    operations = [r.body.get("operation", "edit") for r in sent.edits()]
    assert operations == [
        "edit",
        "inpaint",
        "outpaint",
        "mix",
        "reframe",
        "upscale",
        "remove_background",
    ]


# -- 4. the mask keeps every pixel it covers ---------------------------------------------------


def kept_pixels_equal(original: bytes, result: bytes, mask: bytes) -> int:
    """How many opaque mask pixels were checked; asserts each is the input's."""
    before, after = rgba(original), rgba(result)
    assert before.size == after.size
    alpha = rgba(mask).getchannel("A")
    width, height = before.size
    checked = 0
    for y in range(height):
        for x in range(width):
            if alpha.getpixel((x, y)) == 255:
                assert after.getpixel((x, y)) == before.getpixel((x, y)), (x, y)
                checked += 1
    return checked


def test_pixels_under_the_opaque_mask_are_unchanged_through_the_magic(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    mask = mask_png((64, 64), (16, 8, 48, 40))
    ip.user_ns["t_mask"] = mask
    ok(ip, f"%%meshimage -o t_night --no-display --edit t_fox[0] --mask t_mask\n{PROMPT}")
    night = ip.user_ns["t_night"]
    assert kept_pixels_equal(fox.data[0], night.data[0], mask) == 64 * 64 - 32 * 32
    assert pixels(night.data[0]) != pixels(fox.data[0])  # the transparent box did change


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    box=st.tuples(
        st.integers(0, 62), st.integers(0, 46), st.integers(1, 64), st.integers(1, 48)
    ).filter(lambda b: b[0] < b[2] and b[1] < b[3])
)
def test_pixels_under_the_opaque_mask_are_unchanged_through_the_function(
    ip: InteractiveShell, server: LocalServer, box: tuple[int, int, int, int]
) -> None:
    pic = picture()
    mask = mask_png((64, 48), box)
    result = mm.edit(pic, PROMPT, mask=mask, base_url=server.url, progress="none", replay=False)
    assert isinstance(result, ImageResult)
    changed = (box[2] - box[0]) * (box[3] - box[1])
    assert kept_pixels_equal(pic, result.data[0], mask) == 64 * 48 - changed


# -- 5. replay -------------------------------------------------------------------------------------


def test_an_edit_replays_from_the_store_keyed_by_its_inputs(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    sent = Sent(server)
    edit = "%%meshimage -o {name} --no-display --edit {source} {flags}\n" + PROMPT

    ok(ip, edit.format(name="t_a", source="t_fox[0]", flags=""))
    assert sent() == 1
    ok(ip, edit.format(name="t_b", source="t_fox[0]", flags="--replay"))
    assert sent() == 1
    a, b = ip.user_ns["t_a"], ip.user_ns["t_b"]
    assert b.replayed and not a.replayed and b.data == a.data and b.inputs == a.inputs

    ok(ip, edit.format(name="t_c", source="t_fox[0]", flags="--fresh"))
    assert sent() == 2 and not ip.user_ns["t_c"].replayed

    ok(ip, edit.format(name="t_d", source="t_fox[1]", flags="--replay"))
    assert sent() == 3  # another input: a miss
    d = ip.user_ns["t_d"]
    assert not d.replayed and d.inputs[0]["sha256"] == sha(fox.data[1])

    stored = {run.inputs[0]["sha256"] for run in mm.history(PROMPT) if run.is_edit}
    assert stored == {sha(fox.data[0]), sha(fox.data[1])}


# -- 6. sweeps -------------------------------------------------------------------------------------


def test_an_edit_sweeps_over_models(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    sent = Sent(server)
    ok(
        ip,
        "%%meshimage -o t_sweep --no-display --edit t_fox[0] "
        f"--model openai/gpt-image-1,local/sketch\n{PROMPT}",
    )
    sweep = ip.user_ns["t_sweep"]
    assert sorted(r.body["model"] for r in sent.edits()) == ["local/sketch", "openai/gpt-image-1"]
    results = sweep.results
    assert len(results) == 2
    for result in results:
        assert result.is_edit and result.inputs[0]["name"] == "t_fox[0]"
        assert result.inputs[0]["sha256"] == sha(fox.data[0])
    assert sorted(r.model for r in results) == ["local/sketch", "openai/gpt-image-1"]


# -- 7. background -------------------------------------------------------------------------------


def test_a_bg_edit_in_the_shell_runs_and_binds_its_handle(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    sent = Sent(server)
    ok(ip, f"%%meshimage --bg -o t_bg --no-display --edit t_fox[0]\n{PROMPT}")
    handle = ip.user_ns["t_bg"]
    assert isinstance(handle, Generation) and handle.done() and sent() == 1
    result = handle.result()
    assert result.is_edit and result.inputs[0]["sha256"] == sha(fox.data[0])


def test_a_background_edit_in_a_plain_script_returns_a_handle_that_finishes(
    server: LocalServer,
) -> None:
    script = f"""
        import hashlib, io, json, sys
        import mesh_magics as mm
        from PIL import Image
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (30, 90, 200)).save(buffer, "PNG")
        picture = buffer.getvalue()
        handle = mm.start("Make it night", edit=picture,
                         base_url={server.url!r}, progress="none")
        kind = type(handle).__name__
        result = handle.result(timeout=30)
        print(json.dumps({{
            "kind": kind,
            "ipython": "IPython" in sys.modules,
            "status": handle.status,
            "sha": result.inputs[0]["sha256"] == hashlib.sha256(picture).hexdigest(),
            "size": list(result.sizes[0]),
        }}))
    """
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MESHAPI_BASE")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {
        "kind": "Generation",
        "ipython": False,
        "status": "done",
        "sha": True,
        "size": [64, 48],
    }


# -- 8. the wire body --------------------------------------------------------------------------


def test_the_wire_body_is_the_sdks_edit_params_with_the_inputs_as_data_urls(
    ip: InteractiveShell, fox: ImageResult, capture: tuple[ScriptedServer, Capture]
) -> None:
    from meshapi._types import ImageEditParams

    scripted, kept = capture
    mask = mask_png((64, 64), (0, 0, 32, 32))
    ip.user_ns["t_mask"] = mask
    ok(
        ip,
        f"%%meshimage -o t_out --no-display --base-url {scripted.url} --edit t_fox "
        f"--mask t_mask --operation inpaint --mask-feather 2 --quality-tier pro\n{PROMPT}",
    )
    [received] = kept.received
    body = received.body
    ImageEditParams.model_validate(body)  # extra="forbid": no key the SDK does not know
    with pytest.raises(ValueError):
        ImageEditParams.model_validate({**body, "stream": False})  # the check can fail
    assert "stream" not in body
    assert decoded_data_url(body["image"]) == fox.data[0]
    assert [decoded_data_url(ref) for ref in body["reference_images"]] == [fox.data[1]]
    assert decoded_data_url(body["mask"]) == mask
    assert body["operation"] == "inpaint" and body["mask_feather"] == 2
    assert body["quality_tier"] == "pro" and body["prompt"] == PROMPT
    assert received.headers["content-length"] == str(len(received.raw))
    assert "transfer-encoding" not in received.headers


# -- 9. retries ------------------------------------------------------------------------------------


def test_no_retry_once_the_body_was_sent(
    ip: InteractiveShell, fox: ImageResult, capture: tuple[ScriptedServer, Capture]
) -> None:
    scripted, kept = capture
    scripted.routes[EDITS] = kept.route(hang_up)  # read it all, then drop the connection
    failed = cell(ip, f"%%meshimage -o t_lost --base-url {scripted.url} --edit t_fox[0]\n{PROMPT}")
    assert not failed.success and "t_lost" not in ip.user_ns
    assert scripted.paths().count(EDITS) == 1
    assert [decoded_data_url(r.body["image"]) for r in kept.received] == [fox.data[0]]


def test_a_503_is_retried_with_the_same_body(
    ip: InteractiveShell, fox: ImageResult, capture: tuple[ScriptedServer, Capture]
) -> None:
    scripted, kept = capture
    busy = send_json({"error": {"code": "busy", "message": "try again"}}, 503, {"retry-after": "0"})
    scripted.routes[EDITS] = kept.route(in_turn(busy, edit_answer()))
    ok(ip, f"%%meshimage -o t_retried --base-url {scripted.url} --edit t_fox[0]\n{PROMPT}")
    assert scripted.paths().count(EDITS) == 2
    first, second = kept.received
    assert first.raw == second.raw and decoded_data_url(first.body["image"]) == fox.data[0]
    assert ip.user_ns["t_retried"].inputs[0]["sha256"] == sha(fox.data[0])


# -- 10. --dry-run -------------------------------------------------------------------------------


def test_dry_run_shows_the_edit_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    ip.user_ns["t_mask"] = mask_png((64, 64), (0, 0, 8, 8))
    sent = Sent(server)
    shown = ok(ip, f"%%meshimage --dry-run --edit t_fox --mask t_mask\n{PROMPT}")
    text = "\n".join(str(o.get("text/plain", "")) for o in shown.outputs) + shown.stdout
    assert f"POST {server.url}/v1/images/edits" in text
    for name in ("t_fox[0]", "t_fox[1]", "t_mask"):
        assert f"characters: {name})" in text, text
    assert b64(fox.data[0])[:200] not in text and "sha256:" not in text
    assert sent() == 0


# -- 11. provenance ---------------------------------------------------------------------------


def test_an_edit_leads_back_to_the_image_it_came_from(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult, tmp_path: Path
) -> None:
    ok(ip, f"%%meshimage -o t_night --no-display --edit t_fox[0]\n{PROMPT}")
    night = ip.user_ns["t_night"]
    [parent] = night.parents
    assert parent.data == fox.data
    [fox_file, _] = fox.save(tmp_path / "fox")
    [night_file] = night.save(tmp_path / "night")
    saved = mm.read_metadata(night_file)
    assert saved["inputs"][0]["sha256"] == mm.read_metadata(fox_file)["sha256"] == sha(fox.data[0])
    assert saved["inputs"][0]["name"] == "t_fox[0]"


# -- 12. a field the operation ignores ------------------------------------------------------------


def test_a_field_the_operation_ignores_is_said_once_and_still_sent(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    sent = Sent(server)
    run = ok(
        ip,
        "%meshimage -o t_ignored --no-display --edit t_fox[0] --operation remove_background "
        "--upscale-factor 3x --mask-feather 4 --model openai/gpt-image-1,local/sketch",
    )
    notes = [line for line in run.stderr.splitlines() if "ignored" in line]
    assert notes == [
        "meshimage: --upscale-factor is ignored by --operation remove_background; it is for "
        "upscale",
        "meshimage: --mask-feather is ignored without a --mask",
    ]  # once for the sweep's two runs
    assert [r.body.get("upscale_factor") for r in sent.edits()] == ["3x", "3x"]


def test_the_function_api_warns_where_it_was_called(server: LocalServer, fox: ImageResult) -> None:
    with pytest.warns(UserWarning, match="--expand-factor is ignored by --operation edit") as w:
        mm.edit(fox, PROMPT, expand_factor=2, base_url=server.url, progress="none")
    assert [Path(record.filename).name for record in w] == ["test_edits.py"]


def test_a_field_the_operation_uses_brings_no_note(
    ip: InteractiveShell, server: LocalServer, fox: ImageResult
) -> None:
    run = ok(ip, "%meshimage --no-display --edit t_fox[0] --operation upscale --upscale-factor 2x")
    assert "ignored" not in run.stderr


def test_mm_sweep_edits_one_input_with_each_model(server: LocalServer, fox: ImageResult) -> None:
    sent = Sent(server)
    models = ["openai/gpt-image-1", "local/sketch"]
    sweep = mm.sweep(PROMPT, edit=fox[0], model=models, base_url=server.url, progress="none")
    assert sorted(r.body["model"] for r in sent.edits()) == sorted(models)
    assert [r.inputs[0]["sha256"] for r in sweep.results] == [sha(fox.data[0])] * 2
    with pytest.raises(mm.OptionError, match="mask goes with edit="):
        mm.sweep(PROMPT, mask=fox[0], model=models, base_url=server.url, progress="none")
    assert sent() == 2
