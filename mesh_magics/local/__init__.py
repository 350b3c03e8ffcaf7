"""The embedded backend: a MeshAPI-compatible image server on loopback.

No network, no key: procedural pictures drawn on this machine, with the same
endpoints, JSON shapes, SSE sequence and error envelopes as the real service,
and faults on demand (see ``faults.py``) so every path can be exercised.

    with LocalServer(latency=0.5, ping_interval=0.1) as server:
        httpx.post(server.url + "/v1/images/generations", json={"prompt": "a fox"})

A request may carry ``"mesh_local": {"latency": 2, "ping_interval": 0.5,
"fault": "status:429", "times": 1, "retry_after": "3"}`` to override the server's
settings for itself; ``times`` limits the fault to the first attempts of the same
request (the same body, and the same ``X-Request-Id`` if one is sent), so a retried
request can succeed.

For clients that send many generations at once, the server counts them
(``in_flight``, ``max_in_flight``, ``generation_count``), takes a latency per model
(``model_latency``), and answers 429 on the Nth one from now (``rate_limit_on(n)``);
each logged request has its arrival time ``at`` and its answer's ``status``.

OpenAI's Batch API is there too (``/v1/files``, ``/v1/batches``): a background worker
answers each line as a plain generation would (``batches.py``); ``batch_latency`` and
``batch_endpoints`` shape it, and ``wait_for_batch()`` lets a test wait for one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import LOCAL_TOKEN, is_serving

if TYPE_CHECKING:
    from .catalogue import MODELS
    from .recording import RecordedRequest
    from .server import LocalServer, ensure_local_server

__all__ = [
    "LOCAL_TOKEN",
    "MODELS",
    "LocalServer",
    "RecordedRequest",
    "ensure_local_server",
    "is_serving",
]

_HOMES = {
    "MODELS": ".catalogue",
    "LocalServer": ".server",
    "RecordedRequest": ".recording",
    "ensure_local_server": ".server",
}


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. from the magic) must not pay for the server.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
