"""``POST /v1/images/edits`` of the embedded backend, over real loopback HTTP."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from mesh_magics.local import LocalServer
from mesh_magics.local.edits import MAX_REFERENCES, tint_color

from .servers import lent
from .support import EDITS, sent

MODEL = "openai/gpt-image-1"


@pytest.fixture(scope="module")
def running() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.1) as server:
        yield server


@pytest.fixture
def server(running: LocalServer) -> Iterator[LocalServer]:
    yield from lent(running, ping_interval=0.1)


@pytest.fixture
def client(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/v1", timeout=10) as http:
        yield http


def png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def data_url(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png(img)).decode()


def picture(width: int = 48, height: int = 32) -> Image.Image:
    """A white picture with a dark square in the middle: something to see and keep."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    img.paste((20, 40, 160), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return img


def edit(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "prompt": "make it blue", "image": data_url(picture()), **fields}
    return http.post("/images/edits", json=body)


def result(response: httpx.Response, index: int = 0) -> Image.Image:
    assert response.status_code == 200, response.text
    entry = response.json()["data"][index]
    text = entry.get("b64_json") or entry["url"].partition(",")[2]
    img = Image.open(io.BytesIO(base64.b64decode(text)))
    img.load()
    return img


def details(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return list(error["details"])


def locs(response: httpx.Response) -> list[tuple[Any, ...]]:
    return [tuple(d["loc"]) for d in details(response)]


# -- answers ------------------------------------------------------------------------------


def test_an_edit_answers_the_generation_shape_at_the_inputs_size(client: httpx.Client) -> None:
    response = edit(client)
    body = response.json()
    assert set(body) >= {"created", "data", "size", "output_format", "usage", "background"}
    assert body["size"] == "48x32" and body["output_format"] == "png"
    assert body["data"][0]["url"].startswith("data:image/png;base64,")
    img = result(response)
    assert img.size == (48, 32)


def test_an_edit_is_a_tinted_copy_of_the_first_image_with_a_band(client: httpx.Client) -> None:
    img = result(edit(client)).convert("RGB")
    source = picture()
    tint = tint_color("make it blue", 0)
    # Above the band: the source blended 35% toward the tint.
    for xy in [(1, 1), (24, 16)]:
        pixel = source.getpixel(xy)
        assert isinstance(pixel, tuple)
        expected = [round(s * 0.65 + t * 0.35) for s, t in zip(pixel, tint, strict=True)]
        got = img.getpixel(xy)
        assert all(abs(g - e) <= 1 for g, e in zip(got, expected, strict=True)), (xy, got, expected)
    assert img.getpixel((1, 31)) == tint  # the annotation band


def test_an_edit_is_deterministic_and_n_gives_distinct_results(client: httpx.Client) -> None:
    first, second = edit(client, n=2), edit(client, n=2)
    assert first.json()["data"] == second.json()["data"]
    a, b = result(first, 0), result(first, 1)
    assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None


def test_size_and_b64_json(client: httpx.Client) -> None:
    response = edit(client, size="64x64", response_format="b64_json")
    assert "b64_json" in response.json()["data"][0]
    assert result(response).size == (64, 64)
    assert response.json()["size"] == "64x64"


def test_an_image_ref_object_and_bare_base64_are_accepted(client: httpx.Client) -> None:
    bare = base64.b64encode(png(picture())).decode()
    assert result(edit(client, image=bare)).size == (48, 32)
    assert result(edit(client, image={"url": data_url(picture())})).size == (48, 32)


def test_with_a_mask_only_its_transparent_area_changes(client: httpx.Client) -> None:
    source = picture()
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))  # opaque: keep
    mask.paste((0, 0, 0, 0), (0, 0, 16, 32))  # transparent: edit the left third
    for feather in (0, 4):
        img = result(edit(client, mask=data_url(mask), mask_feather=feather)).convert("RGB")
        kept = (16, 0, 48, 32)
        assert img.crop(kept).tobytes() == source.crop(kept).tobytes()
        assert img.getpixel((2, 2)) != source.getpixel((2, 2))
    with_band = result(edit(client, mask=data_url(mask))).convert("RGB")
    assert with_band.getpixel((40, 31)) == source.getpixel((40, 31))  # no band where kept


def test_inpaint_needs_a_mask(client: httpx.Client) -> None:
    assert ("body", "mask") in locs(edit(client, operation="inpaint"))


def test_remove_background_gives_real_transparency(client: httpx.Client) -> None:
    response = edit(client, operation="remove_background", prompt="")
    assert response.json()["background"] == "transparent"
    img = result(response)
    assert img.mode == "RGBA" and img.size == (48, 32)
    assert img.getpixel((0, 0))[3] == 0 and img.getpixel((47, 31))[3] == 0
    assert img.getpixel((24, 16)) == (20, 40, 160, 255)


@pytest.mark.parametrize(("factor", "size"), [(None, (96, 64)), ("4x", (192, 128)), (3, (144, 96))])
def test_upscale_multiplies_the_size(
    client: httpx.Client, factor: Any, size: tuple[int, int]
) -> None:
    fields: dict[str, Any] = {"operation": "upscale"}
    if factor is not None:
        fields["upscale_factor"] = factor
    img = result(edit(client, **fields))
    assert img.size == size
    assert img.convert("RGB").getpixel((size[0] // 2, size[1] // 2)) == (20, 40, 160)


def test_outpaint_puts_the_input_in_the_middle_of_a_bigger_canvas(client: httpx.Client) -> None:
    img = result(edit(client, operation="outpaint", expand_factor=2)).convert("RGB")
    assert img.size == (96, 64)
    assert img.getpixel((48, 32)) == (20, 40, 160)
    assert img.getpixel((1, 1)) == tint_color("make it blue", 0)


def test_reframe_fits_the_input_in_the_aspect_ratio(client: httpx.Client) -> None:
    img = result(edit(client, operation="reframe", aspect_ratio="1:1"))
    assert img.size == (48, 48)
    assert result(edit(client, operation="reframe", size="40x80")).size == (40, 80)


def test_mix_blends_the_references_in(client: httpx.Client) -> None:
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    alone = result(edit(client)).convert("RGB")
    mixed = result(edit(client, operation="mix", reference_images=[data_url(red)])).convert("RGB")
    assert mixed.size == (48, 32)
    assert mixed.getpixel((1, 1))[0] > alone.getpixel((1, 1))[0] - 1
    assert mixed.getpixel((1, 1)) != alone.getpixel((1, 1))
    assert ("body", "reference_images") in locs(edit(client, operation="mix"))


# -- validation ---------------------------------------------------------------------------


def test_every_bad_field_is_named_at_once(client: httpx.Client) -> None:
    no_alpha = data_url(Image.new("RGB", (48, 32)))
    response = edit(
        client,
        image="https://example.com/a.png",
        operation="sharpen",
        mask=no_alpha,
        n=0,
        size="huge",
        response_format="gif",
    )
    assert set(locs(response)) == {
        ("body", "image"),
        ("body", "operation"),
        ("body", "mask"),
        ("body", "n"),
        ("body", "size"),
        ("body", "response_format"),
    }
    remote = next(d for d in details(response) if d["loc"] == ["body", "image"])
    assert remote["type"] == "url_not_supported"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"image": base64.b64encode(b"not an image").decode()}, ("body", "image")),
        ({"image": None}, ("body", "image")),
        ({"prompt": ""}, ("body", "prompt")),
        ({"mask": data_url(Image.new("RGBA", (10, 10)))}, ("body", "mask")),
        ({"reference_images": ["data:text/plain;base64,aGk="]}, ("body", "reference_images", 0)),
        ({"upscale_factor": "lots", "operation": "upscale"}, ("body", "upscale_factor")),
        ({"upscale_factor": "200x", "operation": "upscale"}, ("body", "upscale_factor")),
        ({"expand_factor": 0.5, "operation": "outpaint"}, ("body", "expand_factor")),
        ({"aspect_ratio": "wide"}, ("body", "aspect_ratio")),
        ({"stream": True}, ("body", "stream")),
    ],
)
def test_each_bad_field_is_a_422_naming_it(
    client: httpx.Client, fields: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    assert loc in locs(edit(client, **fields))


def test_a_mask_of_another_size_is_refused_without_echoing_it(client: httpx.Client) -> None:
    response = edit(client, mask=data_url(Image.new("RGBA", (10, 10))))
    (detail,) = details(response)
    assert "48x32" in detail["msg"] and "input" not in detail


def test_too_many_references_are_refused(client: httpx.Client) -> None:
    small = data_url(Image.new("RGB", (4, 4)))
    assert edit(client, reference_images=[small] * MAX_REFERENCES).status_code == 200
    too_many = edit(client, reference_images=[small] * (MAX_REFERENCES + 1))
    (detail,) = details(too_many)
    assert detail["loc"] == ["body", "reference_images"] and detail["type"] == "too_long"


@pytest.mark.parametrize("model", ["openai/dall-e-3", "vertex/imagen-3"])
def test_a_model_without_image_edit_is_a_422(client: httpx.Client, model: str) -> None:
    (detail,) = details(edit(client, model=model))
    assert detail["loc"] == ["body", "model"]


def test_an_unknown_model_is_a_404(client: httpx.Client) -> None:
    response = edit(client, model="nobody/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_a_get_is_a_405(client: httpx.Client) -> None:
    response = client.get("/images/edits")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


# -- faults, accounting, recording --------------------------------------------------------


def test_server_faults_apply_to_edits(client: httpx.Client, server: LocalServer) -> None:
    server.fault = "status:503"
    response = edit(client)
    assert response.status_code == 503 and "retry-after" in response.headers
    server.fault = "not_image"
    entry = edit(client).json()["data"][0]
    assert base64.b64decode(entry["url"].partition(",")[2]) == b"this is not an image"


def test_per_request_controls_and_stream_fault_twins_apply_to_edits(
    client: httpx.Client,
) -> None:
    assert edit(client, mesh_local={"fault": "explode"}).status_code == 400
    limited = edit(client, mesh_local={"fault": "status:429", "retry_after": "3"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    failed = edit(client, mesh_local={"fault": "error_frame"})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "provider_job_failed"
    assert edit(client, mesh_local={"fault": "cut"}).json()["data"] == []
    assert len(edit(client, n=3, mesh_local={"fault": "fewer"}).json()["data"]) == 2
    once = {"fault": "status:503", "times": 1}
    assert [edit(client, mesh_local=once).status_code for _ in range(2)] == [503, 200]


def test_remove_background_on_a_noisy_picture_is_quick(client: httpx.Client) -> None:
    noisy = Image.effect_noise((1024, 1024), 100).convert("RGB")
    response = edit(client, image=data_url(noisy), operation="remove_background")
    assert result(response).size == (1024, 1024)


def test_an_edit_counts_in_flight_and_is_recorded_bounded(server: LocalServer) -> None:
    server.latency = 0.5
    big = data_url(Image.effect_noise((256, 256), 64).convert("RGB"))
    before, counted = server.request_count, server.generation_count

    def post() -> None:
        with httpx.Client(base_url=server.url + "/v1", timeout=10) as http:
            assert edit(http, image=big).status_code == 200

    worker = threading.Thread(target=post)
    worker.start()
    try:
        assert server.wait_for_in_flight(1, timeout=5)
    finally:
        worker.join()
    assert server.request_count == before + 1
    assert server.generation_count == counted + 1 and server.in_flight == 0
    recorded = sent(server, EDITS)
    assert recorded.status == 200
    assert recorded.body["image"].startswith("<data:image/png;base64 ")
