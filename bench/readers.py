"""The contenders of the decode benchmarks. Each reads one stream from the loopback server
(`url` is its base URL, `http://127.0.0.1:PORT/<body>/<framing>`) and returns the decoded
image bytes with the time from sending the request to having them; setting up a client
(e.g. its TLS context) happens before the clock starts.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

GENERATIONS_PATH = "/v1/images/generations"
REQUEST_BODY: dict[str, Any] = {"prompt": "bench", "model": "openai/gpt-image-1", "stream": True}
_SSE_HEADERS = {"Accept": "text/event-stream"}


@dataclass(frozen=True, repr=False)
class Reading:
    seconds: float
    images: list[bytes]
    parse_seconds: float = 0.0  # the raw limit: its time after the body was read

    def __repr__(self) -> str:
        # Short on purpose: Python 3.11's asyncio.run formats its main task's result while
        # it restores the SIGINT handler, and a repr of all the bytes is 4x their size.
        size = sum(map(len, self.images))
        return f"<Reading {self.seconds:.3f} s, {len(self.images)} images, {size:,} bytes>"


Reader = Callable[[str], Reading]


def raw_limit(url: str, b64decode: Callable[[str], bytes] = binascii.a2b_base64) -> Reading:
    """The floor: a blocking socket, a minimal chunked-body reader, one `json.loads` of the
    final frame's text, and B64DECODE for each image: by default `binascii.a2b_base64` (the
    core of `base64.b64decode`, without its ASCII re-encoding copy). It knows where the
    final frame is."""
    parts = urlsplit(url)
    payload = json.dumps(REQUEST_BODY).encode()
    request = (
        f"POST {parts.path}{GENERATIONS_PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    started = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port or 80)) as sock:
        sock.sendall(request)
        with sock.makefile("rb", buffering=65536) as wire:
            while wire.readline() not in (b"\r\n", b""):
                pass  # the status line and the headers
            pieces = []
            while size := int(wire.readline(), 16):
                pieces.append(wire.read(size))
                wire.readline()
    received = time.perf_counter()
    body = b"".join(pieces)
    del pieces  # each copy is let go as soon as the next exists: the floor for memory too
    end = body.rindex(b"\n\ndata: [DONE]")
    start = body.rindex(b"\n\n", 0, end) + len(b"\n\ndata: ")
    text = str(memoryview(body)[start:end], "utf-8")
    del body
    items = json.loads(text)["data"]
    del text
    images = []
    while items:  # each base64 text goes once its bytes exist, as the client does
        images.append(b64decode(items.pop(0)["b64_json"]))
    finished = time.perf_counter()
    return Reading(finished - started, images, finished - received)


def raw_limit_pybase64(url: str) -> Reading:
    """The raw limit with the base64 decoder the client uses (pybase64, SIMD, ~20x faster
    than `binascii`): a stricter floor, where what is left between it and the client is
    the HTTP stack and the SSE reading."""
    import pybase64

    return raw_limit(url, functools.partial(pybase64.b64decode, validate=True))


def ours_client(url: str) -> Reading:
    """The whole client path of a cell: `MeshClient.generate` to its `Completed` event
    (httpx, `aiter_sse`, JSON, base64, the header and structure check of every image)."""
    from mesh_magics.events import Completed
    from mesh_magics.http.client import MeshClient
    from mesh_magics.request import ImageRequest
    from mesh_magics.settings import ClientSettings

    async def read() -> Reading:
        async with MeshClient(ClientSettings(base_url=url, max_retries=0)) as client:
            started = time.perf_counter()
            events = [event async for event in client.generate(ImageRequest(REQUEST_BODY))]
            elapsed = time.perf_counter() - started
        completed = events[-1]
        assert isinstance(completed, Completed)
        return Reading(elapsed, [image.data for image in completed.images])

    return asyncio.run(read())


def ours_sse(url: str) -> Reading:
    """Our stream layer alone: httpx's `aiter_bytes`, `aiter_sse`, JSON and base64 of each
    frame as the client does them, without its checks and events."""
    import httpx

    from mesh_magics.http.sse import aiter_sse
    from mesh_magics.images import decode_base64

    async def read() -> Reading:
        images = []
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            async with client.stream(
                "POST", url + GENERATIONS_PATH, json=REQUEST_BODY, headers=_SSE_HEADERS
            ) as response:
                async for event in aiter_sse(response.aiter_bytes()):
                    if event.data == "[DONE]":
                        break
                    for item in json.loads(event.data).get("data") or []:
                        images.append(decode_base64(item["b64_json"], what="an image"))
            return Reading(time.perf_counter() - started, images)

    return asyncio.run(read())


def sse_reader(capped: bool) -> Reader:
    """The client's stream reading alone (the transport's byte stream, `aiter_sse`, JSON,
    pybase64), with the caps and deadlines of `http/limits.py` or without them: without is
    the loop the client ran before the caps (its decoder now also counts blank and comment
    lines, a few per stream)."""

    def read(url: str) -> Reading:
        import httpx

        from mesh_magics.http.limits import Deadline, decoded_chunks, response_cap
        from mesh_magics.http.sse import aiter_sse
        from mesh_magics.images import decode_base64
        from mesh_magics.request import ImageRequest

        async def go() -> Reading:
            images = []
            async with httpx.AsyncClient() as client:
                started = time.perf_counter()
                async with client.stream(
                    "POST", url + GENERATIONS_PATH, json=REQUEST_BODY, headers=_SSE_HEADERS
                ) as response:
                    cap = response_cap(ImageRequest(REQUEST_BODY), None)
                    limits = (cap, Deadline(total=600.0, idle=60.0)) if capped else None
                    async for event in aiter_sse(decoded_chunks(response), limits):
                        if event.data == "[DONE]":
                            break
                        for item in json.loads(event.data).get("data") or []:
                            images.append(decode_base64(item["b64_json"], what="an image"))
                return Reading(time.perf_counter() - started, images)

        return asyncio.run(go())

    read.__name__ = f"sse_{'capped' if capped else 'uncapped'}"
    return read


def httpx_floor(url: str) -> Reading:
    """Only httpx's `aiter_bytes` over the response, no parsing at all: what our client's
    HTTP stack costs before our code runs (no images come out)."""
    import httpx

    async def read() -> Reading:
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            async with client.stream(
                "POST", url + GENERATIONS_PATH, json=REQUEST_BODY, headers=_SSE_HEADERS
            ) as response:
                async for _ in response.aiter_bytes():
                    pass
            return Reading(time.perf_counter() - started, [])

    return asyncio.run(read())


def official_sdk(url: str) -> Reading:
    """The official `meshapi` SDK: `images.stream(...)`, then `image_bytes()` of each item."""
    from meshapi import ImageGenerationParams, MeshAPI

    params = ImageGenerationParams(prompt="bench", model="openai/gpt-image-1")
    with MeshAPI(base_url=url, token="rsk_bench", max_retries=0) as client:
        started = time.perf_counter()
        images = [
            item.image_bytes() for chunk in client.images.stream(params) for item in chunk.data
        ]
        return Reading(time.perf_counter() - started, images)


def sdk_available() -> bool:
    try:
        import meshapi  # noqa: F401
    except ImportError:
        return False
    return True


READERS: dict[str, Reader] = {
    "raw": raw_limit,
    "raw-pybase64": raw_limit_pybase64,
    "ours": ours_client,
    "ours-sse": ours_sse,
    "httpx": httpx_floor,
    "sse-capped": sse_reader(capped=True),
    "sse-uncapped": sse_reader(capped=False),
    "sdk": official_sdk,
}
