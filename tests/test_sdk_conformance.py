"""The vendor's own SDK (``meshapi`` 0.1.11) reads every answer of the embedded backend;
the ``openai`` SDK's multipart ``images.edit``, and its files and batches, work against it
too.

The SDK's pydantic models are the wire shapes, so each endpoint, stream shape and error
the backend can produce is driven through the SDK, sync and async, over loopback HTTP.
The SDK cannot send ``mesh_local`` (its params forbid unknown fields): faults are set on
the server. Its retries are off (``max_retries=0``) so an error is seen at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from meshapi import (
    AsyncMeshAPI,
    BatchListResponse,
    BatchObject,
    BatchRequestItem,
    CreateBatchParams,
    ImageEditParams,
    ImageGenerationChunk,
    ImageGenerationParams,
    ImageGenerationResponse,
    ImageRef,
    MeshAPI,
    MeshAPIError,
    ModelInfo,
    ModelSearchParams,
    ModelsPage,
)
from PIL import Image

from mesh_magics.local import MODELS, LocalServer

from .servers import lent
from .support import EDITS, GENERATIONS, generations, sent

PROMPT = "a red fox in the snow"
TOKEN = "rsk_local_conformance"
IMAGE_MODELS = [m["id"] for m in MODELS if "image" in m["output_modalities"]]


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.05) as server:
        yield server


@pytest.fixture
def server(running: LocalServer) -> Iterator[LocalServer]:
    yield from lent(running, ping_interval=0.05)


@pytest.fixture(scope="module")
def sdk(running: LocalServer) -> Iterator[MeshAPI]:
    with MeshAPI(base_url=running.url, token=TOKEN, timeout=10, max_retries=0) as client:
        yield client


def params(**fields: Any) -> ImageGenerationParams:
    return ImageGenerationParams(**{"prompt": PROMPT, "size": "64x64", **fields})


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def red_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def async_sdk(server: LocalServer) -> AsyncMeshAPI:
    return AsyncMeshAPI(base_url=server.url, token=TOKEN, timeout=10, max_retries=0)


# -- models ------------------------------------------------------------------------------


def test_the_sdk_lists_every_model(sdk: MeshAPI) -> None:
    models = sdk.models.list()
    assert [m.id for m in models] == [m["id"] for m in MODELS]
    for model in models:
        assert model.pricing is not None
        if model.model_type == "image":
            assert model.pricing.image_output_usd_per_image is not None
            assert model.pricing.pricing_unit == "per_image"
        else:
            assert model.pricing.prompt_usd_per_1m and model.pricing.completion_usd_per_1m
    sketch = next(m for m in models if m.id == "local/sketch")
    assert sketch.is_free and sketch.pricing is not None
    assert sketch.pricing.image_output_usd_per_image == "0"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "image"}, set(IMAGE_MODELS)),
        ({"type": "text"}, {"openai/gpt-4o-mini"}),
        ({"free": True}, {"local/sketch"}),
        ({"free": False}, {m["id"] for m in MODELS} - {"local/sketch"}),
        ({"provider": "vertex"}, {"vertex/imagen-3"}),
        ({"provider": "openai", "type": "image"}, {"openai/gpt-image-1", "openai/dall-e-3"}),
        ({"type": "video"}, set()),
    ],
)
def test_the_sdk_filters_the_list(
    sdk: MeshAPI, filters: dict[str, Any], expected: set[str]
) -> None:
    assert {m.id for m in sdk.models.list(**filters)} == expected


def test_the_sdk_reads_free_and_paid_models(sdk: MeshAPI) -> None:
    assert [m.id for m in sdk.models.free()] == ["local/sketch"]
    paid = sdk.models.paid()
    assert paid and not any(m.is_free for m in paid)


@pytest.mark.parametrize("model_id", [m["id"] for m in MODELS])
def test_the_sdk_gets_each_model_by_its_id(sdk: MeshAPI, model_id: str) -> None:
    model = sdk.models.get(model_id)
    assert model == ModelInfo.model_validate(next(m for m in MODELS if m["id"] == model_id))


FLAGS = [name for name in ModelInfo.model_fields if name.startswith("supports_image_")]


def test_every_image_model_publishes_each_capability_flag_the_sdk_reads(sdk: MeshAPI) -> None:
    assert {"supports_image_edit", "supports_image_inpaint", "supports_image_reference"} <= set(
        FLAGS
    )
    for model in sdk.models.list(type="image"):
        assert all(isinstance(getattr(model, flag), bool) for flag in FLAGS), model.id
    sketch, dalle = sdk.models.get("local/sketch"), sdk.models.get("openai/dall-e-3")
    assert all(getattr(sketch, flag) for flag in FLAGS)
    assert not any(getattr(dalle, flag) for flag in FLAGS)


def test_the_sdk_searches_the_catalogue(sdk: MeshAPI) -> None:
    everything = sdk.models.search()
    assert isinstance(everything, ModelsPage)
    assert [m.id for m in everything.items] == [m["id"] for m in MODELS]
    assert everything.total == len(MODELS) and everything.offset == 0
    assert everything.brands == ["Google", "Local", "OpenAI"]

    page = sdk.models.search(
        ModelSearchParams(
            q="OPENAI", output_modality=["image"], sort="name", order="desc", limit=1, offset=1
        )
    )
    assert (page.total, page.limit, page.offset) == (2, 1, 1)
    assert [m.id for m in page.items] == ["openai/dall-e-3"]  # GPT Image 1, then DALL·E 3
    assert page.items[0].supports_image_edit is False and page.brands == ["OpenAI"]

    free = sdk.models.search(ModelSearchParams(free=True, brand=["local"]))
    assert [m.id for m in free.items] == ["local/sketch"] and free.items[0].supports_image_inpaint
    assert sdk.models.search(ModelSearchParams(q="no such model")).items == []
    assert sdk.models.search(ModelSearchParams(discounted=True)).total == 0


def test_the_async_sdk_searches_the_catalogue(server: LocalServer) -> None:
    async def search() -> ModelsPage:
        async with async_sdk(server) as client:
            return await client.models.search(ModelSearchParams(input_modality=["image"]))

    page = run(search())
    takes_images = {"openai/gpt-image-1", "local/sketch", "openai/gpt-4o-mini"}
    assert {m.id for m in page.items} == takes_images


@pytest.mark.parametrize(
    ("query", "field"),
    [({"sort": "price"}, "sort"), ({"limit": "0"}, "limit"), ({"free": "maybe"}, "free")],
)
def test_a_bad_search_is_the_sdks_422_naming_the_field(
    server: LocalServer, query: dict[str, str], field: str
) -> None:
    answer = httpx.get(f"{server.url}/v1/models/search", params=query)
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["error"]["details"]] == [["query", field]]


def test_an_unknown_model_is_the_sdks_404(sdk: MeshAPI) -> None:
    with pytest.raises(MeshAPIError) as caught:
        sdk.models.get("acme/painter-9")
    error = caught.value
    assert (error.status, error.error_code) == (404, "model_not_found")
    assert "acme/painter-9" in str(error)
    assert error.request_id.startswith("req_")


# -- plain generations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "response_format", "form"),
    [
        ("openai/gpt-image-1", None, "data"),
        ("openai/gpt-image-1", "b64_json", "b64"),
        ("local/sketch", "url", "data"),
        ("openai/dall-e-3", None, "remote"),
        ("vertex/imagen-3", "url", "b64"),
    ],
)
def test_each_delivery_form_reads_as_image_items(
    sdk: MeshAPI, server: LocalServer, model: str, response_format: str | None, form: str
) -> None:
    answer = sdk.images.generate(params(model=model, response_format=response_format, n=2))
    assert isinstance(answer, ImageGenerationResponse)
    assert len(answer.data) == 2
    for item in answer.data:
        if form == "remote":
            assert item.url is not None and item.url.startswith(server.url + "/files/")
            with pytest.raises(ValueError, match="remote URL"):
                item.image_bytes()
            data = httpx.get(item.url).content
        else:
            assert (item.b64_json is not None) == (form == "b64")
            assert (item.url or "").startswith("data:") == (form == "data")
            data = item.image_bytes()
        assert open_image(data).size == (64, 64)
    if model == "vertex/imagen-3":
        assert (answer.usage, answer.size, answer.output_format) == (None, None, None)
    else:
        assert answer.usage is not None and answer.usage.total_tokens > 0
        assert (answer.size, answer.output_format) == ("64x64", "png")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_each_output_format_decodes(sdk: MeshAPI, fmt: str) -> None:
    answer = sdk.images.generate(params(output_format=fmt, output_compression=80))
    assert answer.output_format == fmt
    assert open_image(answer.data[0].image_bytes()).format == fmt.upper()


def test_an_input_image_goes_through_the_sdk(sdk: MeshAPI) -> None:
    plain = sdk.images.generate(params(seed=5)).data[0].image_bytes()
    answer = sdk.images.generate(params(seed=5, image=red_data_url()))
    over_red = open_image(answer.data[0].image_bytes()).convert("RGB")
    assert over_red.tobytes() != open_image(plain).convert("RGB").tobytes()
    assert over_red.getpixel((1, 1)) == (255, 0, 0)


# -- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("partial_images", [0, 1, 2, 3])
def test_every_stream_chunk_validates(
    sdk: MeshAPI, server: LocalServer, partial_images: int
) -> None:
    server.latency = 0.2  # room for pings between the previews
    chunks = list(sdk.images.stream(params(partial_images=partial_images)))
    assert all(isinstance(chunk, ImageGenerationChunk) for chunk in chunks)
    statuses = [chunk.status for chunk in chunks]
    assert statuses == ["processing", *["partial_image"] * partial_images, "completed"]
    assert len({(chunk.id, chunk.created, chunk.model) for chunk in chunks}) == 1
    *previews, final = chunks[1:]
    for preview in previews:
        [item] = preview.data
        assert open_image(item.image_bytes()).format == "PNG"
    [image] = final.data
    assert open_image(image.image_bytes()).size == (64, 64)


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_each_model_streams_its_result(sdk: MeshAPI, model: str) -> None:
    final = list(sdk.images.stream(params(model=model, response_format="b64_json")))[-1]
    assert final.status == "completed" and final.model == model
    assert final.data[0].b64_json


# -- the async client -------------------------------------------------------------------


def test_the_async_client_reads_models_generations_and_streams(server: LocalServer) -> None:
    async def session() -> tuple[Any, ...]:
        async with async_sdk(server) as client:
            models = await client.models.list(type="image")
            one = await client.models.get("openai/gpt-image-1")
            answer = await client.images.generate(params(output_format="webp"))
            chunks = [c async for c in client.images.stream(params(partial_images=2))]
            return models, one, answer, chunks

    models, one, answer, chunks = run(session())
    assert {m.id for m in models} == set(IMAGE_MODELS)
    assert one.supports_image_edit
    assert open_image(answer.data[0].image_bytes()).format == "WEBP"
    assert [c.status for c in chunks] == [
        "processing",
        "partial_image",
        "partial_image",
        "completed",
    ]
    assert open_image(chunks[-1].data[0].image_bytes()).size == (64, 64)


# -- errors ------------------------------------------------------------------------------

STATUS_CODES = [
    (401, "unauthorized"),
    (402, "spend_limit_exceeded"),
    (403, "forbidden"),
    (404, "model_not_found"),
    (413, "request_too_large"),
    (422, "validation_error"),
    (429, "rate_limit_exceeded"),
    (500, "internal_error"),
    (502, "unavailable"),
    (503, "unavailable"),
    (504, "gateway_timeout"),
]


def check_error(
    error: MeshAPIError, server: LocalServer, path: str, status: int, code: str
) -> None:
    assert (error.status, error.error_code) == (status, code)
    assert str(error)
    recorded = sent(server, path)
    assert "x-request-id" not in recorded.headers  # the SDK sends none: ours is generated
    assert error.request_id.startswith("req_")
    if status in (429, 503):
        assert error.retry_after_seconds == 1
    else:
        assert error.retry_after_seconds is None


@pytest.mark.parametrize(("status", "code"), STATUS_CODES)
def test_status_faults_are_the_sdks_errors(
    sdk: MeshAPI, server: LocalServer, status: int, code: str
) -> None:
    server.fault = f"status:{status}"
    with pytest.raises(MeshAPIError) as generating:
        sdk.images.generate(params())
    check_error(generating.value, server, GENERATIONS, status, code)
    with pytest.raises(MeshAPIError) as streaming:
        list(sdk.images.stream(params()))
    check_error(streaming.value, server, GENERATIONS, status, code)
    with pytest.raises(MeshAPIError) as listing:
        sdk.models.list()
    check_error(listing.value, server, "/v1/models", status, code)


@pytest.mark.parametrize(("status", "code"), STATUS_CODES)
def test_status_faults_are_the_async_sdks_errors(
    server: LocalServer, status: int, code: str
) -> None:
    server.fault = f"status:{status}"

    async def attempt() -> MeshAPIError:
        async with async_sdk(server) as client:
            with pytest.raises(MeshAPIError) as caught:
                await client.images.generate(params())
            return caught.value

    check_error(run(attempt()), server, GENERATIONS, status, code)


def test_a_scheduled_429_is_the_sdks_rate_limit_error_once(
    sdk: MeshAPI, server: LocalServer
) -> None:
    server.rate_limit_on(2, retry_after="2")
    assert sdk.images.generate(params()).data
    with pytest.raises(MeshAPIError) as caught:
        list(sdk.images.stream(params()))
    error = caught.value
    assert (error.status, error.error_code, error.retry_after_seconds) == (
        429,
        "rate_limit_exceeded",
        2,
    )
    assert sdk.images.generate(params()).data


def test_the_sdks_retry_waits_out_a_scheduled_429(server: LocalServer) -> None:
    server.rate_limit_on(1, retry_after="1")
    with MeshAPI(base_url=server.url, token=TOKEN, timeout=10, max_retries=1) as client:
        assert client.images.generate(params()).data
    limited, retried = generations(server)[-2:]
    assert (limited.status, retried.status) == (429, 200)
    # The SDK waits Retry-After with +-20% jitter; the log's times show the pause.
    assert limited.answered_at is not None
    assert retried.at - limited.answered_at >= 0.75


def test_a_proxy_page_is_the_sdks_parse_error(sdk: MeshAPI, server: LocalServer) -> None:
    server.fault = "html:502"
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.generate(params())
    error = caught.value
    assert (error.status, error.error_code) == (502, "parse_error")
    assert "502 Bad Gateway" in str(error)
    assert error.request_id.startswith("req_")  # from the x-request-id header


def test_a_validation_error_carries_every_detail(sdk: MeshAPI) -> None:
    # The SDK checks some bounds itself; these it leaves to the server.
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.generate(params(prompt="", n=11, size="huge", quality="ultra"))
    error = caught.value
    assert (error.status, error.error_code) == (422, "validation_error")
    locs = [tuple(detail["loc"]) for detail in error.details]
    assert locs == [("body", "prompt"), ("body", "n"), ("body", "size"), ("body", "quality")]


def test_a_remote_input_image_is_refused(sdk: MeshAPI) -> None:
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.generate(params(image=["https://example.com/fox.png"]))
    assert (caught.value.status, caught.value.details[0]["loc"]) == (422, ["body", "image", 0])


def test_an_unknown_model_generation_is_the_sdks_404(sdk: MeshAPI) -> None:
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.generate(params(model="acme/painter-9"))
    assert (caught.value.status, caught.value.error_code) == (404, "model_not_found")


def test_an_oversized_body_is_the_sdks_413_sync_and_async() -> None:
    big = params(prompt="x" * 8_000_000)
    with LocalServer(max_body_bytes=64 * 1024) as small:
        with (
            MeshAPI(base_url=small.url, token=TOKEN, max_retries=0) as client,
            pytest.raises(MeshAPIError) as synced,
        ):
            client.images.generate(big)

        async def attempt() -> MeshAPIError:
            async with async_sdk(small) as client:
                with pytest.raises(MeshAPIError) as caught:
                    await client.images.generate(big)
                return caught.value

        for error in (synced.value, run(attempt())):
            assert (error.status, error.error_code) == (413, "request_too_large")
            assert error.request_id.startswith("req_")


# -- stream faults: what the SDK makes of them ------------------------------------------


def test_an_error_frame_mid_stream_is_the_sdks_error(sdk: MeshAPI, server: LocalServer) -> None:
    server.fault = "error_frame"
    seen: list[str | None] = []
    with pytest.raises(MeshAPIError) as caught:
        for chunk in sdk.images.stream(params()):
            seen.append(chunk.status)
    assert seen == ["processing"]
    error = caught.value
    assert error.error_code == "provider_job_failed"
    assert "failed to generate" in str(error)
    # The SDK gives a mid-stream error no status and drops the frame's request_id.
    assert (error.status, error.request_id) == (0, "")


def test_a_dropped_stream_is_the_sdks_stream_interrupted(sdk: MeshAPI, server: LocalServer) -> None:
    server.fault = "drop"
    with pytest.raises(MeshAPIError) as caught:
        list(sdk.images.stream(params()))
    assert caught.value.error_code == "stream_interrupted"


@pytest.mark.parametrize("fault", ["cut", "malformed"])
def test_a_stream_without_a_result_ends_with_no_completed_chunk(
    sdk: MeshAPI, server: LocalServer, fault: str
) -> None:
    # The SDK skips a frame it cannot parse and stops quietly at the end of the body.
    server.fault = fault
    assert [chunk.status for chunk in sdk.images.stream(params())] == ["processing"]


@pytest.mark.parametrize("fault", [None, "error_frame", "not_image", "fewer"])
def test_every_raw_frame_even_an_error_is_an_image_chunk(server: LocalServer, fault: str) -> None:
    server.fault = fault
    body = params(partial_images=2).model_dump(exclude_none=True) | {"stream": True}
    with httpx.stream("POST", server.url + "/v1/images/generations", json=body) as response:
        text = response.read().decode()
    frames = [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data:")]
    assert frames[-1] == "[DONE]"
    chunks = [ImageGenerationChunk.model_validate_json(frame) for frame in frames[:-1]]
    assert chunks[-1].status == ("failed" if fault == "error_frame" else "completed")


# -- edits ------------------------------------------------------------------------------


def edit_params(**fields: Any) -> ImageEditParams:
    return ImageEditParams(
        **{"model": "openai/gpt-image-1", "prompt": PROMPT, "image": red_data_url(), **fields}
    )


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({}, (32, 32)),
        ({"image": ImageRef(url=red_data_url()), "response_format": "b64_json"}, (32, 32)),
        ({"operation": "upscale", "upscale_factor": "2x"}, (64, 64)),
        ({"operation": "remove_background"}, (32, 32)),
        ({"operation": "outpaint", "expand_factor": 2.0}, (64, 64)),
        ({"operation": "mix", "reference_images": [red_data_url()]}, (32, 32)),
        ({"operation": "reframe", "aspect_ratio": "2:1"}, (32, 16)),
        ({"size": "64x48"}, (64, 48)),
    ],
)
def test_the_sdk_reads_each_edit(
    sdk: MeshAPI, fields: dict[str, Any], size: tuple[int, int]
) -> None:
    answer = sdk.images.edit(edit_params(**fields))
    assert isinstance(answer, ImageGenerationResponse) and len(answer.data) == 1
    assert open_image(answer.data[0].image_bytes()).size == size
    assert answer.size == f"{size[0]}x{size[1]}" and answer.usage is not None


def test_the_async_sdk_reads_an_edit(server: LocalServer) -> None:
    async def session() -> ImageGenerationResponse:
        async with async_sdk(server) as client:
            return await client.images.edit(edit_params(n=2))

    answer = run(session())
    assert [open_image(item.image_bytes()).size for item in answer.data] == [(32, 32)] * 2


@pytest.mark.parametrize(("status", "code"), STATUS_CODES)
def test_status_faults_on_edits_are_the_sdks_errors(
    sdk: MeshAPI, server: LocalServer, status: int, code: str
) -> None:
    server.fault = f"status:{status}"
    with pytest.raises(MeshAPIError) as editing:
        sdk.images.edit(edit_params())
    check_error(editing.value, server, EDITS, status, code)

    async def attempt() -> MeshAPIError:
        async with async_sdk(server) as client:
            with pytest.raises(MeshAPIError) as caught:
                await client.images.edit(edit_params())
            return caught.value

    check_error(run(attempt()), server, EDITS, status, code)


def test_an_edit_validation_error_carries_every_detail(sdk: MeshAPI) -> None:
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.edit(edit_params(image="https://example.com/fox.png", mask=red_data_url(), n=11))
    error = caught.value
    assert (error.status, error.error_code) == (422, "validation_error")
    locs = {tuple(detail["loc"]) for detail in error.details}
    assert locs == {("body", "image"), ("body", "mask"), ("body", "n")}


def test_an_edit_with_a_model_that_cannot_edit_is_the_sdks_422(sdk: MeshAPI) -> None:
    with pytest.raises(MeshAPIError) as caught:
        sdk.images.edit(edit_params(model="openai/dall-e-3"))
    assert (caught.value.status, caught.value.details[0]["loc"]) == (422, ["body", "model"])
    with pytest.raises(MeshAPIError) as unknown:
        sdk.images.edit(edit_params(model="acme/painter-9"))
    assert (unknown.value.status, unknown.value.error_code) == (404, "model_not_found")


# -- the openai SDK: its images.edit sends multipart/form-data -------------------------------


def png_file(color: str, mode: str = "RGB") -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new(mode, (32, 32), color).save(buffer, "PNG")
    return f"{color}.png", buffer.getvalue(), "image/png"


def test_the_openai_sdks_multipart_edit_returns_an_image(running: LocalServer) -> None:
    with openai.OpenAI(base_url=f"{running.url}/v1", api_key=TOKEN, max_retries=0) as client:
        answer = client.images.edit(
            image=png_file("red"),
            prompt=PROMPT,
            model="local/sketch",
            n=2,
            size="64x48",
            response_format="b64_json",
        )
        assert [
            open_image(base64.b64decode(item.b64_json or "")).size for item in answer.data or []
        ] == [(64, 48)] * 2
        mixed = client.images.edit(  # several images: image[] parts, the first one edited
            image=[png_file("red"), png_file("blue")],
            mask=png_file("black", "RGBA"),
            prompt=PROMPT,
            extra_body={"operation": "mix"},
        )
        (item,) = mixed.data or []
        assert item.url is not None and open_image(base64.b64decode(item.url.partition(",")[2]))
        with pytest.raises(openai.UnprocessableEntityError, match="does not support image edits"):
            client.images.edit(image=png_file("red"), prompt=PROMPT, model="openai/dall-e-3")


def test_the_async_openai_sdks_edit_returns_an_image(server: LocalServer) -> None:
    async def session() -> Any:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=TOKEN) as client:
            return await client.images.edit(image=png_file("red"), prompt=PROMPT)

    (item,) = run(session()).data
    assert open_image(base64.b64decode(item.url.partition(",")[2])).size == (32, 32)


# -- batches: the meshapi SDK's inline requests, the openai SDK's files and batches ----------

WAIT = 30.0
FOX_BODY = {"prompt": PROMPT, "size": "64x64", "response_format": "b64_json"}


@pytest.fixture
def batch_server() -> Iterator[LocalServer]:
    """A server of the test's own: its batches start empty."""
    with LocalServer(ping_interval=0.05) as local:
        yield local


def batch_items(*custom_ids: str, **body: Any) -> list[BatchRequestItem]:
    return [
        BatchRequestItem(custom_id=custom_id, url=GENERATIONS, body={**FOX_BODY, **body})
        for custom_id in custom_ids
    ]


def finished_batch(server: LocalServer, batch_id: str) -> dict[str, Any]:
    batch = server.wait_for_batch(batch_id, WAIT)
    assert batch is not None, server.batches
    return batch


def output_lines(server: LocalServer, file_id: str | None) -> list[dict[str, Any]]:
    content = httpx.get(f"{server.url}/v1/files/{file_id}/content", timeout=10).text
    return [json.loads(line) for line in content.splitlines()]


def test_the_sdk_makes_gets_and_lists_an_image_batch(batch_server: LocalServer) -> None:
    with MeshAPI(base_url=batch_server.url, token=TOKEN, timeout=10, max_retries=0) as sdk:
        made = sdk.batches.create(
            CreateBatchParams(requests=batch_items("fox", "owl"), metadata={"run": "sdk"})
        )
        assert isinstance(made, BatchObject) and made.id.startswith("batch_")
        assert (made.status, made.endpoint, made.metadata) == (
            "validating",
            GENERATIONS,
            {"run": "sdk"},
        )
        finished_batch(batch_server, made.id)
        batch = sdk.batches.get(made.id)
        assert batch.status == "completed" and batch.completed_at is not None
        assert batch.request_counts == {"total": 2, "completed": 2, "failed": 0}
        lines = output_lines(batch_server, batch.output_file_id)
        assert sorted(line["custom_id"] for line in lines) == ["fox", "owl"]
        item = ImageGenerationResponse.model_validate(lines[0]["response"]["body"]).data[0]
        assert open_image(base64.b64decode(item.b64_json or "")).size == (64, 64)

        other = sdk.batches.create(CreateBatchParams(requests=batch_items("cat")))
        page = sdk.batches.list(limit=1)
        assert isinstance(page, BatchListResponse) and page.has_more
        assert [b.id for b in page.data] == [other.id] == [page.first_id]
        rest = sdk.batches.list(after=page.last_id, limit=1)
        assert [b.id for b in rest.data] == [made.id] and not rest.has_more


def test_the_sdk_cancels_a_batch(batch_server: LocalServer) -> None:
    batch_server.batch_latency = 60
    with MeshAPI(base_url=batch_server.url, token=TOKEN, timeout=10, max_retries=0) as sdk:
        made = sdk.batches.create(CreateBatchParams(requests=batch_items("slow")))
        assert batch_server.wait_for_batch(made.id, WAIT, "in_progress") is not None
        assert sdk.batches.cancel(made.id).status == "cancelling"
        finished_batch(batch_server, made.id)
        assert sdk.batches.get(made.id).status == "cancelled"


def test_the_sdk_reads_a_refused_batch_and_an_unknown_one_as_its_errors(
    batch_server: LocalServer,
) -> None:
    batch_server.batch_endpoints = ["/v1/chat/completions"]
    with MeshAPI(base_url=batch_server.url, token=TOKEN, timeout=10, max_retries=0) as sdk:
        with pytest.raises(MeshAPIError) as refused:
            sdk.batches.create(CreateBatchParams(requests=batch_items("fox")))
        assert (refused.value.status, refused.value.error_code) == (400, "invalid_request")
        assert "this server batches: /v1/chat/completions" in str(refused.value)
        with pytest.raises(MeshAPIError) as unknown:
            sdk.batches.get("batch_nope")
        assert (unknown.value.status, unknown.value.error_code) == (404, "not_found")


def test_the_async_sdk_makes_lists_and_cancels_batches(batch_server: LocalServer) -> None:
    async def session() -> tuple[BatchObject, BatchListResponse, BatchObject]:
        async with async_sdk(batch_server) as sdk:
            made = await sdk.batches.create(CreateBatchParams(requests=batch_items("fox")))
            await asyncio.to_thread(finished_batch, batch_server, made.id)
            batch_server.batch_latency = 60
            held = await sdk.batches.create(CreateBatchParams(requests=batch_items("slow")))
            listed = await sdk.batches.list(limit=5)
            return await sdk.batches.get(made.id), listed, await sdk.batches.cancel(held.id)

    done, listed, cancelling = run(session())
    assert done.status == "completed" and done.output_file_id is not None
    assert [b.id for b in listed.data] == [cancelling.id, done.id] and not listed.has_more
    assert cancelling.status in ("cancelling", "cancelled")


def test_the_openai_sdk_uploads_runs_and_reads_a_batch(batch_server: LocalServer) -> None:
    data = b"".join(
        json.dumps(item.model_dump()).encode() + b"\n"
        for item in batch_items("fox", "tiny") + batch_items("bad", size="7x7")
    )
    with openai.OpenAI(base_url=f"{batch_server.url}/v1", api_key=TOKEN, max_retries=0) as client:
        file = client.files.create(file=("foxes.jsonl", data), purpose="batch")
        assert (file.bytes, file.filename, file.purpose) == (len(data), "foxes.jsonl", "batch")
        assert client.files.retrieve(file.id) == file
        assert client.files.content(file.id).content == data
        made = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        assert made.status == "validating" and made.input_file_id == file.id
        finished_batch(batch_server, made.id)
        batch = client.batches.retrieve(made.id)
        assert batch.status == "completed" and batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        assert batch.output_file_id and batch.error_file_id
        output = client.files.content(batch.output_file_id).text.splitlines()
        assert sorted(json.loads(line)["custom_id"] for line in output) == ["fox", "tiny"]
        (error,) = client.files.content(batch.error_file_id).text.splitlines()
        assert json.loads(error)["response"]["status_code"] == 422

        batch_server.batch_latency = 60
        held = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        assert batch_server.wait_for_batch(held.id, WAIT, "in_progress") is not None
        assert client.batches.cancel(held.id).status == "cancelling"
        finished_batch(batch_server, held.id)
        third = client.batches.create(
            input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
        )
        client.batches.cancel(third.id)  # queued behind nothing: it may be at work already
        finished_batch(batch_server, third.id)
        every = [b.id for b in client.batches.list(limit=1)]  # one page a request
        assert every == [third.id, held.id, made.id]
        listed = [r for r in batch_server.requests if r.path.startswith("/v1/batches?")]
        assert len(listed) == 3

        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")
        batch_server.batch_endpoints = ["/v1/chat/completions"]
        with pytest.raises(openai.BadRequestError, match="this server batches"):
            client.batches.create(
                input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
            )


def test_the_async_openai_sdk_uploads_and_retrieves_a_batch(batch_server: LocalServer) -> None:
    data = json.dumps(batch_items("fox")[0].model_dump()).encode() + b"\n"

    async def session() -> Any:
        async with openai.AsyncOpenAI(base_url=f"{batch_server.url}/v1", api_key=TOKEN) as client:
            file = await client.files.create(file=("fox.jsonl", data), purpose="batch")
            made = await client.batches.create(
                input_file_id=file.id, endpoint="/v1/images/generations", completion_window="24h"
            )
            await asyncio.to_thread(finished_batch, batch_server, made.id)
            batch = await client.batches.retrieve(made.id)
            assert batch.output_file_id is not None
            return await client.files.content(batch.output_file_id)

    (line,) = run(session()).text.splitlines()
    assert json.loads(line)["custom_id"] == "fox"
