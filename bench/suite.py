"""The benchmarks of the issue, in order, against one loopback SSE server.

1. decode: a 40 MiB final frame through a real socket, against the raw limit (and the
   official SDK on an 8 MiB frame; and, 1d `caps`, the reader with its caps and
   deadlines against it without);          `decode.py`, `readers.py`, `sse_server.py`
2. memory: extra peak RSS for that response, in fresh subprocesses;     `memory.py`
3. load: `%load_ext mesh_magics` in a fresh IPython against IPython alone;  `load.py`
4. e2e: a `%%meshimage` cell against a bare httpx request, embedded backend;  `e2e.py`
5. scaling: decode time per MiB for 1, 4, 16 and 40 MiB frames;          `decode.py`
6. bg: a `%%meshimage --bg` cell's return against the same `--dry-run` cell;  `background.py`
7. sweep: a 64-run sweep at zero latency against a bare httpx gather;        `sweeps.py`
8. latency: a 32-run sweep at 1 s latency, 8 at a time, against the ideal 4 s;  `sweeps.py`
9. sweep_memory: extra peak RSS of a 100-run sweep against a 10-run one;  `sweep_memory.py`
10. replay: `Store.get` of a stored 10-image cell against reading + decoding its files;
    `store.py`
11. store: a 4-image cell with the store on against off;                    `store.py`
12. edit_memory: extra peak RSS of an edit of a 40 MB input against its size;
    `edit_memory.py`
13. openai: one n=4 1024x1024 generation through `mm.generate` (and `mm.Client`) against
    the `openai` SDK (and the `meshapi` SDK, a bare httpx stream);            `sdks.py`
14. sweep_notebook: the saved notebook of a 1,000-image sweep (nbclient) against 5 MB;
    `sweep_notebook.py`
15. dry_run: `--dry-run` of a 10,000-run sweep against 1 s and a 100-run one;
    `sweep_notebook.py`
(9b, in sweep_memory: the peak RSS of a 1,000-run sweep of noise against a 100-run one.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from . import (
    background,
    decode,
    e2e,
    edit_memory,
    load,
    memory,
    sdks,
    store,
    sweep_memory,
    sweep_notebook,
    sweeps,
)
from .payload import sse_stream
from .plan import Plan
from .report import Row
from .sse_server import serve, stream_name

Benchmark = Callable[[Plan, str], list[Row]]

BENCHMARKS: dict[str, Benchmark] = {
    "decode": decode.run_decode,
    "sdk": decode.run_sdk,
    "caps": decode.run_caps,
    "memory": memory.run,
    "load": load.run,
    "e2e": e2e.run,
    "scaling": decode.run_scaling,
    "bg": background.run,
    "sweep": sweeps.run_overhead,
    "latency": sweeps.run_latency,
    "sweep_memory": sweep_memory.run,
    "replay": store.run_replay,
    "store": store.run_cost,
    "edit_memory": edit_memory.run,
    "openai": sdks.run,
    "sweep_notebook": sweep_notebook.run_notebook,
    "dry_run": sweep_notebook.run_dry_run,
}


def run_suite(plan: Plan, names: Sequence[str] = tuple(BENCHMARKS)) -> list[Row]:
    """Run the benchmarks NAMES (all by default) and return their rows, in order."""
    say(f"making the payloads ({', '.join(f'{m:g}' for m in sorted(plan.stream_sizes))} MiB)")
    bodies = {stream_name(mib): sse_stream(mib).body for mib in plan.stream_sizes}
    rows: list[Row] = []
    with serve(bodies) as server:
        for name in names:
            started = time.perf_counter()
            say(f"running {name}")
            rows += BENCHMARKS[name](plan, server)
            say(f"  {name} took {time.perf_counter() - started:.1f} s")
    return rows


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
