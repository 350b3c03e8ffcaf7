"""Interrupting a generation at every stage stops it at once and leaves nothing behind:
no worker thread, no open connection, nothing bound, and the shell keeps working."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics.errors import GenerationCancelled
from mesh_magics.http import client as client_module
from mesh_magics.local import LocalServer

from .servers import ScriptedServer, b64, png_bytes, send_sse, silent_listener, sse_frame
from .support import (
    CANCEL_BOUND_SECONDS,
    interrupt_when,
    open_sockets,
    received_after,
    run_cell,
    settled,
    worker_threads,
)


def cancelled_cleanly(
    ip: InteractiveShell, cell: str, ready: Callable[[], bool], delay: float = 0.0
) -> None:
    sockets_before = open_sockets()
    interrupter = interrupt_when(ready, delay)
    run = run_cell(ip, cell)
    returned = time.monotonic()
    sent_at = interrupter.finished()
    assert sent_at is not None, f"the cell ended before it could be interrupted: {run.error!r}"
    assert isinstance(run.error, GenerationCancelled), repr(run.error)
    assert returned - sent_at < CANCEL_BOUND_SECONDS, f"returned {returned - sent_at:.1f} s late"
    assert "t_cancel" not in ip.user_ns
    assert settled(lambda: not worker_threads(), timeout=5), "the worker is still running"
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5), (
        "a connection was left open"
    )
    assert run_cell(ip, "6 * 7").result == 42


def connected(sockets_before: int) -> Callable[[], bool]:
    """The client's socket and the listener's end of it are open: the TCP connection is
    made and the client waits in its TLS handshake."""
    return lambda: open_sockets() >= sockets_before + 2


def test_while_connecting(ip: InteractiveShell) -> None:
    with silent_listener() as url:  # TCP accepted, TLS handshake never answered
        cell = f"%%meshimage -o t_cancel --base-url {url}\nfox"
        cancelled_cleanly(ip, cell, connected(open_sockets()))


def test_while_waiting_for_the_image(ip: InteractiveShell, server: LocalServer) -> None:
    server.latency = 30
    cancelled_cleanly(
        ip, "%%meshimage -o t_cancel --size 64x64\nfox", lambda: server.request_count > 0
    )
    assert server.wait_for_disconnect(5)


def test_in_the_middle_of_a_frame(ip: InteractiveShell) -> None:
    processing = sse_frame({"object": "image.chunk", "status": "processing", "data": []})
    half = sse_frame({"object": "image.chunk", "data": [{"b64_json": b64(png_bytes())}]})[:60]
    with ScriptedServer({}) as api:
        api.routes["/v1/images/generations"] = send_sse(processing, half, then="stall")
        # Once the server has the request it sends the two frames at once; 0.1 s later
        # the client holds half a frame (were it earlier, the run is cancelled anyway).
        cancelled_cleanly(
            ip,
            f"%%meshimage -o t_cancel --base-url {api.url}\nfox",
            lambda: bool(api.requests),
            delay=0.1,
        )


def test_while_decoding_images(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoding = threading.Event()
    real_check = client_module.check_image

    def slow_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        decoding.set()
        time.sleep(1.0)  # a big image takes a while to check (not an interrupt wait)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(client_module, "check_image", slow_check)
    cancelled_cleanly(
        ip, "%%meshimage -o t_cancel -n 10 --size 64x64\nfox", decoding.is_set, delay=0.1
    )


def test_twenty_interrupts_in_a_row_leave_nothing_behind(
    ip: InteractiveShell, server: LocalServer
) -> None:
    server.latency = 30
    threads_before = threading.active_count()
    sockets_before = open_sockets()
    for attempt in range(20):
        # At a few points after the server has this attempt's request.
        interrupter = interrupt_when(received_after(server), delay=0.02 * (attempt % 5))
        run = run_cell(ip, "%%meshimage -o t_cancel --size 64x64\nfox")
        assert interrupter.finished() is not None, (attempt, repr(run.error))
        assert isinstance(run.error, GenerationCancelled), (attempt, repr(run.error))
    assert settled(lambda: server.disconnects >= 20, timeout=5), server.disconnects
    assert settled(lambda: threading.active_count() <= threads_before, timeout=5)
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5)
    assert "t_cancel" not in ip.user_ns
