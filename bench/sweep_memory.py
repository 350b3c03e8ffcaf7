"""Benchmark 9: the memory of a big sweep against a small one.

`mm.sweep` of 100 runs of a 1024x1024 image (100 seeds) against the same with 10 runs,
the store on (a temporary folder), no progress view, at zero latency, the embedded
backend in a process of its own (`local_server.py`), so its drawing is not counted.

Each measurement is a fresh subprocess (`python -m bench.sweep_memory URL RUNS SIZE MODE`)
that first runs a sweep of `concurrency` runs (imports, the engine's thread, the store's
first write, the first connections: not the sweep's), then measures one sweep:

- `rss`: as benchmark 2, the kernel's high-water mark of resident memory (`VmHWM`, reset
  through `/proc/self/clear_refs`) minus the RSS before, and the RSS still held after;
- `traced`: `tracemalloc`'s peak of Python allocations above those before (all threads),
  what is still allocated after, and the biggest holders by source line (for the report).

A sweep returns its `ImageSweep`, whose results hold their images' bytes: what is
measured is what the caller holds, and the image bytes are given beside it.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from . import ROOT
from .local_server import ServerProcess
from .memory import maxrss, reset_peak, rss
from .payload import MIB
from .plan import Plan
from .report import Goal, Row

SWEEP_MEMORY_GOAL = Goal(1.5)  # the big sweep's extra peak <= 1.5x the small one's
PROMPT = "a lighthouse on a cliff at dusk"
KIB = 1024


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    small, big = plan.sweep_memory_runs
    size = plan.sweep_memory_size
    found: dict[tuple[int, str], list[dict[str, Any]]] = {}
    with ServerProcess(latency=0) as local:
        for _ in range(plan.memory_reps):
            for runs in (small, big):
                for mode in ("rss", "traced"):
                    found.setdefault((runs, mode), []).append(
                        measure_in_subprocess(local.url, runs, size, mode)
                    )

    def median(runs: int, mode: str, key: str) -> float:
        return statistics.median(float(one[key]) for one in found[runs, mode])

    images = {runs: median(runs, "rss", "image_bytes") for runs in (small, big)}
    peak = {runs: median(runs, "rss", "extra_peak") for runs in (small, big)}
    held = {runs: median(runs, "rss", "extra_after") for runs in (small, big)}
    traced = {runs: median(runs, "traced", "extra_peak") for runs in (small, big)}
    traced_held = {runs: median(runs, "traced", "extra_after") for runs in (small, big)}
    per_run = (peak[big] - peak[small]) / (big - small)
    per_run_traced = (traced_held[big] - traced_held[small]) / (big - small)
    per_image = (images[big] - images[small]) / (big - small)
    what = f"mm.sweep of {big} vs {small} runs, {size}, store on"
    return [
        Row(
            "9",
            f"{what}: extra peak RSS, big / small",
            f"+{peak[big] / MIB:.1f} MiB (held after: {held[big] / MIB:.1f})",
            f"+{peak[small] / MIB:.1f} MiB (held after: {held[small] / MIB:.1f})",
            _ratio(peak[big], peak[small]),
            SWEEP_MEMORY_GOAL,
        ),
        Row(
            "9",
            f"{what}: tracemalloc peak of Python allocations, big / small",
            f"+{traced[big] / MIB:.1f} MiB (held after: {traced_held[big] / MIB:.1f})",
            f"+{traced[small] / MIB:.1f} MiB (held after: {traced_held[small] / MIB:.1f})",
            _ratio(traced[big], traced[small]),
        ),
        Row(
            "9",
            "each run more: extra peak RSS (Python objects held) / its image's bytes",
            f"+{per_run / KIB:.0f} KiB ({per_run_traced / KIB:.0f} KiB)",
            f"image {per_image / KIB:.0f} KiB",
            _ratio(per_run, per_image),
        ),
    ]


def _ratio(ours: float, reference: float) -> float:
    """OURS / REFERENCE, each at least one page: memory is resident in whole pages, so
    less than one (a tiny sweep that fits in memory the warm-up left) reads as one."""
    page = resource.getpagesize()
    return max(ours, page) / max(reference, page)


def measure_in_subprocess(url: str, runs: int, size: str, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweep_memory", url, str(runs), size, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"bench.sweep_memory failed:\n{done.stderr}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def measure(url: str, runs: int, size: str, mode: str) -> dict[str, Any]:
    """In the subprocess: one warm-up sweep, then the measured one."""
    import mesh_magics as mm
    from mesh_magics.settings import configured

    from .sweeps import check_sweep

    concurrency = configured()["concurrency"]

    def sweep(seeds: list[int]) -> Any:
        made = mm.sweep(PROMPT, seed=seeds, size=size, base_url=url, progress="none", yes=True)
        check_sweep(made, len(seeds))
        return made

    with tempfile.TemporaryDirectory() as store:
        os.environ["MESH_MAGICS_STORE"] = store  # a store of its own, never ~/.cache
        sweep([1_000_000 + i for i in range(concurrency)])
        gc.collect()
        if mode == "traced":
            import tracemalloc

            tracemalloc.start(1)
            before = tracemalloc.get_traced_memory()[0]
            made = sweep(list(range(runs)))
            gc.collect()
            after, peak = tracemalloc.get_traced_memory()
            holders = [
                f"{stat.traceback[0].filename.replace(str(ROOT) + '/', '')}:"
                f"{stat.traceback[0].lineno} {stat.size / KIB:.0f} KiB in {stat.count}"
                for stat in tracemalloc.take_snapshot().statistics("lineno")[:12]
            ]
            tracemalloc.stop()
        else:
            holders = []
            if reset_peak():
                before = rss("VmRSS")
                made = sweep(list(range(runs)))
                peak = rss("VmHWM")
                gc.collect()
                after = rss("VmRSS")
            else:  # no /proc: the high-water mark since the start
                before = maxrss()
                made = sweep(list(range(runs)))
                peak = after = maxrss()
        image_bytes = sum(len(data) for result in made.results for data in result.data)
    return {
        "extra_peak": peak - before,
        "extra_after": after - before,
        "image_bytes": image_bytes,
        "holders": holders,
    }


if __name__ == "__main__":
    url, count, size, mode = sys.argv[1:5]
    print(json.dumps(measure(url, int(count), size, mode)))
