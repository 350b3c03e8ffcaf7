"""An edit of a big input holds at most one base64 copy of it: the peak memory of a 40 MB
edit, measured in a client process of its own, and the wire body it streams.

The client is a fresh interpreter (`python -m bench.edit_memory CLIENT ...`, the child of
benchmark 12): an IPython `InteractiveShell` with the extension loaded and
`max_input_image_bytes` raised by `%config`, which makes a small warm-up edit, resets the
kernel's high-water mark of its resident memory, makes the big edit and reports `VmHWM`
minus the RSS before it. The embedded backend runs here, in the test's process, its body
cap raised, so what is measured is the client's memory alone.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench import ROOT
from bench.edit_memory import MAX_BODY_BYTES, data_url_digest, write_noise_png
from mesh_magics.http.bodies import PIECE, WireBody, wire_body
from mesh_magics.inputs import Source, edit_inputs
from mesh_magics.local import LocalServer
from mesh_magics.request import ImageRequest, build_edit_request, reference

MB = 1_000_000
INPUT_BYTES = 40 * MB
GOAL = 3.0  # extra peak RSS <= 3x the input's size
CHILD_TIMEOUT = 240  # seconds: a memory bound, not a time bound


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A PNG of noise of at least 40 MB, and a small one for the warm-up edit."""
    folder = tmp_path_factory.mktemp("edit_memory")
    big, warm = folder / "big.png", folder / "warm.png"
    write_noise_png(big, INPUT_BYTES)
    write_noise_png(warm, 16 * 1024)
    return big, warm


@pytest.fixture
def backend() -> Iterator[LocalServer]:
    with LocalServer(max_body_bytes=MAX_BODY_BYTES) as local:
        yield local


def measure(client: str, backend: LocalServer, images: tuple[Path, Path]) -> dict[str, int]:
    big, warm = images
    done = subprocess.run(
        [sys.executable, "-m", "bench.edit_memory", client, backend.url, str(big), str(warm)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    measured: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def assert_sent_whole(backend: LocalServer, big: Path) -> None:
    """The server got the warm-up edit and then the big one, whole, and answered both."""
    edits = [r for r in backend.requests if r.path == "/v1/images/edits"]
    assert len(edits) == 2, [(r.path, r.body) for r in backend.requests]
    assert [r.status for r in edits] == [200, 200]
    length, digest = data_url_digest(big.read_bytes())
    assert length > 4 / 3 * INPUT_BYTES  # ~53 MB of data URL on the wire
    assert edits[1].body["image"] == f"<data:image/png;base64 {length:,} chars sha256={digest}>"
    assert edits[1].body["size"] == "256x256"


@pytest.mark.timeout(CHILD_TIMEOUT + 60)
@pytest.mark.parametrize("client", ["magic", "function"])
def test_an_edit_of_a_40_mb_input_holds_at_most_3x_its_size(
    client: str, backend: LocalServer, images: tuple[Path, Path]
) -> None:
    big = images[0]
    size = big.stat().st_size
    assert size >= INPUT_BYTES
    measured = measure(client, backend, images)
    assert (measured["width"], measured["height"]) == (256, 256)
    assert_sent_whole(backend, big)
    ratio = measured["extra"] / size
    assert ratio <= GOAL, (
        f"{client}: extra peak RSS {measured['extra'] / MB:.1f} MB for a {size / MB:.1f} MB "
        f"input: {ratio:.2f}x, over {GOAL:g}x"
    )
    print(f"{client}: extra peak RSS {ratio:.2f}x the input")


# -- the wire body ------------------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def noise(mode: str, width: int, height: int, seed: int) -> Image.Image:
    data = random.Random(seed).randbytes(width * height * len(mode))
    return Image.frombytes(mode, (width, height), data)


@cache
def inputs() -> tuple:  # type: ignore[type-arg]
    """Two images (the first over two pieces, neither a multiple of 3 bytes) and a mask."""
    first = png(noise("RGB", 900, 701, 1))
    second = png(noise("RGB", 301, 203, 2))
    mask = png(noise("RGBA", 900, 701, 3))
    read = edit_inputs(
        [Source(first, "--edit a"), Source(second, "--edit b")],
        Source(mask, "--mask m"),
        limit=64 * MB,
    )
    assert len(read[0].data) > 2 * PIECE and {len(i.data) % 3 for i in read} != {0}
    return read


def naive(request: ImageRequest) -> bytes:
    """The body built whole: every reference replaced by its image's data URL."""
    urls = {
        reference(image): f"data:image/{image.format};base64,"
        + base64.b64encode(image.data).decode()
        for image in request.inputs
    }
    body = dict(request.body)
    body["image"] = urls[body["image"]]
    body["reference_images"] = [urls[ref] for ref in body["reference_images"]]
    body["mask"] = urls[body["mask"]]
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def pieces(body: WireBody) -> list[bytes]:
    content = body.content()
    if isinstance(content, bytes):
        return [content]

    async def gather() -> list[bytes]:
        return [piece async for piece in content]

    return asyncio.run(gather())


MARKERS = st.sampled_from(
    ['"', '\\"', "\\", "mesh-input-", '"mesh-input-0"', "mesh-input-0-0", "sha256:", "0", "1",
     "data:image/png;base64,", "\n", "}", "{", ",", ":", "\u2028", "é", "\x00"]
)  # fmt: skip
PROMPTS = st.lists(st.one_of(MARKERS, st.text(max_size=20)), max_size=12).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=PROMPTS, extra=st.none() | st.text(max_size=30))
def test_the_wire_body_is_the_json_of_the_body_with_its_data_urls(
    prompt: str, extra: str | None
) -> None:
    read = inputs()
    fields = {"size": "256x256"} if extra is None else {"size": "256x256", "mesh_note": extra}
    request = build_edit_request(prompt, fields, {"model": "openai/gpt-image-1"}, read)
    assert (
        request.body["image"].startswith("sha256:") and len(request.body["reference_images"]) == 1
    )
    body = wire_body(request)
    sent = pieces(body)
    joined = b"".join(sent)
    assert joined == naive(request)
    assert body.size == len(joined)
    assert max(len(piece) for piece in sent) <= 1.4 * 1024 * 1024
    assert json.loads(joined).get("prompt", "") == prompt  # an empty one is not sent
    # Streamed a piece at a time: the images' base64 is never one piece.
    assert len(sent) > sum(-(-len(image.data) // PIECE) for image in read)


def test_a_prompt_that_names_an_input_by_its_reference_is_sent_as_typed() -> None:
    read = inputs()
    prompt = reference(read[0])  # a user who pastes the hash the store shows
    request = build_edit_request(prompt, {}, {"model": "openai/gpt-image-1"}, read)
    joined = b"".join(pieces(wire_body(request)))
    assert json.loads(joined)["prompt"] == prompt
    assert joined == naive(request)
