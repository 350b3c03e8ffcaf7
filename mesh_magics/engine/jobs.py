"""The background runs of this process: `%mesh jobs` lists them, `--wait` waits.

Running ones are kept until they end; of the ended ones, the latest `KEEP` stay listed.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING

from ..errors import WaitInterrupted
from ..results.row_table import RowTable
from ..wording import plural

if TYPE_CHECKING:
    from .generation import Generation

KEEP = 20
POLL_SECONDS = 0.1


class Jobs:
    def __init__(self) -> None:
        self._runs: collections.deque[Generation] = collections.deque()
        self._lock = threading.Lock()

    def add(self, run: Generation) -> None:
        with self._lock:
            self._runs.append(run)
            ended = [r for r in self._runs if r.done()]
            for old in ended[: max(0, len(ended) - KEEP)]:
                self._runs.remove(old)

    def all(self) -> list[Generation]:
        with self._lock:
            return list(self._runs)

    def running(self) -> list[Generation]:
        return [run for run in self.all() if not run.done()]

    def wait(self, timeout: float | None = None) -> list[Generation]:
        """Wait for every running run; the ones still running when `timeout` passed.
        A `KeyboardInterrupt` stops the wait, not the runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while (running := self.running()) and (deadline is None or time.monotonic() < deadline):
                running[0].wait(POLL_SECONDS)
        except KeyboardInterrupt:
            left = len(self.running())
            raise WaitInterrupted(
                f"stopped waiting; {plural(left, 'background run')} still going (see %mesh jobs)"
            ) from None
        return self.running()


_jobs = Jobs()


def jobs() -> Jobs:
    return _jobs


class JobList(RowTable["Generation"]):
    """Background runs as a table: heading, status, elapsed, request id."""

    columns = ("run", "status", "elapsed", "request")
    empty = "no background runs"

    def rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for run in self:
            request_id = run.result().request_id if run.status == "done" else ""
            rows.append((run.heading, run.status, f"{run.elapsed:.1f} s", request_id or ""))
        return rows
