"""Counting generation requests: how many run at once, and 429s scheduled by number.

A generation counts as in flight from the moment its body has been read until the last
part of its answer starts going out (or the client hangs up, or the server stops). It
stops counting *before* that last part is written, so by the time a client holds its
whole answer the request no longer counts: a client that keeps at most k requests open
never makes ``max_in_flight`` exceed k, however fast it sends the next one.
"""

from __future__ import annotations

import threading

MAX_GENERATIONS = 4  # generations working at once: each may hold MAX_REQUEST_PIXELS


class Traffic:
    """In-flight generations, their peak, their number, and the 429s scheduled by number."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._max_in_flight = 0
        self._sequence = 0  # generation requests ever begun; never reset
        self._base = 0  # _sequence at the last reset
        self._rate_limits: dict[int, str] = {}  # sequence number -> Retry-After value

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._changed:
            return self._max_in_flight

    @property
    def count(self) -> int:
        """Generation requests begun since the start or the last ``reset``."""
        with self._changed:
            return self._sequence - self._base

    def begin(self) -> str | None:
        """One more generation in flight; the Retry-After of a 429 scheduled for it, or None."""
        with self._changed:
            self._sequence += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._changed.notify_all()
            return self._rate_limits.pop(self._sequence, None)

    def end(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def reset(self) -> None:
        """Start counting again: the peak becomes what is in flight now, the count zero."""
        with self._changed:
            self._max_in_flight = self._in_flight
            self._base = self._sequence

    def rate_limit_on(self, n: int, retry_after: str) -> int:
        """Schedule a 429 for the Nth generation from now; return its number in ``count``."""
        with self._changed:
            target = self._sequence + n
            self._rate_limits[target] = retry_after
            return target - self._base

    def pending_rate_limits(self) -> list[int]:
        """How many generations from now each scheduled 429 is (1: the next one)."""
        with self._changed:
            return sorted(target - self._sequence for target in self._rate_limits)

    def clear_rate_limits(self) -> None:
        with self._changed:
            self._rate_limits.clear()

    def wait(self, *, in_flight: int, timeout: float) -> bool:
        """True once exactly IN_FLIGHT generations are in flight (within TIMEOUT seconds)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == in_flight, timeout)


class Slots:
    """At most ``limit`` generations work at once (spend their latency, draw their
    pictures); the others wait their turn, so the backend's memory and CPU stay bounded
    however many requests arrive together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._working = 0
        self._max_working = 0

    def take(self) -> bool:
        """Take a slot if one is free; False if every slot is taken."""
        with self._lock:
            if self._working >= self.limit:
                return False
            self._working += 1
            self._max_working = max(self._max_working, self._working)
            return True

    def give_back(self) -> None:
        with self._lock:
            self._working -= 1

    @property
    def working(self) -> int:
        with self._lock:
            return self._working

    @property
    def max_working(self) -> int:
        with self._lock:
            return self._max_working

    def reset(self) -> None:
        with self._lock:
            self._max_working = self._working
