"""Which ports this process serves the embedded backend on, and what clients send it.

The embedded backend takes no key, so the client sends it `LOCAL_TOKEN` instead of the
user's API key: a LocalServer started in this process registers its port here, and
`settings.client_settings` looks a loopback base URL's port up before reading the key.
Imports nothing, so the settings can ask without loading the server.
"""

from __future__ import annotations

import threading

# Not a secret: it only says "not the API key", so a request record can tell them apart.
LOCAL_TOKEN = "mesh-local-token"

_lock = threading.Lock()
_ports: dict[int, int] = {}  # port -> LocalServers of this process serving on it


def serving(port: int) -> None:
    """A LocalServer of this process listens on loopback PORT."""
    with _lock:
        _ports[port] = _ports.get(port, 0) + 1


def stopped(port: int) -> None:
    with _lock:
        left = _ports.get(port, 0) - 1
        if left > 0:
            _ports[port] = left
        else:
            _ports.pop(port, None)


def is_serving(port: int | None) -> bool:
    """True if a LocalServer of this process listens on loopback PORT."""
    with _lock:
        return port in _ports
