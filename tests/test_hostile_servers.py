"""Hostile and broken servers, over real loopback HTTP: each would take the kernel's memory
or time if a read were unbounded. Every one ends the run with one short line that names
the cap or deadline and how to raise it, and the client's peak RSS grows by less than
256 MB while the server offers 1 GiB (sent lazily, until the client hangs up).

The client runs in a fresh subprocess (`python -m tests.test_hostile_servers SPEC`), so
its peak memory is its own: the kernel's high-water mark is reset after the imports."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from mesh_magics.http.connections import AddressRefused, Nearest, Place, place_of

from .servers import ScriptedServer, png_bytes, sse_frame
from .support import FAKE_KEY, GENERATIONS

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
MIB = 1024**2
RSS_BOUND = 256 * MIB
FAKE_API = "api.hostile.test"  # a name that is not loopback, routed to 127.0.0.1 by the child
SMALL = {"prompt": "a fox", "model": "openai/gpt-image-1", "size": "64x64", "n": 1}


# -- the hostile routes: each offers 1 GiB, lazily -------------------------------------------


class Offer:
    """A route that streams `pieces` as HTTP chunks until they end or the client hangs up;
    `sent` counts the bytes that went out."""

    def __init__(
        self, status: int, headers: dict[str, str], pieces: Iterator[bytes], pace: float = 0.0
    ) -> None:
        self.status, self.headers, self.pieces, self.pace = status, dict(headers), pieces, pace
        self.sent = 0
        self.stopping = threading.Event()

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        chunked = "content-length" not in self.headers
        handler.send_response(self.status)
        framing = {"transfer-encoding": "chunked"} if chunked else {}
        for name, value in {**framing, **self.headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
        for piece in self.pieces:
            if not piece:
                continue
            if self.pace and self.stopping.wait(self.pace):
                return
            # A client that hung up makes this raise: ScriptedServer ends the handler.
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            handler.wfile.flush()
            self.sent += len(piece)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")


def endless(head: bytes, fill: bytes = b"A", total: int = GIB) -> Iterator[bytes]:
    """HEAD, then FILL repeated until TOTAL bytes: one line that never ends."""
    yield head
    block = fill * (256 * 1024)
    for _ in range(total // len(block)):
        yield block


def gzipped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """PIECES as one gzip stream, compressed as it is sent (1 GiB of zeros is ~1 MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    for piece in pieces:
        yield compressor.compress(piece)
    yield compressor.flush()


SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


# -- the client, in a subprocess --------------------------------------------------------------


def run_client(spec: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """What the child reports: the error's class, message and rendering, and the growth of
    its peak RSS while it ran."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_hostile_servers", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def spec_for(
    url: str, body: dict[str, Any] | None = None, kind: str = "generate", **settings: Any
) -> dict[str, Any]:
    return {"url": url, "body": {**SMALL, "stream": True, **(body or {})}, "kind": kind,
            "settings": settings}  # fmt: skip


def assert_bounded(outcome: dict[str, Any], error: str, *words: str) -> str:
    """One line, of class ERROR, with WORDS, no key; RSS grew by less than 256 MB."""
    assert outcome["class"] == error, outcome
    message = outcome["message"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(outcome["rendered"]) == 1 and "\n" not in message and len(message) < 600
    assert FAKE_KEY not in message
    assert outcome["grew"] < RSS_BOUND, f"peak RSS grew by {outcome['grew'] / MIB:.0f} MiB"
    return str(message)


# -- reads that never end ------------------------------------------------------------------------


def test_an_sse_line_that_never_ends_stops_at_the_cap_derived_from_the_request() -> None:
    offer = Offer(200, SSE, endless(b"data: "))
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url))
    message = assert_bounded(
        outcome, "ResponseTooLargeError", "the stream", "MiB cap", "an image of 64x64",
        "%config MeshImageMagics.max_response_mb",
    )  # fmt: skip
    assert "request" not in message or FAKE_KEY not in message
    assert offer.sent < 256 * MIB  # the client hung up long before the 1 GiB


def test_the_cap_grows_with_what_was_asked_and_with_the_setting() -> None:
    offer = Offer(200, SSE, endless(b"data: "))
    with ScriptedServer({GENERATIONS: offer}) as api:
        asked = run_client(spec_for(api.url, {"n": 2, "size": "512x512", "partial_images": 1}))
        message = assert_bounded(asked, "ResponseTooLargeError", "2 images of 512x512, 1 preview")
        assert "26 MiB cap" in message  # 2 images x 2 frames x 512*512*4*4/3 x 2 + 16 MiB
        raised = run_client(spec_for(api.url, max_response_mb=40))
        assert_bounded(raised, "ResponseTooLargeError", "40 MiB cap", "max_response_mb = 40")


def test_a_gzip_bomb_is_capped_by_its_inflated_size() -> None:
    offer = Offer(200, {**SSE, "content-encoding": "gzip"}, gzipped(endless(b"data: ", b"\0")))
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url))
    assert_bounded(outcome, "ResponseTooLargeError", "the stream", "MiB cap", "max_response_mb")
    assert offer.sent < 1 * MIB  # small on the wire: what counted was the inflated size


def test_a_huge_json_answer_is_capped() -> None:
    offer = Offer(200, JSON, endless(b'{"data": [{"b64_json": "'))
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url, {"stream": False}))
    assert_bounded(outcome, "ResponseTooLargeError", "the response", "MiB cap", "max_response_mb")


def test_a_huge_error_envelope_is_read_only_as_far_as_a_message_needs() -> None:
    envelope = gzipped(endless(b'{"error": {"code": "x", "message": "'))
    offer = Offer(400, {**JSON, "content-encoding": "gzip"}, envelope)
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url))
    assert_bounded(outcome, "BadRequestError", "AAAA")  # the page's first words, clipped


def test_a_huge_model_list_hits_its_small_fixed_cap() -> None:
    offer = Offer(200, JSON, endless(b'{"data": [{"id": "'))
    with ScriptedServer({"/v1/models": offer}) as api:
        outcome = run_client(spec_for(api.url, kind="models"))
    assert_bounded(outcome, "ResponseTooLargeError", "the model list", "8.0 MiB cap", "fixed")


# -- time --------------------------------------------------------------------------------------


def test_a_trickle_that_never_completes_an_event_hits_the_idle_deadline() -> None:
    trickle = b'data: {"status": "' + b"A" * 10_000
    offer = Offer(200, SSE, (bytes([byte]) for byte in trickle), pace=0.2)
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url, idle_timeout=1.0, read_timeout=30.0))
        offer.stopping.set()
    assert_bounded(
        outcome, "TransportError", "no event for 1 s (idle_timeout)",
        "%config MeshImageMagics.idle_timeout",
    )  # fmt: skip
    assert 3 <= offer.sent < 60  # bytes kept coming (each within the read timeout)


def test_pings_keep_a_stream_alive_until_the_total_deadline() -> None:
    pings = (b": ping\n\n" for _ in range(10_000))
    offer = Offer(200, SSE, pings, pace=0.2)
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url, idle_timeout=1.0, total_timeout=2.5))
        offer.stopping.set()
    assert_bounded(
        outcome, "GenerationTimeout", "longer than 2.5 s (total_timeout)",
        "%config MeshImageMagics.total_timeout",
    )  # fmt: skip
    assert offer.sent >= 8 * len(b": ping\n\n")  # alive past the idle deadline, twice over


# -- frames of the wrong type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b'data: {"status": []}\n\n', "'status' is a list, not text"),
        (b'data: {"status": "completed", "data": "x"}\n\n', "'data' is text, not a list"),
        (b'data: {"status": {"a": 1}}\n\n', "'status' is an object"),
        (b'data: {"usage": 5, "data": []}\n\n', "'usage' is a number"),
        (b'data: {"partial_image_index": true}\n\n', "'partial_image_index' is true/false"),
        (b'data: {"type": 7}\n\n', "'type' is a number"),
        (b"data: " + b"[" * 100_000 + b"\n\n", "malformed frame"),
    ],
)
def test_a_frame_of_the_wrong_type_is_one_line(frame: bytes, words: str) -> None:
    offer = Offer(200, SSE, iter([frame, b"data: [DONE]\n\n"]))
    with ScriptedServer({GENERATIONS: offer}) as api:
        outcome = run_client(spec_for(api.url))
    assert_bounded(outcome, "StreamError", words, "(request ")


# -- image URLs ----------------------------------------------------------------------------


def image_answer(url: str) -> Offer:
    final = sse_frame({"status": "completed", "data": [{"url": url}]})
    return Offer(200, SSE, iter([final, b"data: [DONE]\n\n"]))


def test_an_image_on_loopback_is_not_fetched_for_an_api_that_is_not() -> None:
    image = Offer(200, {"content-type": "image/png"}, endless(b"\x89PNG\r\n\x1a\n"))
    with ScriptedServer({"/img.png": image}) as host:
        for url in (f"{host.url}/img.png", f"http://localhost:{host.port}/img.png"):
            with ScriptedServer({GENERATIONS: image_answer(url)}) as api:
                spec = spec_for(f"http://{FAKE_API}", allow_insecure_http=True)
                spec["route"] = {FAKE_API: api.port}
                outcome = run_client(spec)
            assert_bounded(
                outcome, "ImageDecodeError", "not fetched", "a loopback address",
                "closer than the API",
            )  # fmt: skip
    assert host.paths() == []  # no request ever reached it


@pytest.mark.parametrize("declared", [False, True])
def test_a_fetched_image_over_the_cap_is_refused(declared: bool) -> None:
    headers = {"content-type": "image/png"}
    if declared:  # a Content-Length over the cap fails before the first byte
        headers = {**headers, "content-length": str(GIB)}
    image = Offer(200, headers, endless(b"\x89PNG\r\n\x1a\n"))
    with ScriptedServer({"/img.png": image}) as host, ScriptedServer({}) as api:
        api.routes[GENERATIONS] = image_answer(f"{host.url}/img.png")
        outcome = run_client(spec_for(api.url))
    assert_bounded(
        outcome, "ImageDecodeError", "image 1 of 1 on 127.0.0.1", "MiB cap",
        "%config MeshImageMagics.max_response_mb",
    )  # fmt: skip
    assert host.paths() == ["/img.png"]


def test_an_image_on_loopback_is_fetched_for_an_api_on_loopback() -> None:
    picture = png_bytes()
    image = Offer(200, {"content-type": "image/png"}, iter([picture]))
    with ScriptedServer({"/img.png": image}) as host:
        final = sse_frame({"status": "completed", "data": [{"url": f"{host.url}/img.png"}]})
        answer = Offer(200, SSE, iter([final, b"data: [DONE]\n\n"]))
        with ScriptedServer({GENERATIONS: answer}) as api:
            outcome = run_client(spec_for(api.url))
    assert outcome["class"] is None and outcome["images"] == [len(picture)]


def test_where_an_address_is() -> None:
    assert place_of("127.0.0.1") is place_of("::1") is place_of("localhost") is Place.LOOPBACK
    assert place_of("::ffff:127.0.0.1") is Place.LOOPBACK
    for private in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "fd00::1", "0.0.0.0"):
        assert place_of(private) is Place.PRIVATE, private
    assert place_of("8.8.8.8") is place_of("api.meshapi.ai") is Place.PUBLIC


def test_a_name_is_resolved_and_checked_before_connecting() -> None:
    async def connect() -> None:
        guard = Nearest(httpcore.AnyIOBackend(), Place.PRIVATE)
        await guard.connect_tcp("localhost", 9, timeout=5)

    with pytest.raises(AddressRefused, match="loopback"):
        asyncio.run(connect())


# -- memory itself ---------------------------------------------------------------------------


def test_running_out_of_memory_is_one_line() -> None:
    offer = Offer(200, SSE, endless(b"data: "))
    with ScriptedServer({GENERATIONS: offer}) as api:
        spec = spec_for(api.url, max_response_mb=2000)
        spec["memory_limit"] = 200 * MIB  # above what the child holds now
        outcome = run_client(spec)
    assert outcome["class"] == "ResponseTooLargeError", outcome
    assert "did not fit in memory" in outcome["message"]
    assert len(outcome["rendered"]) == 1


# -- the child -------------------------------------------------------------------------------


def _routed_transport(routes: dict[str, int]) -> httpx.AsyncHTTPTransport:
    """A transport that connects a name in ROUTES to 127.0.0.1:PORT, as DNS would."""

    class Routed(httpcore.AnyIOBackend):
        async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> Any:
            if host in routes:
                host, port = "127.0.0.1", routes[host]
            return await super().connect_tcp(host, port, **kwargs)

    transport = httpx.AsyncHTTPTransport()
    transport._pool._network_backend = Routed()  # type: ignore[attr-defined]
    return transport


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    from bench.memory import maxrss, reset_peak, rss
    from mesh_magics.errors import MeshError
    from mesh_magics.events import Completed
    from mesh_magics.http.client import MeshClient
    from mesh_magics.request import ImageRequest
    from mesh_magics.settings import ClientSettings, Secret

    values = {"read_timeout": 30.0, "max_retries": 0, **spec["settings"]}
    settings = ClientSettings(base_url=spec["url"], api_key=Secret(FAKE_KEY), **values)
    images: list[int] = []

    async def run() -> None:
        transport = _routed_transport(spec["route"]) if "route" in spec else None
        async with MeshClient(settings, transport=transport) as client:
            if spec["kind"] == "models":
                await client.list_models()
                return
            async for event in client.generate(ImageRequest(spec["body"])):
                if isinstance(event, Completed):
                    images.extend(len(image.data) for image in event.images)

    from PIL import Image  # noqa: F401  (imported before the peak is reset, as a kernel has)

    gc.collect()
    measured = reset_peak()
    before = rss("VmRSS") if measured else maxrss()
    if "memory_limit" in spec:
        limit = rss("VmRSS") + spec["memory_limit"]
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    outcome: dict[str, Any] = {"class": None, "message": "", "rendered": [], "images": images}
    try:
        asyncio.run(run())
    except MeshError as exc:
        outcome.update(
            {"class": type(exc).__name__, "message": str(exc), "rendered": exc._render_traceback_()}
        )
    outcome["grew"] = (rss("VmHWM") if measured else maxrss()) - before
    return outcome


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
