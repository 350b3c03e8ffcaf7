"""The client against the embedded backend over real loopback HTTP: every delivery form,
streaming and not, retries, faults, and where the key may go."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time
from typing import Any

import pytest

from mesh_magics.client import MeshClient
from mesh_magics.envelopes import parse_retry_after
from mesh_magics.errors import (
    APIError,
    ConfigError,
    ImageDecodeError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    StreamError,
    StreamFailedError,
    TransportError,
    UnprocessableRequestError,
)
from mesh_magics.events import Completed, PartialImage, Retrying, StatusChanged, StreamEvent
from mesh_magics.local import LocalServer
from mesh_magics.request import ImageRequest
from mesh_magics.settings import ClientSettings, Secret

from .conftest import FAKE_KEY
from .servers import ScriptedServer, b64, png_bytes, send_sse, sse_frame


def settings_for(server: LocalServer, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {
        "base_url": server.url,
        "api_key": Secret(FAKE_KEY),
        "max_retries": 2,
        "max_retry_wait": 2.0,
        "backoff_base": 0.05,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return ClientSettings(**values)


def generate(
    server: LocalServer, stream: bool = True, settings: ClientSettings | None = None, **fields: Any
) -> list[StreamEvent]:
    body = {
        "prompt": "a fox",
        "model": "openai/gpt-image-1",
        "size": "64x64",
        "n": 1,
        "stream": stream,
    }
    body.update(fields)

    async def collect() -> list[StreamEvent]:
        async with MeshClient(settings or settings_for(server)) as client:
            return [event async for event in client.generate(ImageRequest(body))]

    return asyncio.run(collect())


def completed(events: list[StreamEvent]) -> Completed:
    assert isinstance(events[-1], Completed)
    return events[-1]


def generation_requests(server: LocalServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/images/generations")]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("model", "response_format"),
    [
        ("openai/gpt-image-1", None),  # a data: URL
        ("openai/gpt-image-1", "b64_json"),
        ("openai/dall-e-3", "url"),  # a remote URL on another origin
        ("vertex/imagen-3", "url"),  # always b64_json
    ],
)
def test_every_delivery_form_gives_checked_images(
    server: LocalServer, stream: bool, model: str, response_format: str | None
) -> None:
    fields: dict[str, Any] = {"model": model, "n": 2, "size": "96x64"}
    if response_format:
        fields["response_format"] = response_format
    done = completed(generate(server, stream=stream, **fields))
    assert [(i.format, i.width, i.height) for i in done.images] == [("png", 96, 64)] * 2
    assert done.request_id


def test_stream_reports_status_and_partial_previews(server: LocalServer) -> None:
    server.latency = 0.3
    events = generate(server, partial_images=2)
    assert isinstance(events[0], StatusChanged) and events[0].status == "processing"
    previews = [e for e in events if isinstance(e, PartialImage)]
    assert [p.index for p in previews] == [0, 1]
    assert all(p.data.startswith(b"\x89PNG") for p in previews)
    assert isinstance(events[-1], Completed)


def test_request_headers_auth_and_request_id(server: LocalServer) -> None:
    generate(server)
    (sent,) = generation_requests(server)
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["x-request-id"].startswith("mm_")
    assert sent.body["stream"] is True


def test_authorization_is_never_sent_to_the_image_host(server: LocalServer) -> None:
    completed(generate(server, model="openai/dall-e-3", response_format="url"))
    fetches = [r for r in server.requests if r.path.startswith("/files/")]
    assert fetches, "the remote URL was not fetched"
    assert all("authorization" not in r.headers for r in fetches)


def test_base_url_with_v1_is_accepted(server: LocalServer) -> None:
    assert completed(generate(server, settings=settings_for(server, base_url=server.url + "/v1/")))


def test_transparent_webp_and_jpeg_formats_come_from_the_bytes(server: LocalServer) -> None:
    webp = completed(generate(server, output_format="webp", background="transparent"))
    jpeg = completed(generate(server, output_format="jpeg"))
    assert webp.images[0].format == "webp" and jpeg.images[0].format == "jpeg"


def test_retry_on_429_honours_retry_after_then_succeeds(server: LocalServer) -> None:
    events = generate(server, mesh_local={"fault": "status:429", "times": 1, "retry_after": "1"})
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.delay == pytest.approx(1.0)
    assert isinstance(events[-1], Completed)
    ids = {r.headers["x-request-id"] for r in generation_requests(server)}
    assert len(generation_requests(server)) == 2 and len(ids) == 1


def test_429_beyond_the_retry_budget_is_a_rate_limit_error(server: LocalServer) -> None:
    with pytest.raises(RateLimitError) as caught:
        generate(server, mesh_local={"fault": "status:429", "retry_after": "0"})
    assert caught.value.status == 429 and caught.value.code == "rate_limit_exceeded"
    assert caught.value.retry_after == 0
    assert len(generation_requests(server)) == 3  # the first try and two retries


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(server: LocalServer, status: int) -> None:
    events = generate(
        server, mesh_local={"fault": f"status:{status}", "times": 2, "retry_after": "0"}
    )
    assert sum(isinstance(e, Retrying) for e in events) == 2
    assert isinstance(events[-1], Completed)


def test_500_is_never_retried(server: LocalServer) -> None:
    with pytest.raises(InternalServerError) as caught:
        generate(server, mesh_local={"fault": "status:500", "times": 1})
    assert caught.value.status == 500 and caught.value.request_id
    assert len(generation_requests(server)) == 1


def test_api_errors_carry_status_code_message_and_request_id(server: LocalServer) -> None:
    with pytest.raises(NotFoundError) as caught:
        generate(server, model="nope/missing")
    error = caught.value
    assert (error.status, error.code) == (404, "model_not_found")
    assert "nope/missing" in error.message
    assert error.request_id and error.request_id in str(error)


def test_validation_errors_list_the_details(server: LocalServer) -> None:
    with pytest.raises(UnprocessableRequestError) as caught:
        generate(server, n=11, quality="ultra")
    assert caught.value.status == 422 and len(caught.value.details) == 2
    assert "n" in str(caught.value) and "quality" in str(caught.value)


def test_html_error_body_from_a_proxy_is_summarised(server: LocalServer) -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        generate(server, mesh_local={"fault": "html:503", "retry_after": "0"})
    assert "<" not in str(caught.value) and caught.value.status == 503


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("error_frame", StreamFailedError, "provider failed"),
        ("drop", StreamError, "dropped"),
        ("cut", StreamError, "no [DONE]"),
        ("malformed", StreamError, "malformed frame"),
    ],
)
def test_broken_streams_are_errors_not_results(
    server: LocalServer, fault: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        generate(server, mesh_local={"fault": fault})
    assert words in str(caught.value)
    assert len(generation_requests(server)) == 1  # a started stream is never retried


def test_a_stalled_stream_hits_the_read_timeout(server: LocalServer) -> None:
    with pytest.raises(TransportError) as caught:
        generate(
            server, settings=settings_for(server, read_timeout=0.5), mesh_local={"fault": "stall"}
        )
    assert "read timeout" in str(caught.value)


def test_slow_pings_within_the_read_timeout_keep_the_stream_alive(server: LocalServer) -> None:
    events = generate(
        server,
        settings=settings_for(server, read_timeout=1.0),
        mesh_local={"latency": 2.0, "ping_interval": 0.4},
    )
    assert isinstance(events[-1], Completed)


@pytest.mark.parametrize(
    ("fault", "words"),
    [("not_image", "is not an image"), ("truncated_png", "PNG"), ("bomb", "bomb")],
)
def test_bad_image_bytes_are_clear_errors(server: LocalServer, fault: str, words: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        generate(server, mesh_local={"fault": fault})
    assert words in str(caught.value)


def test_connection_refused_is_retried_then_reported() -> None:
    server = LocalServer().start()
    url = server.url
    server.stop()
    settings = ClientSettings(base_url=url, max_retries=1, backoff_base=0.01)

    async def attempt() -> None:
        async with MeshClient(settings) as client:
            async for _ in client.generate(ImageRequest({"prompt": "x", "stream": True})):
                pass

    with pytest.raises(TransportError) as caught:
        asyncio.run(attempt())
    assert "could not connect" in str(caught.value)


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        MeshClient(ClientSettings(base_url="http://api.example.com"))
    assert "https" in str(caught.value)
    assert MeshClient(ClientSettings(base_url="http://api.example.com", allow_insecure_http=True))


def test_list_models_gives_only_image_models(server: LocalServer) -> None:
    async def models() -> list[dict[str, Any]]:
        async with MeshClient(settings_for(server)) as client:
            return await client.list_models()

    ids = [m["id"] for m in asyncio.run(models())]
    assert "openai/gpt-image-1" in ids and "openai/gpt-4o-mini" not in ids


def test_secret_never_shows_the_key() -> None:
    secret = Secret(FAKE_KEY)
    settings = ClientSettings(base_url="https://api.meshapi.ai", api_key=secret)
    assert FAKE_KEY not in repr(secret) + str(secret) + repr(settings)
    assert FAKE_KEY not in repr(MeshClient(settings))


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:10 GMT", now=1795608000.0) == pytest.approx(
        10.0
    )
    assert parse_retry_after("soon") is None


def test_api_error_is_the_base_of_http_errors() -> None:
    assert issubclass(RateLimitError, APIError) and issubclass(StreamFailedError, APIError)


def test_retry_after_as_an_http_date_is_honoured(server: LocalServer) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    events = generate(server, mesh_local={"fault": "status:429", "times": 1, "retry_after": when})
    retry = next(e for e in events if isinstance(e, Retrying))
    assert 0.5 <= retry.delay <= 2.0
    assert isinstance(events[-1], Completed)


def test_a_long_retry_after_is_capped_by_max_retry_wait(server: LocalServer) -> None:
    settings = settings_for(server, max_retry_wait=0.3)
    events = generate(
        server,
        settings=settings,
        mesh_local={"fault": "status:503", "times": 1, "retry_after": "120"},
    )
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.delay == pytest.approx(0.3)
    assert isinstance(events[-1], Completed)


def test_a_plain_request_may_wait_longer_than_the_stream_read_timeout(server: LocalServer) -> None:
    events = generate(
        server,
        stream=False,
        settings=settings_for(server, read_timeout=0.3),
        mesh_local={"latency": 1.0},
    )
    assert isinstance(events[-1], Completed)


def test_a_gzip_compressed_stream_is_decoded() -> None:
    body = sse_frame({"object": "image.chunk", "data": [{"b64_json": b64(png_bytes(6, 4))}]})
    packed = gzip.compress(body + b"data: [DONE]\n\n")
    route = send_sse(packed[:20], packed[20:], headers={"content-encoding": "gzip"})
    with ScriptedServer({"/v1/images/generations": route}) as api:

        async def collect() -> list[StreamEvent]:
            async with MeshClient(ClientSettings(base_url=api.url)) as client:
                request = ImageRequest({"prompt": "x", "stream": True})
                return [event async for event in client.generate(request)]

        events = asyncio.run(collect())
    assert (completed(events).images[0].width, completed(events).images[0].height) == (6, 4)
