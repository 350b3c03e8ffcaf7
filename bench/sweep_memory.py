"""Benchmark 9: the memory of a big sweep against a small one.

9: `mm.sweep` of 100 runs of a 1024x1024 image (100 seeds) against the same with 10 runs,
the store on (a temporary folder), no progress view, at zero latency, the embedded
backend in a process of its own (`local_server.py`), so its drawing is not counted.

9b: the same for 1,000 runs of a 256x256 image of noise (the backend's `noise` fault, per
request: ~197 KB PNGs, as big as photographs of that size) against 100, concurrency 8:
the whole process's peak RSS, big / small, goal <= 1.2x (the sweep's memory is flat: a
run's result reads its image from the store once stored), and the extra peak above the
RSS before the sweep, for information.

Each measurement is a fresh subprocess
(`python -m bench.sweep_memory URL RUNS SIZE MODE [CONCURRENCY] [noise]`)
that first runs a sweep of `concurrency` runs (imports, the engine's thread, the store's
first write, the first connections: not the sweep's), then measures one sweep:

- `rss`: as benchmark 2, the kernel's high-water mark of resident memory (`VmHWM`, reset
  through `/proc/self/clear_refs`) minus the RSS before, and the RSS still held after;
  also the high-water mark itself (`peak`: the whole process);
- `traced`: `tracemalloc`'s peak of Python allocations above those before (all threads),
  what is still allocated after, and the biggest holders by source line (for the report).

A sweep returns its `ImageSweep`, held while it is measured, as a notebook holds it; the
image bytes its runs made are given beside it.
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
FLAT_MEMORY_GOAL = Goal(1.2)  # 9b: 10x the runs, the process's peak <= 1.2x
NOISE = {"mesh_local": {"fault": "noise"}}  # the embedded backend draws noise
PROMPT = "a lighthouse on a cliff at dusk"
KIB = 1024


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    return run_small(plan) + run_flat(plan)


def run_flat(plan: Plan) -> list[Row]:
    """9b: 1,000 runs of noise against 100, the whole process's peak RSS."""
    small, big = plan.flat_memory_runs
    size, concurrency = plan.flat_memory_size, plan.sweep_concurrency
    found: dict[int, list[dict[str, Any]]] = {}
    with ServerProcess(latency=0) as local:
        for _ in range(plan.memory_reps):
            for runs in (small, big):
                found.setdefault(runs, []).append(
                    measure_in_subprocess(local.url, runs, size, "rss", concurrency, noise=True)
                )

    def median(runs: int, key: str) -> float:
        return statistics.median(float(one[key]) for one in found[runs])

    peak = {runs: median(runs, "peak") for runs in (small, big)}
    extra = {runs: median(runs, "extra_peak") for runs in (small, big)}
    held = {runs: median(runs, "extra_after") for runs in (small, big)}
    images = {runs: median(runs, "image_bytes") for runs in (small, big)}
    what = f"mm.sweep of {big:,} vs {small:,} runs, {size} noise, concurrency {concurrency}"
    return [
        Row(
            "9b",
            f"{what}: peak RSS of the process, big / small",
            f"{peak[big] / MIB:.0f} MiB (images made: {images[big] / MIB:.0f} MiB)",
            f"{peak[small] / MIB:.0f} MiB (images made: {images[small] / MIB:.0f} MiB)",
            _ratio(peak[big], peak[small]),
            FLAT_MEMORY_GOAL,
        ),
        Row(
            "9b",
            f"{what}: extra peak RSS over the RSS before the sweep, big / small",
            f"+{extra[big] / MIB:.1f} MiB (held after: {held[big] / MIB:.1f})",
            f"+{extra[small] / MIB:.1f} MiB (held after: {held[small] / MIB:.1f})",
            _ratio(extra[big], extra[small]),
        ),
    ]


def run_small(plan: Plan) -> list[Row]:
    """9: 100 runs of a 1024x1024 image against 10."""
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


def measure_in_subprocess(
    url: str, runs: int, size: str, mode: str, concurrency: int = 0, *, noise: bool = False
) -> dict[str, Any]:
    """`measure` in a fresh interpreter; `concurrency` 0: the configured one."""
    argv = [url, str(runs), size, mode, str(concurrency), *(["noise"] if noise else [])]
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweep_memory", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"bench.sweep_memory failed:\n{done.stderr}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def measure(
    url: str, runs: int, size: str, mode: str, concurrency: int = 0, noise: bool = False
) -> dict[str, Any]:
    """In the subprocess: one warm-up sweep, then the measured one."""
    import mesh_magics as mm
    from mesh_magics.settings import configured

    from .sweeps import check_sweep

    concurrency = concurrency or configured()["concurrency"]
    params = NOISE if noise else None

    def sweep(seeds: list[int]) -> Any:
        made = mm.sweep(
            PROMPT,
            seed=seeds,
            size=size,
            base_url=url,
            progress="none",
            yes=True,
            concurrency=concurrency,
            params=params,
        )
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
        whole = peak  # the process's own high-water mark
        image_bytes = sum(len(data) for result in made.results for data in result.data)
    return {
        "peak": whole if mode == "rss" else 0,
        "extra_peak": peak - before,
        "extra_after": after - before,
        "image_bytes": image_bytes,
        "holders": holders,
    }


if __name__ == "__main__":
    url, count, size, mode = sys.argv[1:5]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    noisy = sys.argv[6:7] == ["noise"]
    print(json.dumps(measure(url, int(count), size, mode, concurrency, noisy)))
