"""The embedded backend, spoken to over real loopback HTTP as a client would."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mesh_magics.errors import ConfigError
from mesh_magics.local import MODELS, LocalServer, ensure_local_server, pictures
from mesh_magics.local import server as server_module
from mesh_magics.local.attempts import AttemptCounter, attempt_key
from mesh_magics.local.published import FileStore

from .servers import lent
from .support import generations, local_from_the_command_line, sent

PROMPT = "a red fox in the snow"
GENERATED_ID = re.compile(r"^req_[0-9A-Z]{26}$")


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.1) as server:
        yield server


@pytest.fixture
def server(running: LocalServer) -> Iterator[LocalServer]:
    yield from lent(running, ping_interval=0.1)


@pytest.fixture
def fresh() -> Iterator[LocalServer]:
    """A server of the test's own, for counters that must start at zero."""
    with LocalServer(ping_interval=0.1) as server:
        yield server


@pytest.fixture(scope="module")
def shared_client(running: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url + "/v1", timeout=5) as http:
        yield http


@pytest.fixture
def client(server: LocalServer, shared_client: httpx.Client) -> httpx.Client:
    return shared_client


def generate(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"prompt": PROMPT, "size": "64x64", **fields}
    return http.post("/images/generations", json=body)


def image_bytes(entry: dict[str, Any]) -> bytes:
    if "b64_json" in entry:
        return base64.b64decode(entry["b64_json"])
    url = entry["url"]
    if url.startswith("data:"):
        return base64.b64decode(url.partition(",")[2])
    return httpx.get(url).content


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def read_events(response: httpx.Response) -> list[str]:
    """The SSE events of a response, each block between blank lines as text."""
    buffer, events = b"", []
    for piece in response.iter_bytes():
        buffer += piece
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            events.append(block.decode())
    return events


def stream(http: httpx.Client, **fields: Any) -> list[str]:
    body = {"prompt": PROMPT, "size": "64x64", "stream": True, **fields}
    with http.stream("POST", "/images/generations", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_events(response)


def payloads(events: list[str]) -> list[Any]:
    """The data of each event, parsed ("[DONE]" kept as a string); comments left out."""
    return [
        "[DONE]" if e == "data: [DONE]" else json.loads(e.removeprefix("data: "))
        for e in events
        if e.startswith("data:")
    ]


def raw_stream(server: LocalServer, body: dict[str, Any]) -> tuple[list[bytes], bool]:
    """POST over a bare socket: the chunks of the chunked body, and whether it ended cleanly."""
    payload = json.dumps({"prompt": PROMPT, "size": "64x64", "stream": True, **body}).encode()
    head = (
        f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Connection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + payload)
        reader = sock.makefile("rb")  # closed with the socket
        while reader.readline() not in (b"\r\n", b""):
            pass
        chunks: list[bytes] = []
        while True:
            size_line = reader.readline()
            if not size_line:
                return chunks, False
            size = int(size_line, 16)
            if size == 0:
                return chunks, reader.readline() == b"\r\n"
            data = reader.read(size)
            if len(data) < size or reader.read(2) != b"\r\n":
                return [*chunks, data], False
            chunks.append(data)


# -- models ----------------------------------------------------------------------------


def test_models_lists_image_and_text_models(client: httpx.Client, server: LocalServer) -> None:
    models = client.get("/models").json()
    assert models == MODELS
    ids = {m["id"] for m in models}
    assert {"openai/gpt-image-1", "openai/dall-e-3", "vertex/imagen-3", "local/sketch"} <= ids
    assert "openai/gpt-4o-mini" in ids
    for model in models:
        assert {"id", "name", "model_type", "input_modalities", "output_modalities"} <= set(model)
        assert isinstance(model["is_free"], bool)
        assert isinstance(model["supports_image_edit"], bool)
        prices = model["pricing"]
        assert all(value is None or isinstance(value, str) for value in prices.values())
        if model["model_type"] == "image":
            assert float(prices["image_output_usd_per_image"]) >= 0
        else:
            assert float(prices["prompt_usd_per_1m"]) > 0
            assert float(prices["completion_usd_per_1m"]) > 0
    # The base URL may come without /v1.
    assert httpx.get(server.url + "/models").json() == models


def test_models_type_image_keeps_only_image_generators(client: httpx.Client) -> None:
    models = client.get("/models", params={"type": "image"}).json()
    assert models
    assert all("image" in m["output_modalities"] for m in models)
    assert "openai/gpt-4o-mini" not in {m["id"] for m in models}


@pytest.mark.parametrize(
    "path",
    ["/models/openai/gpt-image-1", "/models/openai%2Fgpt-image-1", "/models/openai/gpt-image-1/"],
)
def test_one_model_by_its_id_slash_and_all(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == next(m for m in MODELS if m["id"] == "openai/gpt-image-1")


def test_an_unknown_model_id_is_a_404_envelope(client: httpx.Client) -> None:
    response = client.get("/models/acme/painter-9")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found"
    assert "acme/painter-9" in error["message"]


def test_free_and_paid_models_split_the_catalogue(client: httpx.Client) -> None:
    free = client.get("/models/free").json()
    paid = client.get("/models/paid").json()
    assert [m["id"] for m in free] == ["local/sketch"]
    assert all(not m["is_free"] for m in paid)
    assert sorted(m["id"] for m in free + paid) == sorted(m["id"] for m in MODELS)
    assert client.get("/models", params={"free": "true"}).json() == free
    assert client.get("/models", params={"free": "false"}).json() == paid


def test_models_filter_by_provider_and_type_together(client: httpx.Client) -> None:
    openai = client.get("/models", params={"provider": "openai"}).json()
    assert {m["id"] for m in openai} == {
        "openai/gpt-image-1",
        "openai/dall-e-3",
        "openai/gpt-4o-mini",
    }
    images = client.get("/models", params={"provider": "openai", "type": "image"}).json()
    assert {m["id"] for m in images} == {"openai/gpt-image-1", "openai/dall-e-3"}
    assert client.get("/models", params={"provider": "nobody"}).json() == []


@pytest.mark.parametrize(("name", "value"), [("free", "maybe"), ("type", "hologram")])
def test_a_bad_models_filter_is_a_422_naming_it(
    client: httpx.Client, name: str, value: str
) -> None:
    response = client.get("/models", params={name: value})
    assert response.status_code == 422
    [detail] = error_of(response)["details"]
    assert (detail["loc"], detail["input"]) == (["query", name], value)


def test_a_wrong_method_is_a_405_naming_the_right_one(client: httpx.Client) -> None:
    response = client.get("/images/generations")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert error_of(response)["code"] == "method_not_allowed"
    assert client.delete("/models").status_code == 405


# -- plain answers ---------------------------------------------------------------------


def test_b64_json_answer_has_the_protocol_shape(client: httpx.Client) -> None:
    response = generate(client, response_format="b64_json", size="64x48", quality="low")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["created"], int)
    assert body["size"] == "64x48"
    assert body["output_format"] == "png"
    assert body["quality"] == "low"
    assert body["background"] == "opaque"
    assert body["usage"]["total_tokens"] > 0
    [entry] = body["data"]
    assert entry["revised_prompt"].startswith(PROMPT)
    img = open_image(image_bytes(entry))
    assert (img.format, img.size) == ("PNG", (64, 48))


def test_gpt_image_answers_a_data_url(client: httpx.Client) -> None:
    body = generate(client, output_format="jpeg", output_compression=70, n=2).json()
    assert len(body["data"]) == 2
    for entry in body["data"]:
        assert entry["url"].startswith("data:image/jpeg;base64,")
        img = open_image(image_bytes(entry))
        assert (img.format, img.size) == ("JPEG", (64, 64))


def test_local_sketch_answers_a_data_url_too(client: httpx.Client) -> None:
    [entry] = generate(client, model="local/sketch", output_format="webp").json()["data"]
    assert entry["url"].startswith("data:image/webp;base64,")
    assert open_image(image_bytes(entry)).format == "WEBP"


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_transparent_background_has_real_alpha(client: httpx.Client, fmt: str) -> None:
    body = generate(client, background="transparent", output_format=fmt).json()
    assert body["background"] == "transparent"
    img = open_image(image_bytes(body["data"][0]))
    assert img.mode == "RGBA"
    assert img.getchannel("A").getextrema()[0] == 0


def test_transparent_jpeg_is_drawn_opaque(client: httpx.Client) -> None:
    body = generate(client, background="transparent", output_format="jpeg").json()
    assert body["background"] == "opaque"
    assert open_image(image_bytes(body["data"][0])).mode == "RGB"


def test_dalle_answers_remote_urls_served_by_the_same_server(
    client: httpx.Client, server: LocalServer
) -> None:
    body = generate(client, model="openai/dall-e-3", n=2).json()
    urls = [entry["url"] for entry in body["data"]]
    assert len(set(urls)) == 2
    assert all(url.startswith(server.url + "/files/") and url.endswith(".png") for url in urls)
    response = httpx.get(urls[0])
    assert response.headers["content-type"] == "image/png"
    assert open_image(response.content).size == (64, 64)
    fetch = sent(server, urls[0].removeprefix(server.url))
    assert fetch.method == "GET"
    assert "authorization" not in fetch.headers
    assert httpx.get(server.url + "/files/nope.png").status_code == 404


def test_imagen_always_answers_b64_and_no_usage(client: httpx.Client) -> None:
    body = generate(client, model="vertex/imagen-3", response_format="url").json()
    assert "usage" not in body
    [entry] = body["data"]
    assert set(entry) == {"b64_json"}
    assert open_image(image_bytes(entry)).size == (64, 64)


def test_unknown_fields_pass_through(client: httpx.Client) -> None:
    fields = {"aspect_ratio": "1:1", "sequential_image_generation": "auto", "seed": 7}
    response = generate(client, guidance_scale=3.5, watermark=False, moderation="low", **fields)
    assert response.status_code == 200


def test_latency_delays_a_plain_answer(client: httpx.Client) -> None:
    began = time.monotonic()
    assert generate(client, mesh_local={"latency": 0.3}).status_code == 200
    assert time.monotonic() - began >= 0.3


def test_requests_are_recorded_with_their_body(client: httpx.Client, server: LocalServer) -> None:
    generate(client, headers_test=1)
    recorded = sent(server)
    assert recorded.method == "POST"
    assert recorded.body["headers_test"] == 1
    assert recorded.headers["content-type"] == "application/json"


# -- streaming -------------------------------------------------------------------------


def test_stream_sequence(client: httpx.Client) -> None:
    events = stream(client, partial_images=2, mesh_local={"latency": 0.4, "ping_interval": 0.1})
    assert events[0].startswith("data: ")
    assert events.count(": ping") >= 2
    frames = payloads(events)
    processing, *partials, final, done = frames
    assert processing["object"] == "image.chunk"
    assert (processing["status"], processing["data"]) == ("processing", [])
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    for partial in partials:
        assert (partial["object"], partial["status"]) == ("image.chunk", "partial_image")
        assert (partial["id"], partial["created"]) == (processing["id"], processing["created"])
        [preview] = partial["data"]
        assert open_image(base64.b64decode(preview["b64_json"])).width == 64
    assert final["id"] == processing["id"]
    assert final["status"] == "completed"
    assert final["usage"]["total_tokens"] > 0
    assert open_image(image_bytes(final["data"][0])).size == (64, 64)
    assert done == "[DONE]"
    assert events[-1] == "data: [DONE]"


def test_stream_sends_the_big_final_frame_in_pieces(server: LocalServer) -> None:
    body = {"size": "1024x1024", "output_format": "jpeg", "output_compression": 100}
    chunks, clean = raw_stream(server, body)
    assert clean
    assert max(len(c) for c in chunks) <= 64 * 1024
    text = b"".join(chunks).decode()
    final_line = next(line for line in text.split("\n") if '"completed"' in line)
    assert len(final_line) > 64 * 1024
    final = json.loads(final_line.removeprefix("data: "))
    assert open_image(image_bytes(final["data"][0])).size == (1024, 1024)


def test_imagen_stream_has_no_usage(client: httpx.Client) -> None:
    final = payloads(stream(client, model="vertex/imagen-3"))[-2]
    assert "usage" not in final
    assert set(final["data"][0]) == {"b64_json"}


# -- errors ----------------------------------------------------------------------------


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body["error"])


def test_bad_fields_get_a_422_with_every_detail(client: httpx.Client) -> None:
    response = generate(client, prompt="", n=11, size="huge", quality="ultra")
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    locs = [tuple(d["loc"]) for d in error["details"]]
    assert locs == [("body", "prompt"), ("body", "n"), ("body", "size"), ("body", "quality")]
    assert all(d["msg"] and d["type"] for d in error["details"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 0),
        ("n", True),
        ("size", "8x8"),
        ("size", "4097x1024"),
        ("response_format", "file"),
        ("output_format", "gif"),
        ("output_compression", 101),
        ("background", "green"),
        ("moderation", "high"),
        ("partial_images", 4),
        ("seed", -2),
        ("guidance_scale", 11),
        ("watermark", "yes"),
        ("prompt", None),
    ],
)
def test_each_bad_field_is_named(client: httpx.Client, field: str, value: Any) -> None:
    body = {"prompt": PROMPT, field: value}
    if value is None:
        del body[field]
    response = client.post("/images/generations", json=body)
    assert response.status_code == 422
    assert [d["loc"] for d in error_of(response)["details"]] == [["body", field]]


def test_invalid_json_is_a_400(client: httpx.Client) -> None:
    response = client.post("/images/generations", content=b"{not json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize("model", ["acme/painter-9", "openai/gpt-4o-mini"])
def test_unknown_model_is_a_404_naming_it(client: httpx.Client, model: str) -> None:
    response = generate(client, model=model)
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found"
    assert model in error["message"]


def test_unknown_api_version_is_a_400(client: httpx.Client) -> None:
    response = client.get("/models", headers={"X-Mesh-Version": "1999-01"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_api_version"


def test_bad_mesh_local_controls_are_a_400(client: httpx.Client) -> None:
    response = generate(client, mesh_local={"fault": "explode"})
    assert response.status_code == 400
    assert "explode" in error_of(response)["message"]


def test_a_valid_client_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.post(
        "/images/generations", json={"n": 0}, headers={"X-Request-Id": "cell-7:try.1"}
    )
    assert response.headers["x-request-id"] == "cell-7:try.1"
    assert response.json()["request_id"] == "cell-7:try.1"


def test_an_invalid_client_request_id_is_replaced(client: httpx.Client) -> None:
    response = client.get("/models", headers={"X-Request-Id": "not valid!"})
    assert GENERATED_ID.match(response.headers["x-request-id"])
    assert GENERATED_ID.match(client.get("/models").headers["x-request-id"])


def test_no_path_is_a_404_envelope(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# -- faults: statuses and pages --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "unauthorized"),
        (402, "spend_limit_exceeded"),
        (403, "forbidden"),
        (404, "model_not_found"),
        (413, "request_too_large"),
        (429, "rate_limit_exceeded"),
        (500, "internal_error"),
        (502, "unavailable"),
        (503, "unavailable"),
        (504, "gateway_timeout"),
    ],
)
def test_status_faults_answer_the_protocol_envelope(
    client: httpx.Client, status: int, code: str
) -> None:
    response = generate(client, mesh_local={"fault": f"status:{status}", "retry_after": "3"})
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["message"]
    if status in (429, 503):
        assert response.headers["retry-after"] == "3"
        assert error["retry_after_seconds"] == 3
    else:
        assert "retry-after" not in response.headers


def test_server_fault_applies_to_every_request(client: httpx.Client, server: LocalServer) -> None:
    server.fault = "status:401"
    assert generate(client).status_code == 401
    assert client.get("/models").status_code == 401
    server.fault = None
    assert generate(client).status_code == 200


def test_a_bad_server_fault_is_refused_at_once(server: LocalServer) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        server.fault = "status429"


def test_retry_after_may_be_an_http_date(client: httpx.Client) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    response = generate(client, mesh_local={"fault": "status:503", "retry_after": when})
    assert response.headers["retry-after"] == when
    assert 25 <= error_of(response)["retry_after_seconds"] <= 31


@pytest.mark.parametrize(
    ("kind", "content_type", "text"), [("html", "text/html", "<html>"), ("text", "text/plain", "")]
)
def test_proxy_pages_are_not_json(
    client: httpx.Client, kind: str, content_type: str, text: str
) -> None:
    response = generate(client, mesh_local={"fault": f"{kind}:502"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith(content_type)
    assert "502 Bad Gateway" in response.text
    assert text in response.text


def test_times_limits_a_fault_to_the_first_attempts(client: httpx.Client) -> None:
    controls = {"fault": "status:429", "times": 1, "retry_after": "2"}
    body = {"prompt": PROMPT, "size": "64x64", "mesh_local": controls}

    def attempt(request_id: str) -> httpx.Response:
        headers = {"X-Request-Id": request_id}
        return client.post("/images/generations", json=body, headers=headers)

    first = attempt("retry-me-1")
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert attempt("retry-me-1").status_code == 200
    assert attempt("retry-me-2").status_code == 429


# -- faults: streams -------------------------------------------------------------------


def test_error_frame(client: httpx.Client) -> None:
    events = stream(client, mesh_local={"fault": "error_frame"})
    assert events[1] == ": ping"
    processing, error, done = payloads(events)
    assert processing["status"] == "processing"
    assert (error["object"], error["status"], error["data"]) == ("image.chunk", "failed", [])
    assert error["error"]["code"] == "provider_job_failed"
    assert error["request_id"].startswith("req_")
    assert done == "[DONE]"


def test_drop_breaks_the_chunked_body(client: httpx.Client, server: LocalServer) -> None:
    body = {"prompt": PROMPT, "size": "64x64", "stream": True, "mesh_local": {"fault": "drop"}}
    with (
        client.stream("POST", "/images/generations", json=body) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        response.read()
    chunks, clean = raw_stream(server, {"mesh_local": {"fault": "drop"}})
    assert not clean
    text = b"".join(chunks).decode()
    assert '"completed"' in text
    assert "[DONE]" not in text


def test_cut_ends_cleanly_without_a_result(client: httpx.Client, server: LocalServer) -> None:
    events = stream(client, mesh_local={"fault": "cut", "latency": 0.25})
    assert [p["status"] for p in payloads(events)] == ["processing"]
    assert ": ping" in events
    chunks, clean = raw_stream(server, {"mesh_local": {"fault": "cut"}})
    assert clean
    assert b"[DONE]" not in b"".join(chunks)


def test_malformed_frame(client: httpx.Client) -> None:
    events = stream(client, mesh_local={"fault": "malformed"})
    assert events[-1] == "data: [DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1].removeprefix("data: "))


def test_stall_sends_nothing_after_processing(fresh: LocalServer) -> None:
    body = {"prompt": PROMPT, "size": "64x64", "stream": True, "mesh_local": {"fault": "stall"}}
    timeout = httpx.Timeout(5, read=0.5)
    received = b""
    with (
        httpx.Client(base_url=fresh.url, timeout=timeout) as http,
        http.stream("POST", "/v1/images/generations", json=body) as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        for piece in response.iter_bytes():
            received += piece
    assert received.count(b"\n\n") == 1
    assert b'"processing"' in received
    assert fresh.wait_for_disconnect(2)


def test_stop_wakes_a_stalled_stream(fresh: LocalServer) -> None:
    fresh.fault = "stall"
    failures: list[Exception] = []

    def read() -> None:
        with httpx.Client(base_url=fresh.url + "/v1", timeout=10) as http:
            try:
                stream(http)
            except httpx.HTTPError as exc:
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert fresh.wait_for_in_flight(1, 5)  # the handler is stalling in its answer
    began = time.monotonic()
    fresh.stop()
    reader.join(5)
    assert time.monotonic() - began < 2
    assert failures
    assert fresh.disconnects == 0


# -- faults: images --------------------------------------------------------------------


def test_not_image(client: httpx.Client) -> None:
    [entry] = generate(client, mesh_local={"fault": "not_image"}).json()["data"]
    assert image_bytes(entry) == b"this is not an image"


def test_truncated_png(client: httpx.Client) -> None:
    body = generate(client, response_format="b64_json", mesh_local={"fault": "truncated_png"})
    data = image_bytes(body.json()["data"][0])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(OSError):
        open_image(data)


def test_bomb_declares_a_huge_picture(client: httpx.Client) -> None:
    final = payloads(stream(client, mesh_local={"fault": "bomb"}))[-2]
    data = image_bytes(final["data"][0])
    assert len(data) < 1_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


@pytest.mark.parametrize(("n", "expected"), [(3, 2), (1, 0)])
def test_fewer(client: httpx.Client, n: int, expected: int) -> None:
    body = generate(client, n=n, mesh_local={"fault": "fewer"}).json()
    assert len(body["data"]) == expected


def test_stream_faults_have_plain_twins(client: httpx.Client) -> None:
    failed = generate(client, mesh_local={"fault": "error_frame"})
    assert (failed.status_code, error_of(failed)["code"]) == (500, "provider_job_failed")
    assert generate(client, mesh_local={"fault": "cut"}).json()["data"] == []
    with pytest.raises(json.JSONDecodeError):
        generate(client, mesh_local={"fault": "malformed"}).json()
    with pytest.raises(httpx.RemoteProtocolError):
        generate(client, mesh_local={"fault": "drop"})


# -- hang-ups --------------------------------------------------------------------------


def test_a_client_hanging_up_mid_stream_is_noticed(fresh: LocalServer) -> None:
    body = {"prompt": PROMPT, "stream": True, "mesh_local": {"latency": 5}}
    with (
        httpx.Client(base_url=fresh.url, timeout=5) as http,
        http.stream("POST", "/v1/images/generations", json=body) as response,
    ):
        first = next(response.iter_bytes())
        assert b'"processing"' in first
    assert fresh.wait_for_disconnect(2)
    assert fresh.disconnects == 1


def test_a_client_hanging_up_during_a_plain_wait_is_noticed(fresh: LocalServer) -> None:
    fresh.latency = 5
    with (
        httpx.Client(base_url=fresh.url, timeout=0.3) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        generate(http)
    assert fresh.wait_for_disconnect(2)


def test_finished_streams_are_not_hang_ups(fresh: LocalServer) -> None:
    with httpx.Client(base_url=fresh.url + "/v1", timeout=5) as http:
        stream(http)
    assert not fresh.wait_for_disconnect(0.3)
    assert fresh.disconnects == 0


# -- pictures --------------------------------------------------------------------------


def test_same_request_same_bytes(client: httpx.Client) -> None:
    def picture(**fields: Any) -> bytes:
        body = generate(client, response_format="b64_json", **fields).json()
        return image_bytes(body["data"][0])

    assert picture(seed=3) == picture(seed=3)
    assert picture(seed=3) != picture(seed=4)
    assert picture(prompt="a blue whale") != picture()


def test_render_is_deterministic_per_index() -> None:
    def png(index: int) -> bytes:
        img = pictures.render(PROMPT, 1, index, 96, 64, transparent=False)
        return pictures.encode(img, "png")

    assert png(0) == png(0)
    assert png(0) != png(1)
    assert open_image(png(1)).size == (96, 64)


# -- the package, the singleton and the command line ----------------------------------


def test_importing_the_backend_does_not_import_pillow() -> None:
    code = (
        "import sys; from mesh_magics.local import LocalServer, ensure_local_server, MODELS; "
        "assert 'PIL' not in sys.modules, 'PIL imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ensure_local_server_is_one_running_server() -> None:
    server = ensure_local_server()
    assert ensure_local_server() is server
    assert httpx.get(server.url + "/v1/models").status_code == 200


def test_the_command_line_serves_until_stopped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with local_from_the_command_line("--port", str(port), "--latency", "0") as served:
        assert served.url == f"http://127.0.0.1:{port}"
        models = httpx.get(served.url + "/v1/models", params={"type": "image"}).json()
        assert "local/sketch" in {m["id"] for m in models}
    assert served.process.returncode == 0
    assert "Traceback" not in served.errors


def test_the_command_line_on_all_interfaces_prints_a_usable_url() -> None:
    with local_from_the_command_line("--host", "0.0.0.0") as served:
        assert served.process.stderr is not None
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", served.url)
        assert "all interfaces" in served.process.stderr.readline()
        assert httpx.get(served.url + "/v1/models").status_code == 200


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--latency", "-1", "latency"),
        ("--latency", "nan", "latency"),
        ("--latency", "inf", "latency"),
        ("--ping-interval", "abc", "ping interval"),
        ("--port", "70000", "port"),
        ("--port", "-5", "port"),
        ("--fault", "explode", "unknown fault"),
        ("--model-latency", "fast", "model latency"),
    ],
)
def test_the_command_line_refuses_bad_values_in_one_line(flag: str, value: str, says: str) -> None:
    command = [sys.executable, "-m", "mesh_magics.local", flag, value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert says in done.stderr and repr(value) in done.stderr
    assert "Traceback" not in done.stderr


# -- request bodies: limits, chunks, methods -------------------------------------------


@pytest.fixture
def small_limit() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.1, max_body_bytes=4096) as server:
        yield server


def oversized_body() -> dict[str, Any]:
    # Megabytes: more than the socket buffers hold, so an unread body resets the connection.
    return {"prompt": "x" * 8_000_000, "size": "64x64"}


def test_an_oversized_body_gets_the_413_envelope(small_limit: LocalServer) -> None:
    with httpx.Client(base_url=small_limit.url + "/v1", timeout=5) as http:
        response = http.post("/images/generations", json=oversized_body())
        assert response.status_code == 413
        error = error_of(response)
        assert (error["code"], error["message"]) == (
            "request_too_large",
            "The request body exceeds 4,096 bytes",
        )
        # The same client goes on working afterwards.
        assert generate(http).status_code == 200


def test_an_async_client_sees_the_413_too(small_limit: LocalServer) -> None:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(base_url=small_limit.url + "/v1", timeout=5) as http:
            return await http.post("/images/generations", json=oversized_body())

    response = asyncio.run(send())
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_a_chunked_body_is_read_and_limited_too(small_limit: LocalServer) -> None:
    def pieces(body: dict[str, Any]) -> Iterator[bytes]:
        raw = json.dumps(body).encode()
        for start in range(0, len(raw), 1000):
            yield raw[start : start + 1000]

    with httpx.Client(base_url=small_limit.url + "/v1", timeout=5) as http:
        small = {"prompt": PROMPT, "size": "64x64", "response_format": "b64_json"}
        fine = http.post("/images/generations", content=pieces(small))
        assert fine.status_code == 200
        assert sent(small_limit).headers["transfer-encoding"] == "chunked"
        assert http.post("/images/generations", content=pieces(oversized_body())).status_code == 413


def test_the_default_limit_is_32_mb() -> None:
    assert LocalServer().max_body_bytes == 32 * 1024 * 1024


# -- what the server keeps: bounded whatever the kernel does ---------------------------


def data_url(color: tuple[int, int, int], side: int = 64, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, fmt)
    mime = "image/png" if fmt == "PNG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def noisy_data_url(megabytes: float) -> str:
    """An incompressible PNG of about MEGABYTES: random pixels."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=0)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_request_log_keeps_the_last_requests_with_long_strings_summarised() -> None:
    big = noisy_data_url(1.5)
    with (
        LocalServer(keep_requests=5) as server,
        httpx.Client(base_url=server.url + "/v1", timeout=30) as http,
    ):
        for seed in range(12):
            response = generate(http, model="local/sketch", image=[big], seed=seed)
            assert response.status_code == 200
        recorded = server.requests
    assert (len(recorded), server.request_count) == (5, 12)
    assert [r.body["seed"] for r in recorded] == [7, 8, 9, 10, 11]
    digest = hashlib.sha256(big.encode()).hexdigest()[:12]
    assert recorded[-1].body["image"] == [
        f"<data:image/png;base64 {len(big):,} chars sha256={digest}>"
    ]
    assert recorded[-1].body["prompt"] == PROMPT  # short strings are kept as they are
    assert sum(len(json.dumps(r.body)) for r in recorded) < 5 * 1024


def test_a_long_prompt_is_summarised_by_its_first_words(
    client: httpx.Client, server: LocalServer
) -> None:
    prompt = "a fox " * 400
    generate(client, prompt=prompt)
    summary = sent(server).body["prompt"]
    assert summary.startswith("<a fox a fox") and f"{len(prompt):,} chars" in summary


def test_remote_files_are_bounded_in_bytes_keeping_the_newest() -> None:
    store = FileStore(max_files=100, max_bytes=1000)
    names = [store.publish(bytes(400), "png") for _ in range(5)]
    assert len(store) == 2 and store.total_bytes == 800
    assert store.get(names[0]) is None and store.get(names[-1]) is not None
    assert store.get(store.publish(bytes(5000), "png")) is not None  # alone over the cap
    assert len(store) == 1


def test_attempt_counts_are_bounded() -> None:
    counter = AttemptCounter(keep=3)
    for body in range(10):
        counter.next(attempt_key(str(body).encode(), None))
    assert len(counter) == 3


# -- times: counted per request body, for any client ------------------------------------


def test_times_counts_attempts_of_the_same_body_without_a_request_id(
    server: LocalServer,
) -> None:
    body = {"prompt": PROMPT, "size": "64x64", "mesh_local": {"fault": "status:503", "times": 1}}
    with httpx.Client(base_url=server.url + "/v1", timeout=5) as http:
        first = http.post("/images/generations", json=body)
        retry = http.post("/images/generations", json=body)
        other = http.post("/images/generations", json={**body, "seed": 1})
        again = http.post("/images/generations", json=body)
    assert "x-request-id" not in sent(server).headers
    assert [first.status_code, retry.status_code] == [503, 200]
    assert other.status_code == 503  # another body is another request
    assert again.status_code == 503  # a success starts the count again


# -- image input -----------------------------------------------------------------------

RED = (255, 0, 0)


def red_share(img: Image.Image) -> float:
    """The share of pure red pixels in the top quarter of IMG."""
    top = img.convert("RGB").crop((0, 0, img.width, img.height // 4))
    counts = {color: n for n, color in top.getcolors(top.width * top.height) or []}
    return counts.get(RED, 0) / (top.width * top.height)


def picture(http: httpx.Client, **fields: Any) -> Image.Image:
    response = generate(http, response_format="b64_json", seed=3, **fields)
    assert response.status_code == 200, response.text
    return open_image(image_bytes(response.json()["data"][0]))


@pytest.mark.parametrize("model", ["openai/gpt-image-1", "local/sketch"])
def test_an_input_image_becomes_the_background(client: httpx.Client, model: str) -> None:
    plain = picture(client, model=model)
    over_red = picture(client, model=model, image=data_url(RED, side=40))
    assert plain.tobytes() != over_red.tobytes()
    assert red_share(plain) == 0
    assert red_share(over_red) > 0.5
    assert picture(client, model=model, image=[data_url(RED)]).tobytes() == over_red.tobytes()


def test_the_first_of_several_input_images_is_drawn(client: httpx.Client) -> None:
    blue = (0, 0, 255)
    img = picture(client, image=[data_url(RED), data_url(blue, fmt="JPEG")])
    assert red_share(img) > 0.5


def test_stream_previews_carry_the_input_image_too(client: httpx.Client) -> None:
    frames = payloads(stream(client, partial_images=1, image=data_url(RED)))
    partial = next(f for f in frames if f != "[DONE]" and f["status"] == "partial_image")
    preview = open_image(base64.b64decode(partial["data"][0]["b64_json"]))
    assert red_share(preview) > 0.3  # blurred at the edges of the shapes


@pytest.mark.parametrize(
    ("image", "loc", "says"),
    [
        ("https://example.com/fox.png", ["body", "image"], "Remote image URLs"),
        ("data:image/png;base64,AAAA", ["body", "image"], "not a readable image"),
        ("data:text/plain;base64,aGk=", ["body", "image"], "should hold an image"),
        ("data:image/png,rawbytes", ["body", "image"], "base64"),
        ("data:image/png;base64,@@@", ["body", "image"], "not valid base64"),
        (["data:image/png;base64,AAAA"], ["body", "image", 0], "not a readable image"),
        ([], ["body", "image"], "between 1 and"),
        (42, ["body", "image"], "valid string"),
    ],
)
def test_a_bad_input_image_is_a_422_detail(
    client: httpx.Client, image: Any, loc: list[Any], says: str
) -> None:
    response = generate(client, image=image)
    assert response.status_code == 422
    [detail] = error_of(response)["details"]
    assert detail["loc"] == loc
    assert says in detail["msg"]


def test_a_decompression_bomb_as_input_is_refused_unopened(client: httpx.Client) -> None:
    bomb = "data:image/png;base64," + base64.b64encode(pictures.bomb_png()).decode()
    response = generate(client, image=bomb)
    assert response.status_code == 422
    assert "more than" in error_of(response)["details"][0]["msg"]


def test_a_remote_url_in_a_list_is_refused_by_position(client: httpx.Client) -> None:
    response = generate(client, image=[data_url(RED), "http://example.com/a.png"])
    assert [d["loc"] for d in error_of(response)["details"]] == [["body", "image", 1]]


def test_a_model_without_image_input_refuses_one(client: httpx.Client) -> None:
    response = generate(client, model="openai/dall-e-3", image=data_url(RED))
    assert response.status_code == 422
    assert "does not accept image input" in error_of(response)["message"]


# -- configuration: one line naming what is wrong ----------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MESH_LOCAL_LATENCY", "abc", "number of seconds"),
        ("MESH_LOCAL_LATENCY", "-1", "number of seconds >= 0"),
        ("MESH_LOCAL_LATENCY", "nan", "finite"),
        ("MESH_LOCAL_PING_INTERVAL", "inf", "finite"),
        ("MESH_LOCAL_FAULT", "explode", "allowed: status:CODE"),
        ("MESH_LOCAL_MODEL_LATENCY", "fast", "JSON object of image model id to seconds"),
        ("MESH_LOCAL_MODEL_LATENCY", "[2]", "JSON object of image model id to seconds"),
    ],
)
def test_a_bad_environment_value_is_a_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setattr(server_module, "_shared", None)  # as in a fresh kernel
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        ensure_local_server()
    message = str(caught.value)
    assert variable in message and repr(value) in message and says in message
    [line] = caught.value._render_traceback_()
    assert "\n" not in line


def test_good_environment_values_configure_the_kernels_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "_shared", None)
    monkeypatch.setenv("MESH_LOCAL_LATENCY", "0.25")
    monkeypatch.setenv("MESH_LOCAL_PING_INTERVAL", "0")
    monkeypatch.setenv("MESH_LOCAL_FAULT", "status:429")
    monkeypatch.setenv("MESH_LOCAL_MODEL_LATENCY", '{"openai/dall-e-3": 2, "local/sketch": 0.5}')
    server = ensure_local_server()
    try:
        assert (server.latency, server.ping_interval, server.fault) == (0.25, 0.0, "status:429")
        assert server.model_latency == {"openai/dall-e-3": 2.0, "local/sketch": 0.5}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("latency", -1),
        ("latency", math.nan),
        ("ping_interval", math.inf),
        ("max_body_bytes", -1),
        ("port", 70000),
        ("keep_requests", -2),
        ("model_latency", {"openai/dall-e-3": -1}),
        ("model_latency", {"acme/painter-9": 1}),
    ],
)
def test_the_server_refuses_bad_settings(setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting):
        LocalServer(**{setting: value})


@pytest.mark.parametrize(
    "controls",
    [
        b'{"latency": NaN}',
        b'{"latency": Infinity}',
        b'{"latency": -0.5}',
        b'{"ping_interval": -Infinity}',
        b'{"times": -1}',
        b'{"retry_after": -3}',
        b'{"retry_after": "1\\r\\nX-Evil: yes"}',
    ],
)
def test_bad_per_request_controls_are_a_400(client: httpx.Client, controls: bytes) -> None:
    body = b'{"prompt": "fox", "size": "64x64", "mesh_local": ' + controls + b"}"
    response = client.post("/images/generations", content=body)
    assert response.status_code == 400
    assert "mesh_local." in error_of(response)["message"]


# -- addresses: all interfaces, the Host header ------------------------------------------


def test_a_server_on_all_interfaces_has_a_loopback_url() -> None:
    with LocalServer("0.0.0.0") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        body = generate(httpx.Client(base_url=server.url + "/v1"), model="openai/dall-e-3")
        [entry] = body.json()["data"]
        assert entry["url"].startswith(server.url + "/files/")
        assert httpx.get(entry["url"]).status_code == 200


def test_remote_file_urls_follow_the_host_the_client_used(
    client: httpx.Client, server: LocalServer
) -> None:
    host = f"localhost:{server.port}"
    response = client.post(
        "/images/generations",
        json={"prompt": PROMPT, "size": "64x64", "model": "openai/dall-e-3"},
        headers={"Host": host},
    )
    url = response.json()["data"][0]["url"]
    assert url.startswith(f"http://{host}/files/")
    assert httpx.get(url.replace("localhost", "127.0.0.1")).status_code == 200


def test_without_a_host_header_file_urls_use_the_servers_address(server: LocalServer) -> None:
    payload = json.dumps({"prompt": PROMPT, "size": "64x64", "model": "openai/dall-e-3"})
    head = (
        "POST /v1/images/generations HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + payload.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["data"][0]["url"].startswith(server.url + "/files/")


# -- per-model latency ----------------------------------------------------------------


@contextmanager
def held(server: LocalServer, **fields: Any) -> Iterator[socket.socket]:
    """A generation sent over a bare socket and left unread; the client hangs up on exit."""
    payload = json.dumps({"prompt": PROMPT, "size": "64x64", **fields}).encode()
    head = (
        f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Connection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + payload)
        yield sock


def test_model_latency_slows_only_the_models_it_names(fresh: LocalServer) -> None:
    fresh.model_latency = {"openai/dall-e-3": 60}
    with held(fresh, model="openai/dall-e-3"):
        assert fresh.wait_for_in_flight(1, 5)
        with httpx.Client(base_url=fresh.url + "/v1", timeout=10) as http:
            assert generate(http).status_code == 200  # gpt-image-1: the server's latency, 0
            assert generate(http, model="vertex/imagen-3").status_code == 200
            # A request's own latency wins over its model's.
            own = generate(http, model="openai/dall-e-3", mesh_local={"latency": 0})
            assert own.status_code == 200
        assert fresh.in_flight == 1  # the held DALL·E request still waits its 60 s
    assert fresh.wait_until_idle(5)


def test_model_latency_delays_plain_and_streamed_answers(
    client: httpx.Client, server: LocalServer
) -> None:
    server.model_latency = {"local/sketch": 0.3}
    began = time.monotonic()
    assert generate(client, model="local/sketch").status_code == 200
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    events = stream(client, model="local/sketch")
    assert time.monotonic() - began >= 0.3
    assert ": ping" in events  # pings every 0.1 s while the model's latency passes


def test_model_latency_may_be_shorter_than_latency(
    client: httpx.Client, server: LocalServer
) -> None:
    server.latency = 60
    server.model_latency = {"local/sketch": 0}
    # The client gives up after 5 s: the sketch model does not wait the server's 60 s.
    assert generate(client, model="local/sketch").status_code == 200


def test_model_latency_is_read_only_and_set_whole(server: LocalServer) -> None:
    server.model_latency = {"openai/dall-e-3": 2}
    assert server.model_latency == {"openai/dall-e-3": 2.0}
    with pytest.raises(TypeError):
        server.model_latency["vertex/imagen-3"] = 1
    server.model_latency = {}
    assert server.model_latency == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"openai/dall-e-3": -1}, r"model_latency\['openai/dall-e-3'\] must be a finite"),
        ({"openai/dall-e-3": math.nan}, "finite number of seconds"),
        ({"openai/dall-e-3": "2"}, "number of seconds"),
        ({"openai/dall-e-3": True}, "number of seconds"),
        ({"acme/painter-9": 1}, "'acme/painter-9' is not an image model; known: "),
        ({"openai/gpt-4o-mini": 1}, "not an image model"),
        ([("openai/dall-e-3", 1)], "must map image model ids to seconds"),
    ],
)
def test_a_bad_model_latency_is_refused_when_set(
    server: LocalServer, value: Any, says: str
) -> None:
    server.model_latency = {"local/sketch": 1}
    with pytest.raises(ValueError, match=says):
        server.model_latency = value
    assert server.model_latency == {"local/sketch": 1.0}  # unchanged


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"openai/dall-e-3": -2}', "MESH_LOCAL_MODEL_LATENCY['openai/dall-e-3'] must be"),
        ('{"openai/dall-e-3": NaN}', "finite"),
        ('{"acme/painter-9": 1}', "'acme/painter-9' is not an image model"),
    ],
)
def test_a_bad_model_latency_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setattr(server_module, "_shared", None)
    monkeypatch.setenv("MESH_LOCAL_MODEL_LATENCY", value)
    with pytest.raises(ConfigError) as caught:
        ensure_local_server()
    assert says in str(caught.value)
    [line] = caught.value._render_traceback_()
    assert "\n" not in line


# -- generations in flight ----------------------------------------------------------------


def test_concurrent_generations_are_counted_in_flight(fresh: LocalServer) -> None:
    fresh.latency = 1.0  # long enough for the three to overlap on a busy machine

    async def send_all(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=fresh.url + "/v1", timeout=30) as http:
            bodies = [{"prompt": PROMPT, "size": "64x64", "seed": i} for i in range(n)]
            return await asyncio.gather(
                *(http.post("/images/generations", json=body) for body in bodies)
            )

    responses = asyncio.run(send_all(3))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert fresh.max_in_flight == 3
    # Each stopped counting before its answer's last part went out: no wait needed.
    assert fresh.in_flight == 0
    assert fresh.generation_count == 3


def test_held_generations_count_until_the_client_hangs_up(fresh: LocalServer) -> None:
    fresh.latency = 60
    with held(fresh), held(fresh, seed=2), held(fresh, stream=True):
        assert fresh.wait_for_in_flight(3, 10)
        assert (fresh.max_in_flight, fresh.generation_count) == (3, 3)
        fresh.reset_counts()
        assert (fresh.max_in_flight, fresh.generation_count) == (3, 0)  # all still in flight
        plain = [r for r in fresh.requests if not r.body.get("stream")]
        assert [(r.status, r.answered_at) for r in plain] == [(None, None)] * 2  # not answered
    assert fresh.wait_until_idle(10)
    assert fresh.wait_for_disconnect(5)
    assert fresh.max_in_flight == 3
    fresh.reset_counts()
    assert (fresh.in_flight, fresh.max_in_flight, fresh.generation_count) == (0, 0, 0)


def test_a_client_keeping_k_requests_open_never_makes_more_than_k(fresh: LocalServer) -> None:
    k, rounds = 2, 6

    def worker(index: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=fresh.url + "/v1", timeout=10) as http:
            for i in range(rounds):
                seed = index * 100 + i
                statuses.append(generate(http, seed=seed).status_code)  # a kept-alive connection
                events = stream(http, seed=seed)
                statuses.append(200 if events[-1] == "data: [DONE]" else 0)
                statuses.append(generate(http, n=0).status_code)  # a 422 counts too
                # A new connection each time: a new handler thread on the server.
                body = {"prompt": PROMPT, "size": "64x64", "seed": seed}
                statuses.append(
                    httpx.post(fresh.url + "/v1/images/generations", json=body).status_code
                )
        return statuses

    with ThreadPoolExecutor(k) as pool:
        results = list(pool.map(worker, range(k)))
    assert all(statuses == [200, 200, 422, 200] * rounds for statuses in results)
    assert fresh.generation_count == k * rounds * 4
    assert 1 <= fresh.max_in_flight <= k
    assert fresh.in_flight == 0


def test_only_generation_requests_are_counted(fresh: LocalServer) -> None:
    with httpx.Client(base_url=fresh.url + "/v1", timeout=5) as http:
        assert http.get("/models").status_code == 200
        assert http.get("/images/generations").status_code == 405
        assert http.get("/images/edits").status_code == 405
        assert fresh.generation_count == 0
        url = generate(http, model="openai/dall-e-3").json()["data"][0]["url"]
        assert httpx.get(url).status_code == 200  # fetching the file is no generation
        assert generate(http, model="acme/painter-9").status_code == 404
        assert http.post("/images/generations", content=b"{").status_code == 400
    assert (fresh.generation_count, fresh.max_in_flight, fresh.in_flight) == (3, 1, 0)


def test_stopping_the_server_ends_what_is_in_flight() -> None:
    with LocalServer(latency=60) as server, held(server):
        assert server.wait_for_in_flight(1, 5)
        server.stop()
        assert server.wait_until_idle(5)


def test_waiting_for_in_flight_times_out_with_false(fresh: LocalServer) -> None:
    assert fresh.wait_until_idle(0)
    assert not fresh.wait_for_in_flight(1, 0.05)
    with pytest.raises(ValueError, match="n must be"):
        fresh.wait_for_in_flight(-1, 1)


# -- scheduled 429s and arrival times -------------------------------------------------------


def test_rate_limit_on_makes_exactly_the_nth_generation_a_429(
    client: httpx.Client, server: LocalServer
) -> None:
    assert generate(client).status_code == 200  # before: not counted from now
    before = server.generation_count
    assert server.rate_limit_on(3, retry_after="2") == before + 3
    assert server.pending_rate_limits == [3]
    responses = [generate(client, seed=i) for i in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200]
    limited = responses[2]
    assert limited.headers["retry-after"] == "2"
    error = error_of(limited)
    assert (error["code"], error["retry_after_seconds"]) == ("rate_limit_exceeded", 2)
    assert error_of(limited)["message"]
    assert server.pending_rate_limits == []
    recorded = generations(server)[-5:]
    assert [r.status for r in recorded] == [200, 200, 429, 200, 200]
    assert [r.at for r in recorded] == sorted(r.at for r in recorded)


def test_a_scheduled_429_answers_whatever_the_request(
    client: httpx.Client, server: LocalServer
) -> None:
    server.rate_limit_on(1, retry_after=0)
    response = client.post("/images/generations", content=b"not json")
    assert (response.status_code, response.headers["retry-after"]) == (429, "0")
    assert error_of(response)["retry_after_seconds"] == 0
    server.rate_limit_on(1)  # retry_after "1" by default
    body = {"prompt": PROMPT, "size": "64x64", "stream": True}
    response = client.post("/images/generations", json=body)
    assert response.headers["content-type"] == "application/json"  # no stream begun
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert client.post("/images/generations", content=b"not json").status_code == 400


def test_scheduled_429s_add_up_and_survive_reset_counts(
    client: httpx.Client, server: LocalServer
) -> None:
    server.rate_limit_on(1)
    server.rate_limit_on(2)
    server.rate_limit_on(4, retry_after="3")
    assert server.pending_rate_limits == [1, 2, 4]
    assert generate(client).status_code == 429
    server.reset_counts()
    assert server.pending_rate_limits == [1, 3]
    assert [generate(client).status_code for _ in range(4)] == [429, 200, 429, 200]
    assert server.generation_count == 4
    server.rate_limit_on(1)
    server.clear_rate_limits()
    assert server.pending_rate_limits == []
    assert generate(client).status_code == 200


def test_a_scheduled_429_hits_one_of_concurrent_requests(fresh: LocalServer) -> None:
    fresh.rate_limit_on(2, retry_after="2")

    async def send_all(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=fresh.url + "/v1", timeout=30) as http:
            bodies = [{"prompt": PROMPT, "size": "64x64", "seed": i} for i in range(n)]
            return await asyncio.gather(
                *(http.post("/images/generations", json=body) for body in bodies)
            )

    statuses = sorted(r.status_code for r in asyncio.run(send_all(4)))
    assert statuses == [200, 200, 200, 429]
    limited = [r for r in generations(fresh) if r.status == 429]
    assert len(limited) == 1
    assert fresh.pending_rate_limits == []


@pytest.mark.parametrize(
    ("n", "retry_after", "says"),
    [
        (0, "1", "n must be a whole number >= 1"),
        (True, "1", "n must be"),
        (1, -1, "retry_after must be whole seconds >= 0"),
        (1, "1\r\nX-Evil: yes", "retry_after must be"),
        (1, 1.5, "retry_after must be"),
    ],
)
def test_a_bad_rate_limit_is_refused(
    server: LocalServer, n: Any, retry_after: Any, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        server.rate_limit_on(n, retry_after=retry_after)
    assert server.pending_rate_limits == []


def test_each_request_records_when_it_arrived_and_its_status(
    client: httpx.Client, server: LocalServer
) -> None:
    server.latency = 0.3
    began = time.monotonic()
    assert generate(client).status_code == 200
    ended = time.monotonic()
    entry = sent(server)
    # It arrived before the latency was spent, and was answered after it.
    assert began <= entry.at <= ended - 0.3
    assert entry.status == 200
    assert entry.answered_at is not None
    assert entry.at + 0.3 <= entry.answered_at <= ended
    assert client.get("/models").status_code == 200
    models = sent(server, "/v1/models")
    assert (models.status, models.at >= entry.at) == (200, True)


# -- prices: what a dry run multiplies ------------------------------------------------------


def test_every_image_model_has_a_price_per_image(client: httpx.Client) -> None:
    prices: dict[str, Decimal] = {}
    for model in client.get("/models", params={"type": "image"}).json():
        pricing = model["pricing"]
        assert pricing["pricing_unit"] == "per_image"
        price = Decimal(pricing["image_output_usd_per_image"])
        assert price.is_finite() and price >= 0
        assert model["is_free"] == (price == 0)
        prices[model["id"]] = price
    assert prices == {
        "openai/gpt-image-1": Decimal("0.042"),
        "openai/dall-e-3": Decimal("0.040"),
        "vertex/imagen-3": Decimal("0.030"),
        "local/sketch": Decimal("0"),
    }
    # A dry run's estimate is n x price per run.
    assert 4 * prices["openai/gpt-image-1"] + 2 * prices["local/sketch"] == Decimal("0.168")


# -- the package: modules that do not import each other back -------------------------------


def test_the_backend_modules_import_no_cycle() -> None:
    package = Path(pictures.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {
            (node.module or "").split(".")[0] or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
            for alias in node.names
        }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            name == goal or (name not in seen and reaches(name, goal, seen | {name}))
            for name in imports.get(start, set())
        )

    # The package's __init__ imports lazily, by name; every other module is checked.
    cycles = [m for m in imports if m != "__init__" and reaches(m, m, {m})]
    assert cycles == []
    assert "server" not in imports["handler"]
