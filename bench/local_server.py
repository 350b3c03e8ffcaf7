"""The embedded backend (`LocalServer`) in a process of its own, for the sweep and store
benchmarks: its drawing and its HTTP threads then never compete for the measuring
process's GIL, and what is timed is the client's side.

    with ServerProcess(latency=1.0) as server:     # `python -m bench.local_server 1.0`
        server.url; server.reset_counts(); server.counts()["max_in_flight"]

The child prints its URL, then answers one line per command on stdin (`counts`: a JSON
line with `max_in_flight`, `generation_count` and `in_flight`; `reset`: `ok`); it stops
when its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import TracebackType
from typing import IO, Any

from . import ROOT

STOP_SECONDS = 10
BENCH_GENERATIONS = 32  # generations the benchmarks' server works on at once


class ServerProcess:
    """A `LocalServer(latency=...)` in a subprocess, with its counters one call away."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.local_server", repr(self.latency)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._line()
        if not self.url.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the local server did not start: {self.url!r}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()  # the child's signal to stop
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def counts(self) -> dict[str, int]:
        """The server's generation counters since the last `reset_counts()`."""
        counts: dict[str, int] = json.loads(self._ask("counts"))
        return counts

    def reset_counts(self) -> None:
        if self._ask("reset") != "ok":
            raise RuntimeError("the local server did not reset its counts")

    def _ask(self, command: str) -> str:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._line()

    def _line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout.readline().strip()


def serve(latency: float, commands: IO[str], answers: IO[str]) -> None:
    """In the child: serve until `commands` ends, answering each line on `answers`."""
    from mesh_magics.local import LocalServer

    # The server's own cap on generations at work (4, for an untrusted client) would be
    # the bottleneck of a sweep at concurrency 8: the benchmarks measure the client.
    with LocalServer(latency=latency, max_generations=BENCH_GENERATIONS) as server:
        say(answers, server.url)
        for line in commands:
            command = line.strip()
            if command == "counts":
                counts: dict[str, Any] = {
                    "max_in_flight": server.max_in_flight,
                    "generation_count": server.generation_count,
                    "in_flight": server.in_flight,
                }
                say(answers, json.dumps(counts))
            elif command == "reset":
                server.reset_counts()
                say(answers, "ok")
            else:
                say(answers, json.dumps({"error": f"unknown command {command!r}"}))


def say(answers: IO[str], text: str) -> None:
    answers.write(text + "\n")
    answers.flush()


if __name__ == "__main__":
    serve(float(sys.argv[1]), sys.stdin, sys.stdout)
