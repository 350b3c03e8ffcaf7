"""Every connection a client opened, so that it can be closed for sure when the run ends.

httpcore closes a socket on `Exception` only: a run cancelled in the middle of a TLS
handshake (a kernel interrupt while connecting) would leave its socket open until the
garbage collector found it. The runs share one event loop (`run/engine.py`), so closing
"every transport of the loop" is not an option: each client closes what it opened.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class OpenConnections(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, remembering each stream it opens."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend
        self._streams: weakref.WeakSet[httpcore.AsyncNetworkStream] = weakref.WeakSet()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        self._streams.add(stream)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        self._streams.add(stream)
        return stream

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)

    async def aclose(self) -> None:
        """Close every stream still open (closing a closed one does nothing)."""
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                await stream.aclose()


def tracked_transport(verify: Any) -> tuple[httpx.AsyncHTTPTransport, OpenConnections | None]:
    """An httpx transport whose connections are tracked; None when httpx's internals have
    changed shape (then only httpcore's own cleanup applies)."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        return transport, None
    connections = OpenConnections(backend)
    pool._network_backend = connections  # type: ignore[union-attr]
    return transport, connections
