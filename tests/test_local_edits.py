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


# -- multipart: the openai SDK's way of sending an edit -----------------------------------------


def form_edit(
    http: httpx.Client,
    files: list[tuple[str, Any]],
    headers: dict[str, str] | None = None,
    **data: Any,
) -> httpx.Response:
    fields = {"model": MODEL, "prompt": "make it blue", **data}
    return http.post("/images/edits", data=fields, files=files, headers=headers)


def test_a_multipart_edit_draws_what_the_json_edit_draws(client: httpx.Client) -> None:
    as_form = form_edit(client, [("image", ("in.png", png(picture()), "image/png"))], n="2")
    as_json = edit(client, n=2)
    assert [result(as_form, i).tobytes() for i in (0, 1)] == [
        result(as_json, i).tobytes() for i in (0, 1)
    ]


def test_multipart_images_go_as_the_edited_one_then_references(
    client: httpx.Client, server: LocalServer
) -> None:
    red, blue = Image.new("RGB", (48, 32), "red"), Image.new("RGB", (48, 32), "blue")
    files = [("image[]", ("a.png", png(red), "image/png")), ("image[]", ("b.png", png(blue)))]
    mixed = form_edit(client, files, operation="mix", response_format="b64_json")
    assert result(mixed).size == (48, 32)
    body = server.requests[-1].body
    assert body["operation"] == "mix" and len(body["reference_images"]) == 1
    masked = form_edit(
        client,
        [("image", ("a.png", png(red))), ("mask", ("m.png", png(Image.new("RGBA", (48, 32)))))],
        mask_feather="2",
    )
    assert result(masked).size == (48, 32)
    assert server.requests[-1].body["mask_feather"] == 2  # a number again, as in JSON


def test_a_multipart_field_of_the_wrong_kind_is_named_like_json(client: httpx.Client) -> None:
    answer = form_edit(client, [("image", ("a.png", png(picture())))], n="many")
    assert locs(answer) == [("body", "n")]


def raw_form(http: httpx.Client, body: bytes, boundary: str = "b0und") -> httpx.Response:
    content_type = f"multipart/form-data; boundary={boundary}"
    return http.post("/images/edits", content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"no delimiter at all", "no part"),
        (b"--b0und\r\nContent-Disposition: form-data; name=prompt\r\n\r\nfox", "ends inside"),
        (b"--b0und\r\nX: " + b"y" * 10_000 + b"\r\n\r\nfox\r\n--b0und--", "headers"),
        (b"--b0und\r\n\r\nfox\r\n--b0und--", "Content-Disposition"),
        (b"--b0und\r\nContent-Disposition: form-data\r\n\r\nfox\r\n--b0und--", "no name"),
        (
            b"".join(
                b"--b0und\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n" for _ in range(65)
            )
            + b"--b0und--",
            "more than 64 parts",
        ),
        (
            b"--b0und\r\nContent-Disposition: form-data; name=prompt\r\n\r\n"
            + b"p" * 70_000
            + b"\r\n--b0und--",
            "over 65536 bytes",
        ),
    ],
)
def test_a_hostile_multipart_body_is_a_400_saying_why(
    client: httpx.Client, body: bytes, says: str
) -> None:
    answer = raw_form(client, body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]


def test_a_multipart_body_without_a_boundary_is_a_400(client: httpx.Client) -> None:
    answer = client.post(
        "/images/edits", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert answer.status_code == 400 and "boundary" in answer.json()["error"]["message"]


def test_multipart_is_taken_by_edits_only_and_never_cross_origin(
    client: httpx.Client, server: LocalServer
) -> None:
    files = [("image", ("a.png", png(picture()), "image/png"))]
    before = server.generation_count
    generation = client.post("/images/generations", data={"prompt": "a fox"}, files=files)
    assert generation.status_code == 415
    assert generation.json()["error"]["code"] == "unsupported_media_type"
    page = form_edit(client, files, headers={"Origin": "http://evil.example"})
    assert page.status_code == 403 and page.json()["error"]["code"] == "forbidden_origin"
    assert server.generation_count == before
