"""Benchmark 3: what `%load_ext mesh_magics` adds to starting IPython.

Fresh interpreters, taking turns: one creates an `InteractiveShell` (IPython alone), the
other creates one and loads the extension; the wall time of each whole process is
compared by medians. The bare `InteractiveShell` is the stricter baseline: `ipython -c`
would also load prompt_toolkit and friends, and hide a slow extension behind them.
A last child lists the modules the extension imports, so a heavy one (httpx, Pillow,
ipywidgets: imported on first use, by design) shows by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

from . import ROOT
from .plan import Plan
from .report import Goal, Row
from .timing import ms, rounds

LOAD_GOAL = Goal(1.25)  # IPython with the extension <= 1.25x IPython alone
HEAVY = ("httpx", "httpcore", "anyio", "PIL", "ipywidgets", "numpy", "ssl", "asyncio")

SHELL = """from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
"""
LOAD = "shell.run_line_magic('load_ext', 'mesh_magics')\n"
INSPECT = f"""import sys, time, json
{SHELL}before = set(sys.modules)
started = time.perf_counter()
{LOAD}elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "modules": sorted(set(sys.modules) - before)}}))
"""


def run(plan: Plan, server: str) -> list[Row]:
    del server
    contenders = {"alone": process(SHELL), "with": process(SHELL + LOAD)}
    medians = rounds(contenders, plan.load_reps, warm_up=plan.warm_up)
    done = subprocess.run(
        [sys.executable, "-c", INSPECT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    inspected = json.loads(done.stdout)
    modules: list[str] = inspected["modules"]
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
    return [
        Row(
            "3",
            "fresh IPython + %load_ext mesh_magics vs IPython alone",
            ms(medians["with"]),
            ms(medians["alone"]),
            medians["with"] / medians["alone"],
            LOAD_GOAL,
        ),
        Row(
            "3",
            f"%load_ext alone, in-process ({len(modules)} modules, "
            f"heavy: {', '.join(heavy) or 'none'}) vs IPython alone",
            ms(inspected["seconds"]),
            ms(medians["alone"]),
            inspected["seconds"] / medians["alone"],
        ),
    ]


def process(code: str) -> Callable[[], float]:
    """A contender: the wall time of a fresh interpreter running CODE."""

    def run() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - started

    return run
