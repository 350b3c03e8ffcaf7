"""Pacing per API host, shared by every run of the process (they share one event loop).

When the API answers 429 with `Retry-After`, it speaks for the host, not for the one
request: every run to that host waits until then before sending anything, instead of a
sweep's other runs hitting the limit one by one (a retry storm). A sweep's `--concurrency`
is a separate limit on the runs in flight (`run/sweep.py`).
"""

from __future__ import annotations

import asyncio
import time

from ..hosts import host_of


class HostGate:
    """Holds back new requests to one host until a pause has passed."""

    def __init__(self) -> None:
        self._paused_until = 0.0  # time.monotonic() seconds

    def pause(self, seconds: float) -> None:
        """Send nothing more to this host for `seconds` (a longer pause wins)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    @property
    def remaining(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    async def ready(self) -> None:
        """Return once the host may be sent a request."""
        while (delay := self.remaining) > 0:
            await asyncio.sleep(delay)


_gates: dict[str, HostGate] = {}


def gate_for(base_url: str) -> HostGate:
    return _gates.setdefault(host_of(base_url), HostGate())
