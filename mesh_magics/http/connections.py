"""Every connection a client opened, so that it can be closed for sure when the run ends.

httpcore closes a socket on `Exception` only: a run cancelled in the middle of a TLS
handshake (a kernel interrupt while connecting) would leave its socket open until the
garbage collector found it. The runs share one event loop (`run/engine.py`), so closing
"every transport of the loop" is not an option: each client closes what it opened.

The client that fetches image URLs also checks where it connects (`Nearest`): an image
may not live closer to this machine than the API does. A response from a remote API
cannot make the kernel fetch from loopback or the local network (a cloud's metadata
service, a router's admin page). The name is resolved here and the checked address is the
one connected to, so a DNS answer cannot change between the check and the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import socket
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


class Place(enum.IntEnum):
    """How close an address is to this machine; an image may be no closer than the API."""

    LOOPBACK = 0
    PRIVATE = 1  # the local network: private, link-local, unique-local, reserved ranges
    PUBLIC = 2


def place_of(host: str) -> Place:
    """Where an address (or `localhost`) is; any other name counts as public."""
    if host.lower().rstrip(".") == "localhost":
        return Place.LOOPBACK
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return Place.PUBLIC
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_loopback:
        return Place.LOOPBACK
    if (
        address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    ):
        return Place.PRIVATE
    return Place.PUBLIC


class AddressRefused(Exception):
    """A host resolved to an address closer than the API's: it is not connected to."""


class Nearest(OpenConnections):
    """Connects only to addresses at `nearest` or farther, resolving names itself."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, nearest: Place) -> None:
        super().__init__(backend)
        self.nearest = nearest

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise httpcore.ConnectError(f"could not resolve {host} ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            place = place_of(address)
            if place < self.nearest:
                raise AddressRefused(
                    f"{host} is at {address}, a {place.name.lower()} address, closer than the API"
                )
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await super().connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure


def tracked_transport(
    verify: Any, nearest: Place | None = None
) -> tuple[httpx.AsyncHTTPTransport, OpenConnections | None]:
    """An httpx transport whose connections are tracked (and, with `nearest`, allowed only
    to addresses that far or farther); None when httpx's internals have changed shape
    (then only httpcore's own cleanup applies, and no address can be checked)."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        if nearest is not None and nearest > Place.LOOPBACK:
            raise RuntimeError("httpx changed: image hosts cannot be checked")
        return transport, None
    connections = OpenConnections(backend) if nearest is None else Nearest(backend, nearest)
    pool._network_backend = connections  # type: ignore[union-attr]
    return transport, connections
