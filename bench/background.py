"""Benchmark 6: a `%%meshimage --bg` cell returns about as fast as the same cell with
`--dry-run`, which builds and shows the request and sends nothing.

Both cells are the same but for that flag (`--base-url local`, the embedded backend). They
are timed in one IPython shell, in-process: from `run_cell`'s start to its return, taking
turns, medians. The shell is a real ipykernel's, driven as JupyterLab drives it
(`execute_request` with `allow_stdin: true`): only there does `--bg` run in the background.
In a bare `InteractiveShell`, or for nbclient, nothing could show a later update, so a
`--bg` cell runs to its end before it returns, by design (`ipython/background.py`).

So one `execute_request` runs `measure_in_kernel` inside the kernel; each `--bg` sample
also checks that its run was still going when the cell returned, and waits for it to end
(outside the timed part) before the next sample. The backend waits `LATENCY` seconds
before it answers, so while the cell returns the request is in flight, as it would be
against a remote server, rather than drawing the image on the same interpreter.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import ROOT
from .plan import Plan
from .report import Goal, Row

if TYPE_CHECKING:
    from mesh_magics.engine.jobs import Jobs

BG_GOAL = Goal(1.2)  # the --bg cell returns in <= 1.2x the time of the --dry-run cell
OPTIONS = "--base-url local --size 256x256"
PROMPT = "a lighthouse on a cliff at dusk"
LATENCY = "0.2"  # seconds; far longer than either cell takes to return
STARTUP_SECONDS = 60


def cell(flag: str) -> str:
    return f"%%meshimage {flag} {OPTIONS}\n{PROMPT}"


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend, inside the kernel
    medians = in_kernel(plan.bg_reps, warm_up=plan.warm_up)
    dry_run = medians["dry_run"]
    return [
        Row(
            "6",
            "%%meshimage --bg cell (widget view), time to return, vs the same cell with "
            "--dry-run (ipykernel, in-process)",
            fine_ms(medians["bg"]),
            fine_ms(dry_run),
            medians["bg"] / dry_run,
            BG_GOAL,
        ),
        Row(
            "6",
            "the same --bg cell with progress = 'none' (no view) vs --dry-run",
            fine_ms(medians["bg_no_view"]),
            fine_ms(dry_run),
            medians["bg_no_view"] / dry_run,
        ),
    ]


def fine_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def in_kernel(reps: int, *, warm_up: bool) -> dict[str, float]:
    """Start an ipykernel, run `measure_in_kernel` in it as a notebook frontend would,
    return its medians."""
    from jupyter_client.manager import KernelManager

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH")}
    env["MESH_LOCAL_LATENCY"] = LATENCY
    printed: list[str] = []
    errors: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            printed.append(content["text"])
        elif kind == "error":
            errors.append("\n".join(content["traceback"]))

    manager = KernelManager(kernel_name="python3")
    with tempfile.TemporaryFile() as log:  # the kernel's own output: shown if it fails
        manager.start_kernel(cwd=str(ROOT), env=env, stdout=log, stderr=log)
        client = manager.client()
        try:
            client.start_channels()
            client.wait_for_ready(timeout=STARTUP_SECONDS)
            code = (
                "from bench.background import measure_in_kernel\n"
                f"measure_in_kernel({reps}, warm_up={warm_up})\n"
            )
            reply = client.execute_interactive(
                code, allow_stdin=True, output_hook=keep, timeout=600
            )
            content = reply["content"]
            if content["status"] != "ok":
                errors += content.get("traceback") or [
                    f"{content.get('ename')}: {content.get('evalue')}"
                ]
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=False)
        if errors:
            log.seek(0)
            kernel_output = log.read().decode(errors="replace")
            raise RuntimeError(
                "the benchmark failed in the kernel:\n" + "\n".join(errors) + "\n" + kernel_output
            )
    medians: dict[str, float] = json.loads("".join(printed).strip().splitlines()[-1])
    return medians


def measure_in_kernel(reps: int, *, warm_up: bool) -> None:
    """In the kernel: time the cells in turn; print the medians as one JSON line."""
    from IPython import get_ipython

    from mesh_magics.engine.jobs import jobs
    from mesh_magics.views import interactive_frontend

    from .timing import rounds

    shell = get_ipython()
    if not interactive_frontend(shell):  # else --bg would run in the foreground
        raise RuntimeError("the kernel does not see an interactive frontend (allow_stdin)")
    import ipywidgets  # noqa: F401  (progress 'auto' shows widgets: they must import)

    shell.run_line_magic("load_ext", "mesh_magics")
    magics = shell.magics_manager.registry["MeshImageMagics"]

    def timed(flag: str, progress: str = "auto") -> Callable[[], float]:
        text = cell(flag)

        def run_cell() -> float:
            magics.progress = progress
            started = time.perf_counter()
            outcome = shell.run_cell(text)
            elapsed = time.perf_counter() - started
            magics.progress = "auto"
            outcome.raise_error()
            if flag == "--bg":
                check_and_wait(jobs())
            return elapsed

        return run_cell

    contenders = {
        "bg": timed("--bg"),
        "bg_no_view": timed("--bg", progress="none"),
        "dry_run": timed("--dry-run"),
    }
    print(json.dumps(rounds(contenders, reps, warm_up=warm_up)))


def check_and_wait(runs: Jobs) -> None:
    """The --bg cell has returned: its run must be going; wait for it to end well (this
    is not timed: the run goes on after the cell)."""
    running = runs.running()
    if len(running) != 1:  # a foreground run would be done by now
        raise RuntimeError(f"{len(running)} runs going after a --bg cell, not 1")
    (run,) = running
    if runs.wait(60):
        raise RuntimeError("the --bg run did not end within 60 s")
    if run.status != "done":
        raise RuntimeError(f"the --bg run ended {run.status}: {run.exception()}")
