"""Benchmark 4: a whole `%%meshimage` cell against a bare httpx request for the same images.

Both ask the embedded backend (`LocalServer(latency=0)`) for the same thing: the bare side
replays the exact JSON body the magic sent, streaming, reads the whole response with httpx
and base64-decodes every image; the cell runs in an IPython `InteractiveShell` with
`MeshImageMagics.progress = 'text'` and its output captured, and includes what the magic
adds: parsing the cell, its worker thread, the checks, the `ImageResult`, and (in the main
row) displaying it. The server's drawing time is in both.

It runs in a subprocess of its own (`python -m bench.e2e N SIZE REPS [--warm-up]`), so the shell's
state and the benchmarks before it do not leak in.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from . import ROOT
from .plan import Plan
from .report import Goal, Row
from .timing import ms, rounds

E2E_GOAL = Goal(1.5)  # the cell <= 1.5x the bare request
PROMPT = "a lighthouse on a cliff at dusk"


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", str(plan.e2e_n), plan.e2e_size, str(plan.e2e_reps)]
        + (["--warm-up"] if plan.warm_up else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    medians = json.loads(done.stdout.strip().splitlines()[-1])
    what = f"%%meshimage n={plan.e2e_n} {plan.e2e_size}"
    bare = medians["bare"]
    return [
        Row(
            "4",
            f"{what} cell vs bare httpx + base64",
            f"{ms(medians['cell'])} ({_difference(medians['cell'] - bare)})",
            ms(bare),
            medians["cell"] / bare,
            E2E_GOAL,
        ),
        Row(
            "4",
            f"{what} --no-display cell vs bare httpx + base64",
            f"{ms(medians['no_display'])} ({_difference(medians['no_display'] - bare)})",
            ms(bare),
            medians["no_display"] / bare,
        ),
    ]


def _difference(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def measure(n: int, size: str, reps: int, *, warm_up: bool) -> dict[str, float]:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from mesh_magics.local import LocalServer

    with LocalServer(latency=0) as server:
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "mesh_magics")
        shell.run_line_magic("config", "MeshImageMagics.progress = 'text'")
        shell.run_line_magic("config", f"MeshImageMagics.base_url = {server.url!r}")
        options = f"-n {n} --size {size} --output-format png"

        def cell(*flags: str) -> Callable[[], float]:
            text = f"%%meshimage {' '.join((options, *flags))}\n{PROMPT}"

            def run_cell() -> float:
                started = time.perf_counter()
                with capture_output():
                    outcome = shell.run_cell(text)
                elapsed = time.perf_counter() - started
                outcome.raise_error()
                assert flags or len(outcome.result) == n
                return elapsed

            return run_cell

        cell()()  # the exact body the magic sends, for the bare request to replay
        body = server.requests[-1].body

        def bare() -> float:
            return bare_stream(server.url, body, n)

        contenders = {"cell": cell(), "no_display": cell("--no-display"), "bare": bare}
        return rounds(contenders, reps, warm_up=warm_up)


def bare_stream(url: str, body: dict[str, Any], n: int) -> float:
    """Seconds for one generation the baseline way: a bare httpx stream (a new client),
    read whole, its n images base64-decoded."""
    import httpx

    started = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{url}/v1/images/generations",
        json=body,
        headers={"Accept": "text/event-stream"},
        timeout=60,
    ) as response:
        raw = response.read()
    images = decode_stream(raw)
    elapsed = time.perf_counter() - started
    assert len(images) == n
    return elapsed


def decode_stream(raw: bytes) -> list[bytes]:
    """The images of an SSE body: every frame with `data`, each image base64-decoded."""
    images = []
    for event in raw.split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        frame: dict[str, Any] = json.loads(event[len(b"data: ") :])
        for item in frame.get("data") or []:
            encoded = item.get("b64_json") or item["url"].partition(",")[2]
            images.append(base64.b64decode(encoded))
    return images


if __name__ == "__main__":
    count, size, reps = sys.argv[1:4]
    print(json.dumps(measure(int(count), size, int(reps), warm_up="--warm-up" in sys.argv)))
