"""Benchmarks 14 and 15: what a sweep of thousands of runs costs a notebook.

14. **notebook**: a notebook whose cell sweeps 1,000 seeds of a 256x256 image of noise
    (the embedded backend's `noise` fault, per request: ~197 KB PNGs that no encoder
    shrinks, the worst case for thumbnails) is executed by nbclient in a real kernel
    against the embedded backend (in a process of its own), saved, and measured: the
    file's bytes / the 5 MB budget, goal <= 1x; and / the bytes of the images the sweep
    made (for information: what a notebook embedding them would hold). The rows count
    the thumbnails and pages the saved file shows.
15. **dry_run**: `%%meshimage --dry-run` of a 10,000-run sweep (10,000 seeds), in an
    IPython shell, against the same cell with 100 seeds, taking turns after a warm-up:
    "instant" is two goals: under 1 s (the time / 1 s, goal <= 1x), and at most linear
    (the time per run of the big cell / that of the small one, goal <= 1x). The printed
    plan's lines are counted.

`execute_sweep_notebook` is what tests/test_sweeps.py runs at the same size.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .local_server import ServerProcess
from .plan import Plan
from .report import Goal, Row

MB = 1_000_000
NOTEBOOK_BUDGET = 5 * MB  # benchmark 14: a saved 1,000-image sweep stays under it
INSTANT_SECONDS = 1.0  # benchmark 15
NOTEBOOK_GOAL = Goal(1.0)
INSTANT_GOAL = Goal(1.0)
LINEAR_GOAL = Goal(1.0)
NOISE = '{"fault": "noise"}'  # the embedded backend's `mesh_local`: pictures of noise
PROMPT = "a lighthouse on a cliff at dusk"
DATA_URI = re.compile(r"data:image/[a-z+]+;base64,([A-Za-z0-9+/=]+)")


@dataclass(frozen=True)
class SavedSweep:
    """An executed, saved notebook of one sweep cell, and what its outputs hold."""

    path: Path
    size: int  # the .ipynb's bytes
    thumbnails: int  # data-URI images in the sweep cell's outputs
    pages: int  # <details> sections of the sweep's grid
    errors: list[str]  # the error outputs of the executed cells
    cell: dict[str, Any]  # the sweep cell, as saved


def sweep_cell(url: str, runs: int, size: str, *, name: str = "sw") -> str:
    """A `%%meshimage` cell sweeping `runs` seeds of noise at `url`, concurrency 8."""
    seeds = ",".join(str(seed) for seed in range(runs))
    return (
        f"%%meshimage -o {name} --yes --concurrency 8 --size {size} --base-url {url}\n"
        f"-p mesh_local='{NOISE}'\n--seed {seeds}\n{PROMPT}"
    )


def execute_sweep_notebook(url: str, runs: int, size: str, folder: Path) -> SavedSweep:
    """Execute (nbclient, a `python3` kernel) a notebook of one sweep cell against the
    embedded backend at `url`, its store in `folder`; save it there and read it back.
    The kernel inherits this process's environment (the key, if the test set one)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    setup = f"%load_ext mesh_magics\n%config MeshImageMagics.store_dir = {str(folder / 'store')!r}"
    nb.cells = [
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell(sweep_cell(url, runs, size)),
    ]
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    path = folder / "sweep.ipynb"
    nbformat.write(nb, path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    cell = saved["cells"][1]
    texts = [
        value if isinstance(value, str) else "".join(value)
        for output in cell["outputs"]
        for mime, value in output.get("data", {}).items()
        if mime in ("text/html", "text/plain")
    ]
    errors = [
        f"{output.get('ename')}: {output.get('evalue')}"
        for one in saved["cells"]
        for output in one["outputs"]
        if output["output_type"] == "error"
    ]
    return SavedSweep(
        path=path,
        size=path.stat().st_size,
        thumbnails=sum(len(DATA_URI.findall(text)) for text in texts),
        pages=sum(text.count("<details") for text in texts),
        errors=errors,
        cell=cell,
    )


def run_notebook(plan: Plan, server: str) -> list[Row]:
    """14: the saved notebook of a 1,000-image sweep against the 5 MB budget."""
    del server  # the embedded backend serves the kernel
    runs, size = plan.notebook_runs, plan.notebook_size
    with ServerProcess(latency=0) as local, tempfile.TemporaryDirectory() as folder:
        saved = execute_sweep_notebook(local.url, runs, size, Path(folder))
        if saved.errors or saved.thumbnails != runs:
            raise RuntimeError(f"the sweep notebook failed: {saved.errors or saved.thumbnails}")
        made = _image_bytes(Path(folder) / "store")
    shows = f"{saved.thumbnails:,} thumbnails in {saved.pages} pages"
    what = f"saved notebook of a {runs:,}-image sweep, {size} noise"
    return [
        Row(
            "14",
            f"{what}: file size vs the budget",
            f"{saved.size / MB:.2f} MB ({shows})",
            f"{NOTEBOOK_BUDGET / MB:.0f} MB",
            saved.size / NOTEBOOK_BUDGET,
            NOTEBOOK_GOAL,
        ),
        Row(
            "14",
            f"{what}: file size vs the images the sweep made",
            f"{saved.size / MB:.2f} MB",
            f"{made / MB:.0f} MB",
            saved.size / max(1, made),
        ),
    ]


def _image_bytes(store: Path) -> int:
    return sum(path.stat().st_size for path in (store / "images").rglob("*.png"))


def run_dry_run(plan: Plan, server: str) -> list[Row]:
    """15: a 10,000-run sweep's dry run against a 100-run one, in one shell."""
    del server
    from IPython.core.interactiveshell import InteractiveShell

    small, big = plan.dry_runs
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mesh_magics")
    cells = {runs: _dry_cell(runs) for runs in (small, big)}
    times: dict[int, list[float]] = {small: [], big: []}
    printed: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as store, _store_in(store):
        for rep in range(plan.dry_reps + (1 if plan.warm_up else 0)):
            for runs in (small, big):
                seconds, printed[runs] = _timed(shell, cells[runs])
                if rep or not plan.warm_up:
                    times[runs].append(seconds)
    took = {runs: statistics.median(values) for runs, values in times.items()}
    lines = {runs: len(printed[runs].splitlines()) for runs in (small, big)}
    if f"{big:,} runs" not in printed[big]:
        raise RuntimeError(f"the dry run did not plan {big} runs:\n{printed[big]}")
    per_run = {runs: took[runs] / runs for runs in (small, big)}
    what = f"%%meshimage --dry-run of {big:,} runs"
    return [
        Row(
            "15",
            f"{what}: time vs 'instant' (1 s)",
            f"{took[big] * 1000:,.0f} ms, {lines[big]} lines printed",
            f"{INSTANT_SECONDS * 1000:,.0f} ms",
            took[big] / INSTANT_SECONDS,
            INSTANT_GOAL,
        ),
        Row(
            "15",
            f"{what} vs {small:,} runs: time per run, big / small (at most linear)",
            f"{took[big] * 1000:,.0f} ms ({per_run[big] * 1e6:.0f} µs a run)",
            f"{took[small] * 1000:,.0f} ms ({per_run[small] * 1e6:.0f} µs a run), "
            f"{lines[small]} lines",
            per_run[big] / per_run[small],
            LINEAR_GOAL,
        ),
    ]


def _dry_cell(runs: int) -> str:
    seeds = ",".join(str(seed) for seed in range(runs))
    return f"%%meshimage --dry-run --yes --base-url local --seed {seeds}\n{PROMPT}"


def _timed(shell: Any, cell: str) -> tuple[float, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        started = time.perf_counter()
        outcome = shell.run_cell(cell)
        seconds = time.perf_counter() - started
    if not outcome.success:
        raise RuntimeError(f"the dry run failed: {outcome.error_in_exec}")
    return seconds, out.getvalue()


@contextlib.contextmanager
def _store_in(folder: str) -> Any:
    before = os.environ.get("MESH_MAGICS_STORE")
    os.environ["MESH_MAGICS_STORE"] = folder  # never ~/.cache
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MESH_MAGICS_STORE", None)
        else:
            os.environ["MESH_MAGICS_STORE"] = before
