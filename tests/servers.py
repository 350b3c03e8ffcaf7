"""A loopback HTTP server scripted per path, down to the bytes, for faults the embedded
backend does not make: foreign image hosts, redirects, half frames that then stall,
TLS with a self-signed certificate, handshakes that never finish."""

from __future__ import annotations

import base64
import json
import select
import selectors
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mesh_magics.local import LocalServer

Route = Callable[[BaseHTTPRequestHandler], None]


class Alarm:
    """A stop signal that `select` waits on beside sockets: once rung, it stays readable,
    so every loop waiting on it wakes at once (none polls)."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self.rung = threading.Event()

    def ring(self) -> None:
        if not self.rung.is_set():
            self.rung.set()
            self._write.send(b"!")

    def fileno(self) -> int:
        return self._read.fileno()

    def close(self) -> None:
        self._read.close()
        self._write.close()


class ScriptedServer:
    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, ssl.SSLError, OSError):
                    self.close_connection = True

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                route = server.routes.get(self.path.split("?")[0])
                if not getattr(route, "reads_body", False):
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                self._serve()

            def _serve(self) -> None:
                path = self.path.split("?")[0]
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        if tls is not None:
            self._http.socket = tls.wrap_socket(self._http.socket, server_side=True)
        self.port = self._http.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._alarm = Alarm()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._alarm.ring()
        self._thread.join(5)
        with self._lock:
            for connection in self._connections:  # a stalled route sees its client go
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._http.server_close()
        self._alarm.close()

    def _serve(self) -> None:
        """Accept connections until `__exit__` rings the alarm (no poll interval)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._http.socket, selectors.EVENT_READ)
            selector.register(self._alarm, selectors.EVENT_READ)
            while not self._alarm.rung.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._http.socket:
                        self._http.handle_request()  # a connection waits: no blocking

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


# -- routes --------------------------------------------------------------------------------


def send_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    body = json.dumps(payload).encode()
    return send_bytes(body, status, {"content-type": "application/json", **(headers or {})})


def send_bytes(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return send_bytes(b"", status, {"location": location})


def in_turn(*routes: Route) -> Route:
    """The first request gets the first route, the next the next; the last one repeats."""
    served: list[None] = []
    lock = threading.Lock()

    def route(handler: BaseHTTPRequestHandler) -> None:
        with lock:
            turn = min(len(served), len(routes) - 1)
            served.append(None)
        routes[turn](handler)

    return route


def reads_body(route: Route) -> Route:
    """Mark `route` as one that reads the request body itself (or never does)."""
    route.reads_body = True  # type: ignore[attr-defined]
    return route


def read_then_hang_up(nbytes: int) -> Route:
    """Read the first `nbytes` of the body, then close the connection without a word."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(nbytes)
        hang_up(handler)

    return reads_body(route)


def answer_unread(status: int, payload: Any) -> Route:
    """Answer at once, reading none of the body, and close: what a proxy does with a body
    over its limit (a 413). The unread body makes the close a reset."""
    answer = send_json(payload, status, {"connection": "close"})

    def route(handler: BaseHTTPRequestHandler) -> None:
        answer(handler)
        handler.wfile.flush()
        hang_up(handler)

    return reads_body(route)


def lying_length(
    body: bytes, claimed: int, status: int = 200, headers: dict[str, str] | None = None
) -> Route:
    """Say the body is `claimed` bytes long, send `body`, and hang up."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {"content-type": "application/json"}).items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(claimed))
        handler.end_headers()
        handler.wfile.write(body)
        hang_up(handler)

    return route


def hang_up(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection now, without shutting it down politely."""
    handler.close_connection = True
    handler.connection.close()


def echoing(make: Callable[[str], Route]) -> Route:
    """A route made from the request's `Authorization` value, as a server that echoes
    what it was sent makes its answers."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        make(handler.headers.get("authorization", ""))(handler)

    return route


def send_sse(*frames: bytes, then: str = "end", headers: dict[str, str] | None = None) -> Route:
    """Each of `frames` as one HTTP chunk; then `end` the body, or `stall` until the client
    hangs up (or the server stops)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        for frame in frames:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            handler.wfile.flush()
        if then == "end":
            handler.wfile.write(b"0\r\n\r\n")
        else:
            wait_for_hang_up(handler.connection)
        handler.close_connection = True

    return route


def wait_for_hang_up(connection: socket.socket, timeout: float = 30.0) -> None:
    """Say nothing until the client closes the connection, or the server stops (it shuts
    down every connection it has), or `timeout` passes. What the client sends is read and
    dropped."""
    while select.select([connection], [], [], timeout)[0]:
        try:
            if not connection.recv(65536):
                return
        except OSError:
            return


def sse_frame(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- TLS -----------------------------------------------------------------------------------


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (made by the openssl CLI)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextmanager
def silent_listener() -> Iterator[str]:
    """A port that accepts TCP connections and never says a word (a hung TLS handshake).

    It reads and drops what clients send, and closes its side when a client hangs up, so
    a test can count the sockets left open."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    connections: list[socket.socket] = []
    alarm = Alarm()

    def serve() -> None:
        while True:
            readable, _, _ = select.select([listener, alarm, *connections], [], [])
            if alarm in readable:
                return
            for sock in readable:
                if sock is listener:
                    connections.append(listener.accept()[0])
                elif not sock.recv(4096):
                    connections.remove(sock)
                    sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        alarm.ring()
        thread.join(2)
        for conn in connections:
            conn.close()
        listener.close()
        alarm.close()


# -- servers that echo secrets ---------------------------------------------------------------


def echo_faults(credentials: str) -> dict[str, Route]:
    """Every way of failing (and one success), each echoing what a careless server or
    proxy echoes: the `Authorization` value it was sent, and URL `credentials` (as from a
    log of the URL), in messages, details, request ids, headers, frames, pages and URLs."""

    def say(auth: str) -> str:
        return f"you sent '{auth}' to https://{credentials}@gateway.example/v1 as {credentials}"

    def envelope(status: int, **extra: Any) -> Route:
        def make(auth: str) -> Route:
            error = {"code": "echo", "message": say(auth), **extra}
            if "details" in error:
                error["details"] = [{"loc": ["body", "prompt"], "msg": say(auth)}, say(auth)]
            headers = {"x-request-id": auth, "x-echo": say(auth), "retry-after": "0"}
            return send_json({"error": error, "request_id": auth}, status, headers)

        return echoing(make)

    def page(status: int, content_type: str) -> Route:
        def make(auth: str) -> Route:
            text = f"<html><head><title>{say(auth)}</title></head><body>{say(auth)}</body></html>"
            headers = {"content-type": content_type, "x-request-id": auth, "retry-after": "0"}
            return send_bytes(text.encode(), status, headers)

        return echoing(make)

    def stream(*frames: Callable[[str], bytes]) -> Route:
        return echoing(
            lambda auth: send_sse(
                *(frame(auth) for frame in frames), headers={"x-request-id": auth}
            )
        )

    def result(auth: str) -> bytes:
        image = {"b64_json": b64(png_bytes()), "revised_prompt": say(auth)}
        final = {"object": "image.chunk", "created": 1, "status": "completed", "model": say(auth)}
        return sse_frame({**final, "data": [image], "usage": {"echo": say(auth)}})

    return {
        "401": envelope(401),
        "400 with details": envelope(400, details=True),
        "422 with details": envelope(422, details=True),
        "500": envelope(500),
        "503, retried": envelope(503, retry_after_seconds=0),
        "html 502": page(502, "text/html"),
        "text 403": page(403, "text/plain"),
        "redirect": echoing(
            lambda auth: send_bytes(
                b"", 302, {"location": f"https://{credentials}@elsewhere.example/?k={auth}"}
            )
        ),
        "not json": page(200, "application/json"),
        "error frame": stream(
            lambda auth: sse_frame({"object": "image.chunk", "created": 1, "status": say(auth)}),
            lambda auth: sse_frame({"error": {"code": "echo", "message": say(auth)}}),
        ),
        "malformed frame": stream(lambda auth: f"data: {{{say(auth)}\n\n".encode()),
        "key as the image": stream(
            lambda auth: sse_frame(
                {"status": "completed", "data": [{"b64_json": b64(auth.split()[-1].encode())}]}
            ),
            lambda auth: b"data: [DONE]\n\n",
        ),
        "success": stream(result, lambda auth: b"data: [DONE]\n\n"),
    }


# -- a relay that is not the embedded backend, to see the key delivered -----------------------


class KeyRelay:
    """A loopback relay in front of a `LocalServer`, for tests that check the real key is
    delivered: to the client it is an API like any other (not a LocalServer of this
    process), so the client sends it the key. It keeps each `Authorization` it was sent in
    `authorizations`, drops it, and forwards the rest byte for byte, one request per
    connection (it asks the backend to close after each answer)."""

    def __init__(self, upstream: LocalServer) -> None:
        self.upstream = upstream
        self.authorizations: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._alarm = Alarm()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> KeyRelay:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._alarm.ring()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        self._alarm.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while self._alarm not in select.select([self._listener, self._alarm], [], [])[0]:
            client, _ = self._listener.accept()
            self._spawn(self._relay, client)

    def _relay(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = client.recv(65536)
                if not piece:
                    return
                head += piece
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = []
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"authorization":
                    self.authorizations.append(value.strip().decode())
                elif name.strip().lower() != b"connection":
                    lines.append(line)
            lines.append(b"Connection: close")
            upstream = socket.create_connection((self.upstream.host, self.upstream.port))
            with upstream:
                upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
                _pipe(client, upstream, self._alarm)


def _pipe(client: socket.socket, upstream: socket.socket, alarm: Alarm) -> None:
    """Copy bytes both ways until either side closes (or the test ends)."""
    while True:
        readable, _, _ = select.select([client, upstream, alarm], [], [])
        if alarm in readable:
            return
        for sock in readable:
            other = upstream if sock is client else client
            try:
                data = sock.recv(65536)
                if not data:
                    return
                other.sendall(data)
            except OSError:
                return


# -- one embedded backend for a whole test module -------------------------------------------


def lent(server: LocalServer, ping_interval: float) -> Iterator[LocalServer]:
    """Lend a module's `LocalServer` to one test, then undo what a test may change."""
    yield server
    server.latency, server.ping_interval, server.fault = 0.0, ping_interval, None
    server.model_latency = {}
    server.clear_rate_limits()
