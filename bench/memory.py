"""Benchmark 2: the extra memory a reader needs for one big response.

Each measurement is a fresh subprocess (`python -m bench.memory READER WARM_URL URL`): it
reads a small stream first (imports and first-use allocations are not the response's),
resets the kernel's high-water mark of its resident memory, reads the big stream, and
reports the peak RSS above where it started. The decoded images are part of that peak:
they are what the reader hands back.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from . import ROOT
from .payload import MIB, sse_stream
from .plan import WARM_UP_MIB, Plan
from .readers import READERS
from .report import Goal, Row
from .sse_server import stream_url

MEMORY_GOAL = Goal(3.0)  # ours <= 3x the payload in extra RSS


def run(plan: Plan, server: str) -> list[Row]:
    stream = sse_stream(plan.memory_mib)
    payload = len(stream.body)
    warm, url = stream_url(server, WARM_UP_MIB), stream_url(server, plan.memory_mib)
    extra: dict[str, list[int]] = {"ours": [], "raw": []}
    for _ in range(plan.memory_reps):
        for name, values in extra.items():
            values.append(measure_in_subprocess(name, warm, url))
    rows = []
    for name, what, goal in (("ours", "full client", MEMORY_GOAL), ("raw", "raw limit", None)):
        peak = statistics.median(extra[name])
        rows.append(
            Row(
                "2",
                f"{payload / MIB:.0f} MiB response: extra peak RSS of the {what} / payload",
                f"+{peak / MIB:.0f} MiB",
                f"payload {payload / MIB:.0f} MiB",
                peak / payload,
                goal,
            )
        )
    return rows


def measure_in_subprocess(reader: str, warm_url: str, url: str) -> int:
    """Extra peak RSS in bytes of READER reading URL, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", reader, warm_url, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return int(json.loads(done.stdout)["extra"])


def measure(reader: str, warm_url: str, url: str) -> dict[str, int]:
    read = READERS[reader]
    read(warm_url)
    gc.collect()
    if reset_peak():
        before = rss("VmRSS")
        reading = read(url)
        peak = rss("VmHWM")
    else:  # no /proc: the high-water mark since the start, from getrusage
        before = maxrss()
        reading = read(url)
        peak = maxrss()
    return {"extra": peak - before, "images": len(reading.images)}


def reset_peak() -> bool:
    """Reset the kernel's high-water mark of our resident memory (Linux >= 4.0).

    It resets VmHWM, not `getrusage`'s ru_maxrss: that one also keeps the size of the
    parent at fork (here, a process holding the payloads), so it is read only without /proc.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss(field: str) -> int:
    """VmRSS (resident now) or VmHWM (its high-water mark), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def maxrss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:4])))
