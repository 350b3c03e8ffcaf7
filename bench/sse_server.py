"""A loopback HTTP server that answers any POST with a prepared SSE body in 4 KB writes.

`POST /<name>/<framing>/<pace>/...` (see `stream_url`) answers with body `<name>` as
`text/event-stream`, with `Transfer-Encoding: chunked`, in 4096-byte socket writes
(TCP_NODELAY, so each write leaves as it is made), then closes. `<pace>` is 0 (as fast as
the reader takes it) or a link speed in MB/s. The framing says how the body is cut into
HTTP chunks:

- `chunk4k`: the body is cut into HTTP chunks of 4096 bytes, as a proxy that relays the
  stream through a small buffer sends it: the client sees ~10,000 chunks for 40 MB, and
  any per-chunk cost of its HTTP stack shows;
- `event`: every SSE event is one HTTP chunk (what an SSE server writes itself), still
  written to the socket 4096 bytes at a time.

It runs in a subprocess (`serve(bodies)`), so its Python work never competes for the GIL
with the reader being measured: a real server is on another machine.

    python -m bench.sse_server DIR    # serves DIR/<name>; prints the port, stops at EOF on stdin
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import ROOT

PIECE_BYTES = 4096
FRAMINGS = ("chunk4k", "event")  # how the body is cut into HTTP chunks: see above


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head, rest = _read_head(sock)
        if not head:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        _, path, _ = request_line.split(" ", 2)
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        _read_exactly(sock, length - len(rest))
        name, framing, pace, *_ = [*path.strip("/").split("/"), "", "", ""]
        wire = self.server.wires.get((name, framing))
        if wire is None or not pace.isdigit():
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        _send(sock, wire, bytes_per_second=int(pace) * 1_000_000)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bodies: Mapping[str, bytes]) -> None:
        # The chunked wire forms are made up front: no work between request and first byte.
        self.wires: dict[tuple[str, str], memoryview] = {}
        for name, body in bodies.items():
            self.wires[name, "chunk4k"] = memoryview(_chunked(body))
            self.wires[name, "event"] = memoryview(_chunked_events(body))
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a reader that hung up is no error
            super().handle_error(request, client_address)


def _send(sock: socket.socket, wire: memoryview, *, bytes_per_second: int) -> None:
    started = time.monotonic()
    for start in range(0, len(wire), PIECE_BYTES):
        sock.sendall(wire[start : start + PIECE_BYTES])
        if bytes_per_second:
            ahead = (start + PIECE_BYTES) / bytes_per_second - (time.monotonic() - started)
            if ahead > 0.001:  # sleep in slices of at least 1 ms: finer is not reliable
                time.sleep(ahead)


def _chunked(body: bytes) -> bytes:
    pieces = [body[i : i + PIECE_BYTES] for i in range(0, len(body), PIECE_BYTES)]
    return _frame(pieces)


def _chunked_events(body: bytes) -> bytes:
    return _frame([event + b"\n\n" for event in body.split(b"\n\n") if event])


def _frame(pieces: list[bytes]) -> bytes:
    return b"".join(b"%X\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _read_exactly(sock: socket.socket, count: int) -> None:
    while count > 0:
        chunk = sock.recv(min(count, 65536))
        if not chunk:
            return
        count -= len(chunk)


def stream_name(mib: float) -> str:
    return f"f{mib:g}"


def stream_url(server: str, mib: float, framing: str = "chunk4k", pace: int = 0) -> str:
    """The base URL that makes a client's POST read the MIB-sized stream of SERVER."""
    assert framing in FRAMINGS
    return f"{server}/{stream_name(mib)}/{framing}/{pace}"


@contextlib.contextmanager
def serve(bodies: Mapping[str, bytes]) -> Iterator[str]:
    """Serve BODIES from a subprocess; yields the base URL (`http://127.0.0.1:PORT`)."""
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as directory:
        for name, body in bodies.items():
            (Path(directory) / name).write_bytes(body)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_server", directory],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            yield f"http://127.0.0.1:{port}"
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the server stops at EOF on its stdin
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(directory: str) -> None:
    bodies = {path.name: path.read_bytes() for path in Path(directory).iterdir()}
    with _Server(bodies) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(server.server_address[1], flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)
        server.shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit(__doc__)
    main(sys.argv[1])
