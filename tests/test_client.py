"""The client against the embedded backend over real loopback HTTP: every delivery form,
streaming and not, retries, faults, and where the key may go."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import time
from typing import Any

import pytest

from mesh_magics.errors import (
    APIError,
    ConfigError,
    ImageDecodeError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    StreamError,
    StreamFailedError,
    TransportError,
    UnprocessableRequestError,
)
from mesh_magics.events import Completed, PartialImage, Retrying, StatusChanged, StreamEvent
from mesh_magics.http import client as client_module
from mesh_magics.http.client import MeshClient
from mesh_magics.http.envelopes import parse_retry_after
from mesh_magics.local import LocalServer
from mesh_magics.request import ImageRequest
from mesh_magics.settings import ClientSettings, Secret, client_settings

from .servers import (
    ScriptedServer,
    answer_unread,
    b64,
    hang_up,
    in_turn,
    lying_length,
    png_bytes,
    read_then_hang_up,
    reads_body,
    redirect,
    send_bytes,
    send_json,
    send_sse,
    sse_frame,
)
from .support import FAKE_KEY, GENERATIONS, events_until_failure, generations, settings_for


def generate(
    server: LocalServer | ScriptedServer,
    stream: bool = True,
    settings: ClientSettings | None = None,
    **fields: Any,
) -> list[StreamEvent]:
    events, error = events_until_failure(server, stream, settings, **fields)
    if error is not None:
        raise error
    return events


def completed(events: list[StreamEvent]) -> Completed:
    assert isinstance(events[-1], Completed)
    return events[-1]


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
    (sent,) = generations(server)
    assert sent.credential == "local token"  # our own backend is never sent the key
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
    events = generate(server, mesh_local={"fault": "status:429", "times": 1, "retry_after": "0.3"})
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.delay == pytest.approx(0.3)
    assert isinstance(events[-1], Completed)
    ids = {r.headers["x-request-id"] for r in generations(server)}
    assert len(generations(server)) == 2 and len(ids) == 1


def test_429_beyond_the_retry_budget_is_a_rate_limit_error(server: LocalServer) -> None:
    with pytest.raises(RateLimitError) as caught:
        generate(server, mesh_local={"fault": "status:429", "retry_after": "0"})
    assert caught.value.status == 429 and caught.value.code == "rate_limit_exceeded"
    assert caught.value.retry_after == 0
    assert len(generations(server)) == 3  # the first try and two retries


def test_a_503_with_retry_after_is_retried(server: LocalServer) -> None:
    events = generate(server, mesh_local={"fault": "status:503", "times": 2, "retry_after": "0"})
    assert sum(isinstance(e, Retrying) for e in events) == 2
    assert isinstance(events[-1], Completed)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_that_may_have_billed_are_not_retried(
    server: LocalServer, status: int
) -> None:
    with pytest.raises(ServiceUnavailableError):
        generate(server, mesh_local={"fault": f"status:{status}", "times": 1})
    assert len(generations(server)) == 1


def test_500_is_never_retried(server: LocalServer) -> None:
    with pytest.raises(InternalServerError) as caught:
        generate(server, mesh_local={"fault": "status:500", "times": 1})
    assert caught.value.status == 500 and caught.value.request_id
    assert len(generations(server)) == 1


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
    assert len(generations(server)) == 1  # a started stream is never retried


def test_a_stalled_stream_hits_the_read_timeout(server: LocalServer) -> None:
    with pytest.raises(TransportError) as caught:
        generate(
            server, settings=settings_for(server, read_timeout=0.5), mesh_local={"fault": "stall"}
        )
    assert "read timeout" in str(caught.value)


def test_slow_pings_within_the_read_timeout_keep_the_stream_alive(server: LocalServer) -> None:
    events = generate(
        server,
        settings=settings_for(server, read_timeout=0.6),
        mesh_local={"latency": 1.2, "ping_interval": 0.2},
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
        mesh_local={"latency": 0.6},
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


# -- what may be sent twice (issue 9) ------------------------------------------------------

BIG_IMAGE = "data:image/png;base64," + "A" * (32 * 1024 * 1024)  # beyond any socket buffer


def arrivals(api: ScriptedServer) -> int:
    return api.paths().count(GENERATIONS)


def test_a_server_that_hangs_up_in_the_middle_of_an_upload_gets_it_only_once() -> None:
    with ScriptedServer({GENERATIONS: read_then_hang_up(64 * 1024)}) as api:
        events, error = events_until_failure(api, image=BIG_IMAGE)
    assert isinstance(error, TransportError), error
    assert "still being sent" in str(error) and "too large" in str(error)
    assert "not retried, because a repeat could bill twice" in str(error)
    assert not any(isinstance(e, Retrying) for e in events)
    assert arrivals(api) == 1


def test_a_413_answered_before_a_big_upload_was_read_is_not_sent_again() -> None:
    envelope = {"error": {"code": "request_too_large", "message": "The body is too large"}}
    with ScriptedServer({GENERATIONS: answer_unread(413, envelope)}) as api:
        events, error = events_until_failure(api, image=BIG_IMAGE)
    # The reset of the unread upload may destroy the answer; either way it says why.
    assert isinstance(error, RequestTooLargeError | TransportError), error
    assert "too large" in str(error)
    assert not any(isinstance(e, Retrying) for e in events)
    assert arrivals(api) == 1


def test_a_413_answered_before_a_small_upload_was_read_is_shown() -> None:
    envelope = {"error": {"code": "request_too_large", "message": "The body is too large"}}
    with ScriptedServer({GENERATIONS: answer_unread(413, envelope)}) as api:
        _, error = events_until_failure(api)
    assert isinstance(error, RequestTooLargeError) and error.status == 413
    assert arrivals(api) == 1


def test_the_embedded_backend_reads_a_body_over_its_limit_so_its_413_arrives(
    server: LocalServer,
) -> None:
    _, error = events_until_failure(server, image=BIG_IMAGE + "A" * (1024 * 1024))
    assert isinstance(error, RequestTooLargeError), error
    assert len(generations(server)) <= 1  # the refused body may not be recorded


def test_a_server_that_drops_after_the_whole_request_is_not_asked_again() -> None:
    with ScriptedServer({GENERATIONS: hang_up}) as api:
        events, error = events_until_failure(api)
    assert isinstance(error, TransportError), error
    assert "the connection failed after the request was sent" in str(error)
    assert "not retried" in str(error)
    assert not any(isinstance(e, Retrying) for e in events)
    assert arrivals(api) == 1


def test_an_upload_the_server_stops_reading_times_out_and_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "WRITE_TIMEOUT", 0.5)
    with ScriptedServer({}) as api:
        api.routes[GENERATIONS] = reads_body(lambda _: api.stopping.wait(30))  # reads nothing
        events, error = events_until_failure(api, image=BIG_IMAGE)
    assert isinstance(error, TransportError), error
    assert "stalled for 0.5 s (write timeout)" in str(error) and "not retried" in str(error)
    assert not any(isinstance(e, Retrying) for e in events)
    assert arrivals(api) == 1


def test_retry_backoff_is_the_first_retrys_wait_and_each_later_one_doubles() -> None:
    closed = LocalServer().start()
    closed.stop()  # nothing listens: each attempt fails to connect, and the backoff decides
    settings = client_settings({"retry_backoff": 0.2, "max_retries": 2}, closed.url)
    assert settings.backoff_base == 0.2
    events, error = events_until_failure(closed, settings=settings)
    assert isinstance(error, TransportError)
    first, second = (e.delay for e in events if isinstance(e, Retrying))
    assert 0.15 <= first <= 0.25 and 0.3 <= second <= 0.5  # with jitter of +-25%


def test_connection_refused_is_retried_exactly_max_retries_times() -> None:
    closed = LocalServer().start()
    url = closed.url
    closed.stop()
    settings = ClientSettings(base_url=url, max_retries=3, backoff_base=0.01)
    events, error = events_until_failure(closed, settings=settings)
    assert isinstance(error, TransportError) and "could not connect" in str(error)
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [2, 3, 4]


def test_a_500_that_drops_its_body_halfway_is_still_a_500_and_not_retried() -> None:
    with ScriptedServer({GENERATIONS: lying_length(b'{"error": {"code": "x', 900, 500)}) as api:
        _, error = events_until_failure(api)
    assert isinstance(error, InternalServerError) and error.status == 500
    assert arrivals(api) == 1


# -- redirects from the API ---------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_from_the_api_is_not_followed_and_says_where_it_pointed(status: int) -> None:
    with ScriptedServer({}) as elsewhere, ScriptedServer({}) as api:
        target = elsewhere.url.replace("://", "://user:pw@") + "/api" + GENERATIONS + "?sig=x"
        api.routes[GENERATIONS] = redirect(target, status)
        _, error = events_until_failure(api)
    assert isinstance(error, ConfigError), error
    message = str(error)
    assert f"HTTP {status}" in message and "redirected" in message
    assert f"{elsewhere.url}/api{GENERATIONS}" in message  # where to, without credentials
    assert f"--base-url {elsewhere.url}/api" in message  # and what to write instead
    assert "user:pw" not in message and "sig=x" not in message
    assert elsewhere.requests == [] and arrivals(api) == 1  # the key went nowhere else


def test_a_relative_redirect_is_shown_against_the_api_host() -> None:
    with ScriptedServer({GENERATIONS: redirect("/v2/generate", 308)}) as api:
        _, error = events_until_failure(api)
    assert isinstance(error, ConfigError)
    assert f"{api.url}/v2/generate" in str(error) and "base URL" in str(error)


def test_a_redirect_when_listing_models_is_reported_too() -> None:
    with ScriptedServer({"/v1/models": redirect("https://api.example.com/v1/models", 301)}) as api:

        async def models() -> list[dict[str, Any]]:
            async with MeshClient(settings_for(api)) as client:
                return await client.list_models()

        with pytest.raises(ConfigError) as caught:
            asyncio.run(models())
    assert "https://api.example.com/v1/models" in str(caught.value)


# -- previews: MeshAPI's image.chunk and OpenAI's typed events ----------------------------


def run_stream(*frames: bytes) -> list[StreamEvent]:
    with ScriptedServer({GENERATIONS: send_sse(*frames)}) as api:
        return generate(api)


def chunk(**fields: Any) -> bytes:
    return sse_frame({"id": "imgstream_1", "object": "image.chunk", "created": 1, **fields})


def test_image_chunk_previews_are_previews_and_the_completed_chunk_is_the_result() -> None:
    preview, final = png_bytes(4, 4), png_bytes(12, 10)
    events = run_stream(
        chunk(status="processing", data=[]),
        *(
            chunk(status="partial_image", partial_image_index=i, data=[{"b64_json": b64(preview)}])
            for i in range(2)
        ),
        chunk(status="completed", model="m/x", data=[{"b64_json": b64(final)}], usage={"t": 1}),
        b"data: [DONE]\n\n",
    )
    assert [type(e).__name__ for e in events] == [
        "StatusChanged", "PartialImage", "PartialImage", "Completed",
    ]  # fmt: skip
    assert [e.index for e in events if isinstance(e, PartialImage)] == [0, 1]
    done = completed(events)
    assert [(i.width, i.height) for i in done.images] == [(12, 10)]  # not a preview
    assert done.usage == {"t": 1} and done.model == "m/x"


@pytest.mark.parametrize("after", ["more frames", "a stream left open"])
def test_what_follows_done_is_read_briefly_then_the_images_are_returned(after: str) -> None:
    """After [DONE] the client reads the end of the body (so the connection can be kept),
    but neither more frames nor a server that never ends the body hold the result up."""
    final = png_bytes(6, 5)
    frames = [sse_frame({"data": [{"b64_json": b64(final)}]}), b"data: [DONE]\n\n"]
    if after == "more frames":
        route = send_sse(*frames, b"data: not json\n\n", sse_frame({"data": []}))
    else:
        route = send_sse(*frames, then="stall")
    with ScriptedServer({GENERATIONS: route}) as api:
        started = time.monotonic()
        done = completed(generate(api))
    assert [(i.width, i.height) for i in done.images] == [(6, 5)]
    assert time.monotonic() - started < client_module.AFTER_DONE_SECONDS + 10  # not 120 s


def test_a_chunk_with_only_a_partial_image_index_is_a_preview() -> None:
    preview, final = png_bytes(4, 4), png_bytes(12, 10)
    events = run_stream(
        chunk(partial_image_index=0, data=[{"b64_json": b64(preview)}]),
        chunk(status="partial", data=[{"b64_json": b64(preview)}]),
        chunk(data=[{"b64_json": b64(final)}]),
        b"data: [DONE]\n\n",
    )
    assert sum(isinstance(e, PartialImage) for e in events) == 2
    assert len(completed(events).images) == 1


def test_openai_style_events_still_give_previews_and_images() -> None:
    preview, final = png_bytes(4, 4), png_bytes(12, 10)
    events = run_stream(
        sse_frame(
            {
                "type": "image_generation.partial_image",
                "partial_image_index": 1,
                "b64_json": b64(preview),
            }
        ),
        sse_frame(
            {"type": "image_generation.completed", "b64_json": b64(final), "usage": {"t": 2}}
        ),
        b"data: [DONE]\n\n",
    )
    assert [e.index for e in events if isinstance(e, PartialImage)] == [1]
    assert [(i.width, i.height) for i in completed(events).images] == [(12, 10)]


def test_a_broken_preview_is_skipped_not_taken_for_the_result() -> None:
    final = png_bytes(12, 10)
    events = run_stream(
        chunk(
            status="partial_image", partial_image_index=0, data=[{"b64_json": "bm90IGFuIGltYWdl"}]
        ),
        chunk(status="completed", data=[{"b64_json": b64(final)}]),
        b"data: [DONE]\n\n",
    )
    assert not any(isinstance(e, PartialImage) for e in events)
    assert len(completed(events).images) == 1


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "error", "error": {"code": "moderation_blocked", "message": "refused"}},
        {"type": "error", "code": "moderation_blocked", "message": "refused"},
        {"type": "image_generation.failed", "error": "moderation_blocked: refused"},
        {"object": "image.chunk", "created": 1, "error": {"code": "x", "message": "refused"}},
    ],
)
def test_an_error_event_in_any_shape_fails_the_generation(frame: dict[str, Any]) -> None:
    with pytest.raises(StreamFailedError) as caught:
        run_stream(sse_frame(frame), b"data: [DONE]\n\n")
    assert "refused" in str(caught.value)


def test_previews_alone_are_not_a_result() -> None:
    preview = png_bytes(4, 4)
    with pytest.raises(StreamError) as caught:
        run_stream(
            chunk(status="partial_image", partial_image_index=0, data=[{"b64_json": b64(preview)}]),
            b"data: [DONE]\n\n",
        )
    assert "without any image" in str(caught.value)


# -- numbers and types a server gets wrong ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("nan", float("nan")),
        ("inf", float("inf")),
        ("-1", -1),
        ("1e999", 1e999),
        ("99999999999", 10**400),
    ],
)
def test_unusable_retry_after_values_still_give_a_sane_wait(header: str, seconds: Any) -> None:
    refusal = send_bytes(
        json.dumps({"error": {"code": "unavailable", "retry_after_seconds": seconds}}).encode(),
        503,
        {"content-type": "application/json", "retry-after": header},
    )
    final = chunk(status="completed", data=[{"b64_json": b64(png_bytes())}]) + b"data: [DONE]\n\n"
    with ScriptedServer({GENERATIONS: in_turn(refusal, send_sse(final))}) as api:
        events = generate(api, settings=settings_for(api, max_retry_wait=0.2))
    (retry,) = [e for e in events if isinstance(e, Retrying)]
    assert 0 <= retry.delay <= 0.2  # finite, not negative, within the cap
    assert isinstance(events[-1], Completed)


def test_retry_after_parsing_refuses_what_is_not_a_wait() -> None:
    assert parse_retry_after("nan") is None and parse_retry_after("-5") is None
    assert parse_retry_after("inf") == parse_retry_after("1e999") == 24 * 3600
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:10 GMT", now=1795608100.0) == 0.0
    assert parse_retry_after("Wed, 99 Nov 2026 12:00:10 GMT") is None


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (
            {"error": {"message": {"why": "nested"}, "code": 7, "details": "one"}},
            ("nested", "7", "one"),
        ),
        ({"error": "a plain sentence"}, ("a plain sentence",)),
        ({"error": ["a", "list"]}, ("list",)),
        ({"error": {"message": None, "code": None, "request_id": 5}}, ("unknown error",)),
        (
            {"error": {"message": "m", "details": {"loc": ["body", "n"], "msg": "too big"}}},
            ("n: too big",),
        ),
        ({"detail": [{"loc": ["body", "size"], "msg": "bad size"}]}, ("size: bad size",)),
        ({"message": "Forbidden by the gateway"}, ("Forbidden by the gateway",)),
        (
            {
                "error": {"message": "x" * 5000, "retry_after_seconds": "soon"},
                "request_id": {"a": 1},
            },
            ("xxx",),
        ),
    ],
)
def test_error_envelopes_of_the_wrong_shape_are_still_readable(
    payload: dict[str, Any], words: tuple[str, ...]
) -> None:
    with ScriptedServer({GENERATIONS: send_json(payload, 400)}) as api:
        _, error = events_until_failure(api)
    assert isinstance(error, APIError) and error.status == 400, error
    for word in words:
        assert word in str(error)
    assert len(str(error)) < 600


def test_a_server_message_cannot_break_the_line_or_colour_the_terminal() -> None:
    envelope = {"error": {"code": "x\x1b[2J", "message": "first\nsecond\x1b[31m red"}}
    with ScriptedServer({GENERATIONS: send_json(envelope, 400)}) as api:
        _, error = events_until_failure(api)
    assert isinstance(error, APIError)
    assert "\x1b" not in str(error) and "\n" not in str(error)
    assert "first second" in str(error)


def test_a_success_whose_length_lies_is_a_dropped_response_not_retried() -> None:
    body = json.dumps({"data": [{"b64_json": b64(png_bytes())}]}).encode()
    with ScriptedServer({GENERATIONS: lying_length(body, len(body) * 2)}) as api:
        _, error = events_until_failure(api, stream=False)
    assert isinstance(error, StreamError) and "dropped" in str(error)
    assert arrivals(api) == 1


def test_a_page_that_is_not_json_says_what_it_was() -> None:
    page = b"<html><title>Sign in to the portal</title></html>"
    with ScriptedServer({GENERATIONS: send_bytes(page, 200, {"content-type": "text/html"})}) as api:
        _, error = events_until_failure(api, stream=False)
    assert isinstance(error, StreamError)
    assert "not JSON" in str(error) and "(HTTP 200, text/html)" in str(error)
    assert "Sign in to the portal" in str(error) and "<" not in str(error)


def test_a_key_a_header_cannot_carry_is_a_config_error_that_does_not_show_it() -> None:
    with ScriptedServer({}) as api:
        _, error = events_until_failure(
            api, settings=settings_for(api, api_key=Secret("rsk_é_key_x"))
        )
    assert isinstance(error, ConfigError) and "MESHAPI_API_KEY" in str(error)
    assert "rsk_é_key_x" not in str(error) and api.requests == []


def test_image_urls_with_credentials_are_fetched_without_them_and_never_shown() -> None:
    with ScriptedServer({}) as files, ScriptedServer({}) as api:
        signed = files.url.replace("://", "://cdnuser:cdnpass1@")
        files.routes["/x.png"] = send_bytes(png_bytes(5, 3), headers={"content-type": "image/png"})
        files.routes["/moved.png"] = redirect(signed + "/x.png")
        files.routes["/gone.png"] = send_bytes(b"", 404)
        api.routes[GENERATIONS] = send_json({"data": [{"url": signed + "/moved.png"}]})
        done = completed(generate(api, stream=False))
        api.routes[GENERATIONS] = send_json({"data": [{"url": signed + "/gone.png"}]})
        _, error = events_until_failure(api, stream=False)
    assert (done.images[0].width, done.images[0].height) == (5, 3)
    assert files.paths() == ["/moved.png", "/x.png", "/gone.png"]
    assert all("authorization" not in headers for _, headers in files.requests)
    assert isinstance(error, ImageDecodeError) and "HTTP 404" in str(error)
    assert "cdnpass1" not in str(error) + repr(error)
