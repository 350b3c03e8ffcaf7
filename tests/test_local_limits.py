"""The embedded backend trusts no one outside this machine, and its work has bounds.

A web page the user visits can reach a loopback server: by DNS rebinding (a foreign
`Host`) or by a cross-origin "simple" request (an `Origin`, a `text/plain` body). Any
client can ask for too many pixels, too many generations at once, or open connections
and never finish a request. Each is tried here over real loopback HTTP.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from meshapi import ImageGenerationParams, MeshAPI, MeshAPIError

from mesh_magics import errors
from mesh_magics.local import LocalServer

from .support import GENERATIONS, run_cell, settled

FOX = {"prompt": "a fox", "size": "64x64"}


def post(server: LocalServer, body: Any = FOX, **headers: str) -> httpx.Response:
    return httpx.post(server.url + GENERATIONS, json=body, headers=headers, timeout=10)


def error_of(answer: httpx.Response) -> dict[str, Any]:
    envelope = answer.json()
    assert envelope["request_id"].startswith("req_")
    return dict(envelope["error"])


# -- hosts, origins and content types ---------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io"])
def test_a_foreign_host_is_refused_and_nothing_is_made(server: LocalServer, host: str) -> None:
    answer = post(server, Host=host.format(port=server.port))
    assert answer.status_code == 403 and error_of(answer)["code"] == "forbidden_host"
    models = httpx.get(server.url + "/v1/models", headers={"Host": "evil.example"})
    assert models.status_code == 403  # a rebinding page cannot read anything either
    assert server.generation_count == 0
    assert [r.status for r in server.requests] == [403, 403]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:1"])
def test_loopback_hosts_are_served(server: LocalServer, host: str) -> None:
    assert post(server, Host=host.format(port=server.port)).status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:8888", "https://127.0.0.1:{port}"]
)
def test_a_cross_origin_request_is_refused(server: LocalServer, origin: str) -> None:
    answer = post(server, Origin=origin.format(port=server.port))
    assert answer.status_code == 403 and error_of(answer)["code"] == "forbidden_origin"
    assert server.generation_count == 0


def test_a_same_origin_request_is_served(server: LocalServer) -> None:
    assert post(server, Origin=f"http://127.0.0.1:{server.port}").status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"],
)
def test_a_simple_request_body_is_refused(server: LocalServer, content_type: str) -> None:
    """What a page can send cross-origin without a preflight: never taken as an API call."""
    answer = httpx.post(
        server.url + GENERATIONS,
        content=json.dumps(FOX),
        headers={"Content-Type": content_type},
    )
    assert answer.status_code == 415 and error_of(answer)["code"] == "unsupported_media_type"
    assert server.generation_count == 0


def test_a_server_on_all_interfaces_takes_ip_hosts_but_no_names() -> None:
    with LocalServer("0.0.0.0", ping_interval=0.1) as server:
        assert post(server, Host=f"192.0.2.7:{server.port}").status_code == 200
        assert post(server, Host=f"evil.example:{server.port}").status_code == 403


# -- pixels per request ----------------------------------------------------------------------


def test_too_many_pixels_is_one_validation_error(server: LocalServer) -> None:
    server.max_pixels = 100_000
    answer = post(server, {"prompt": "a fox", "size": "256x256", "n": 2})
    assert answer.status_code == 400
    error = error_of(answer)
    assert error == {
        "code": "invalid_request",
        "message": "n × width × height is 131,072 pixels (2 × 256x256); this backend makes "
        "at most 100,000 per request",
    }
    assert post(server, {"prompt": "a fox", "size": "256x256"}).status_code == 200


def test_the_default_cap_refuses_ten_of_the_largest(server: LocalServer) -> None:
    answer = post(server, {"prompt": "a fox", "size": "4096x4096", "n": 10})
    assert answer.status_code == 400 and "167,772,160 pixels" in error_of(answer)["message"]


def test_the_sdk_reads_the_pixel_cap(server: LocalServer) -> None:
    server.max_pixels = 100_000
    sdk = MeshAPI(base_url=server.url, token="rsk_x_sdk", timeout=10, max_retries=0)
    with sdk, pytest.raises(MeshAPIError) as caught:
        sdk.images.generate(ImageGenerationParams(prompt="a fox", size="256x256", n=2))
    assert (caught.value.status, caught.value.error_code) == (400, "invalid_request")
    assert "100,000 per request" in str(caught.value)


def test_the_magic_shows_the_pixel_cap_in_one_line(
    ip: InteractiveShell, server: LocalServer
) -> None:
    server.max_pixels = 100_000
    run = run_cell(ip, "%%meshimage -o t_cap -n 2 --size 256x256\nA fox")
    assert isinstance(run.error, errors.MeshError), run.error
    assert "\n" not in str(run.error) and "pixels" in str(run.error)
    assert server.generation_count == 1


# -- concurrent work ------------------------------------------------------------------------


@contextmanager
def held(server: LocalServer, **fields: Any) -> Iterator[socket.socket]:
    """A streamed generation sent over a bare socket and left unread, hung up on exit."""
    payload = json.dumps({**FOX, "stream": True, **fields}).encode()
    head = (
        f"POST {GENERATIONS} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + payload)
        yield sock


def test_no_more_generations_work_at_once_than_the_cap() -> None:
    with LocalServer(latency=60, ping_interval=0.05, max_generations=2) as server:
        with ExitStack() as stack:
            for _ in range(5):  # N + 3
                stack.enter_context(held(server))
            assert server.wait_for_in_flight(5, 10)  # all five arrived: two work, three wait
            assert settled(lambda: server.working == 2, timeout=10.0)
            assert server.working == 2 and server.max_working == 2
        assert server.wait_until_idle(10)  # hung up: the slots are given back
        assert settled(lambda: server.working == 0, timeout=10.0)
        server.latency = 0.2
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: post(server), range(5)))
        assert [a.status_code for a in answers] == [200] * 5  # the waiting ones are served
        assert server.max_working == 2


# -- connections ----------------------------------------------------------------------------


def half_request(server: LocalServer) -> socket.socket:
    """A slowloris client: half a request line, then nothing."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /v1/images/gener")
    return sock


def closed_by_server(sock: socket.socket) -> bytes:
    """What the server sent before it closed SOCK (raises if it stays open 10 s)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_slowloris_client_is_cut_off_after_the_read_timeout() -> None:
    with LocalServer(read_timeout=0.3) as server:
        began = time.monotonic()
        with half_request(server) as sock:
            assert closed_by_server(sock) == b""
        assert time.monotonic() - began >= 0.25
        assert settled(lambda: server.open_connections == 0, timeout=10.0)


def test_half_sent_requests_make_room_for_a_real_client() -> None:
    with LocalServer(max_connections=3) as server:
        slow = [half_request(server) for _ in range(6)]  # twice the cap, never finished
        try:
            assert post(server).status_code == 200  # a new client is served all the same
            assert server.connections_evicted >= 4
            assert settled(lambda: server.open_connections <= 3, timeout=10.0)
            for sock in slow[:4]:
                assert closed_by_server(sock) == b""  # the oldest made room
        finally:
            for sock in slow:
                sock.close()


def test_beyond_the_cap_of_busy_connections_a_new_one_is_refused() -> None:
    with LocalServer(latency=60, ping_interval=0.05, max_connections=2) as server:
        with held(server), held(server):
            assert server.wait_for_in_flight(2, 10)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
                answer = closed_by_server(extra)
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b'"code": "unavailable"' in answer and b"Retry-After: 1" in answer
            assert server.connections_refused == 1
        assert server.wait_until_idle(10)
        server.latency = 0
        assert post(server).status_code == 200


def test_the_limits_are_checked_when_set() -> None:
    server = LocalServer()
    for name, bad in [
        ("max_pixels", 0),
        ("max_generations", 0),
        ("max_connections", -1),
        ("read_timeout", 0),
        ("read_timeout", float("nan")),
    ]:
        with pytest.raises(ValueError, match=name):
            setattr(server, name, bad)
