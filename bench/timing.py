"""Repeated, interleaved timing: on a shared machine the load drifts, so contenders take
turns (one run of each per round) and each is summed up by its median."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Mapping


def rounds(
    contenders: Mapping[str, Callable[[], float]], reps: int, *, warm_up: bool = True
) -> dict[str, float]:
    """The median of REPS runs of each contender (a callable that returns the seconds it
    measured), run in turn, after one warm-up run of each that is not counted (imports,
    first connections)."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(reps + 1 if warm_up else reps):
        for name, run in contenders.items():
            gc.collect()  # garbage from the previous run is not this run's cost
            elapsed = run()
            if round_number or not warm_up:
                seconds[name].append(elapsed)
    return {name: statistics.median(values) for name, values in seconds.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"
