"""Benchmarks 7 and 8: what a sweep adds on top of the requests it makes.

7. **Overhead**: 64 runs (64 seeds) of a 256x256 image at zero server latency, 8 at a
   time, the store off, no progress view, as `mm.sweep` runs them (its checks,
   `prepare_sweep`, `run_sweep_blocking`), against the least any program could do: a bare
   `asyncio.gather` of the same 64 request bodies, streamed with one shared
   `httpx.AsyncClient` under `asyncio.Semaphore(8)`, each response's SSE parsed and its
   image base64-decoded. Same server, same drawing; the baseline's client is made before
   its clock starts (loading the CA bundle is a one-off, which ours caches too). Two rows
   without a goal split the difference: the bare gather with a new client (so a new
   connection) per request, as a single run of ours has (a sweep's runs share one pool),
   and our HTTP client alone (one `SharedClient` streaming the same requests under the
   semaphore, no `Generation`, no sweep, on the calling thread).
8. **Latency-bound**: 32 runs at 1 s of server latency, 8 at a time, through `mm.sweep`
   itself (store on, in a temporary folder, as a user has it): the ideal is
   ceil(32 / 8) x 1 s = 4 s; the server's `max_in_flight` is checked to be exactly 8.

The server is the embedded backend (`LocalServer`) in a process of its own
(`local_server.py`). Each benchmark runs in a fresh subprocess
(`python -m bench.sweeps overhead|latency ...`), like benchmark 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import ROOT
from .e2e import decode_stream
from .local_server import ServerProcess
from .plan import Plan
from .report import Goal, Row
from .timing import ms, rounds

if TYPE_CHECKING:
    from mesh_magics.request import ImageRequest
    from mesh_magics.results.image_sweep import ImageSweep
    from mesh_magics.settings import ClientSettings

OVERHEAD_GOAL = Goal(1.3)  # the sweep <= 1.3x a bare gather of the same requests
LATENCY_GOAL = Goal(1.15)  # the sweep <= 1.15x the ideal wall time
PROMPT = "a lighthouse on a cliff at dusk"
GENERATIONS_PATH = "/v1/images/generations"


def run_overhead(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    args = [
        str(plan.sweep_runs),
        plan.sweep_size,
        str(plan.sweep_concurrency),
        str(plan.sweep_reps),
    ]
    medians = in_subprocess("overhead", args, warm_up=plan.warm_up)
    ours, bare = medians["sweep"], medians["bare"]
    what = f"{plan.sweep_runs} runs {plan.sweep_size}, concurrency {plan.sweep_concurrency}"
    return [
        Row(
            "7",
            f"sweep of {what}, zero latency, store off: wall time vs bare httpx gather "
            "+ SSE + base64",
            f"{ms(ours)} ({(ours - bare) / plan.sweep_runs * 1000:+.2f} ms a run)",
            ms(bare),
            ours / bare,
            OVERHEAD_GOAL,
        ),
        Row(
            "7",
            "the bare gather with a new httpx client (and connection) per request, as a "
            "single run of ours has, vs the bare gather",
            ms(medians["bare_per_request"]),
            ms(bare),
            medians["bare_per_request"] / bare,
        ),
        Row(
            "7",
            "our HTTP client alone (one shared pool, as a sweep has; no Generation, no "
            "sweep) vs the bare gather",
            ms(medians["client"]),
            ms(bare),
            medians["client"] / bare,
        ),
    ]


def run_latency(plan: Plan, server: str) -> list[Row]:
    del server
    args = [
        str(plan.latency_runs),
        plan.sweep_size,
        str(plan.sweep_concurrency),
        repr(plan.latency_seconds),
        str(plan.latency_reps),
    ]
    medians = in_subprocess("latency", args, warm_up=plan.warm_up)
    ideal = math.ceil(plan.latency_runs / plan.sweep_concurrency) * plan.latency_seconds
    return [
        Row(
            "8",
            f"mm.sweep of {plan.latency_runs} runs at {plan.latency_seconds:g} s latency, "
            f"concurrency {plan.sweep_concurrency} (store on): wall time vs the ideal",
            f"{ms(medians['sweep'])} ({int(medians['max_in_flight'])} in flight at most)",
            f"ideal {ms(ideal)}",
            medians["sweep"] / ideal,
            LATENCY_GOAL,
        )
    ]


def in_subprocess(which: str, args: Sequence[str], *, warm_up: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweeps", which, *args, *(["--warm-up"] if warm_up else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        raise RuntimeError(f"bench.sweeps {which} failed:\n{done.stderr}")
    medians: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return medians


# -- in the subprocess ---------------------------------------------------------------------


def sweep_without_store(
    url: str, seeds: Sequence[int], size: str, concurrency: int
) -> tuple[float, ImageSweep]:
    """`mm.sweep(PROMPT, seed=seeds, size=size, progress="none")` with the store off (which
    `mm.sweep` takes from the settings alone): the same steps, timed as a whole."""
    from mesh_magics.engine.sweeps import run_sweep_blocking
    from mesh_magics.schema import check_image_count
    from mesh_magics.views import make_sweep_view

    started = time.perf_counter()
    sweep, planned, config = _planned(url, seeds, size, concurrency)
    check_image_count(planned.images, len(sweep), config, allow=True)
    view = make_sweep_view("sweep", [run.label for run in sweep.runs], "none")
    run_sweep_blocking(sweep, planned, view)
    elapsed = time.perf_counter() - started
    check_sweep(sweep, len(seeds))
    return elapsed, sweep


def _planned(
    url: str, seeds: Sequence[int], size: str, concurrency: int
) -> tuple[ImageSweep, Any, dict[str, Any]]:
    """The sweep of `sweep_without_store`, its plan and its settings, nothing made."""
    from mesh_magics.client.prepare import request_fields
    from mesh_magics.client.sweeps import prepare_sweep
    from mesh_magics.settings import configured

    config = {**configured(), "store": False}
    swept = {"seed": [request_fields({"seed": seed}, None)["seed"] for seed in seeds]}
    sweep, planned = prepare_sweep(
        [PROMPT],
        request_fields({"size": size}, None),
        swept,
        config=config,
        base_url=url,
        concurrency=concurrency,
        progress="none",
    )
    return sweep, planned, config


def check_sweep(sweep: ImageSweep, runs: int) -> None:
    if sweep.failed or len(sweep.results) != runs:
        problems = "; ".join(str(run.error) for run in sweep.failed[:3])
        raise RuntimeError(f"{len(sweep.failed)} of {runs} runs failed: {problems}")
    for result in sweep.results:
        if len(result) != 1 or not result.data[0]:
            raise RuntimeError("a run came back without its image")


async def bare_gather(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    *,
    client_per_request: ssl.SSLContext | None = None,
) -> float:
    """The same requests, the least way: one client, a semaphore, SSE split and base64.
    With `client_per_request` (the TLS context they share, made once, as ours does), each
    request has a client of its own instead."""
    import httpx

    async with httpx.AsyncClient(timeout=60) as shared:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(body: dict[str, Any]) -> list[bytes]:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(semaphore)
                client = shared
                if client_per_request is not None:
                    client = await stack.enter_async_context(
                        httpx.AsyncClient(timeout=60, verify=client_per_request)
                    )
                response = await stack.enter_async_context(
                    client.stream(
                        "POST",
                        url + GENERATIONS_PATH,
                        json=body,
                        headers={"Accept": "text/event-stream"},
                    )
                )
                response.raise_for_status()
                raw = await response.aread()
            return decode_stream(raw)

        started = time.perf_counter()
        images = await asyncio.gather(*(one(body) for body in bodies))
        elapsed = time.perf_counter() - started
    if [len(each) for each in images] != [1] * len(bodies):
        raise RuntimeError("a bare request came back without its image")
    return elapsed


async def client_gather(
    settings: ClientSettings, requests: Sequence[ImageRequest], concurrency: int
) -> float:
    """The same requests through our HTTP client alone: one `SharedClient` (one pool, as
    a sweep's runs have), under the semaphore, every event read."""
    from mesh_magics.events import Completed
    from mesh_magics.http.client import SharedClient

    semaphore = asyncio.Semaphore(concurrency)
    shared = SharedClient(settings, len(requests))

    async def one(request: ImageRequest) -> int:
        async with semaphore:
            images = 0
            async for event in shared.stream(request):
                if isinstance(event, Completed):
                    images = len(event.images)
            return images

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(request) for request in requests))
    elapsed = time.perf_counter() - started
    await shared.aclose()
    if counts != [1] * len(requests):
        raise RuntimeError("a request through our client came back without its image")
    return elapsed


def measure_overhead(
    runs: int, size: str, concurrency: int, reps: int, *, warm_up: bool
) -> dict[str, float]:
    seeds = list(range(runs))
    with ServerProcess(latency=0) as server:
        sweep_without_store(server.url, seeds, size, concurrency)  # runs, or fails here
        _, planned, _ = _planned(server.url, seeds, size, concurrency)
        requests = [run.request for run in planned.made(runs)]  # the sweep's, as made
        settings = planned.settings
        bodies = [request.body for request in requests]
        tls = ssl.create_default_context()  # made once: a new one is ~20 ms a client

        def sweep() -> float:
            server.reset_counts()
            elapsed, _ = sweep_without_store(server.url, seeds, size, concurrency)
            counts = server.counts()
            if counts["max_in_flight"] > concurrency or counts["generation_count"] != runs:
                raise RuntimeError(f"the sweep did not keep to {concurrency} at a time: {counts}")
            return elapsed

        def bare() -> float:
            return asyncio.run(bare_gather(server.url, bodies, concurrency))

        def bare_per_request() -> float:
            return asyncio.run(bare_gather(server.url, bodies, concurrency, client_per_request=tls))

        def client() -> float:
            return asyncio.run(client_gather(settings, requests, concurrency))

        contenders: dict[str, Callable[[], float]] = {
            "sweep": sweep,
            "bare": bare,
            "bare_per_request": bare_per_request,
            "client": client,
        }
        return rounds(contenders, reps, warm_up=warm_up)


def measure_latency(
    runs: int, size: str, concurrency: int, latency: float, reps: int, *, warm_up: bool
) -> dict[str, float]:
    import statistics

    import mesh_magics as mm

    seeds = iter(range(1_000_000))  # new requests every time: the store writes each one
    walls: list[float] = []
    most: list[int] = []
    with tempfile.TemporaryDirectory() as store, ServerProcess(latency=latency) as server:
        os.environ["MESH_MAGICS_STORE"] = store  # never the user's ~/.cache

        def sweep(count: int) -> tuple[float, int]:
            chosen = [next(seeds) for _ in range(count)]
            server.reset_counts()
            started = time.perf_counter()
            made = mm.sweep(
                PROMPT,
                seed=chosen,
                size=size,
                base_url=server.url,
                concurrency=concurrency,
                progress="none",
                yes=True,
            )
            elapsed = time.perf_counter() - started
            check_sweep(made, count)
            return elapsed, server.counts()["max_in_flight"]

        if warm_up:  # one round's worth: imports, the engine, the store's first write
            sweep(concurrency)
        for _ in range(reps):
            wall, in_flight = sweep(runs)
            if in_flight != min(concurrency, runs):
                raise RuntimeError(f"{in_flight} in flight at most, not {concurrency}")
            walls.append(wall)
            most.append(in_flight)
    return {"sweep": statistics.median(walls), "max_in_flight": max(most)}


if __name__ == "__main__":
    which, *rest = sys.argv[1:]
    warm = "--warm-up" in rest
    values = [value for value in rest if value != "--warm-up"]
    if which == "overhead":
        n, size, k, reps = values
        result = measure_overhead(int(n), size, int(k), int(reps), warm_up=warm)
    else:
        n, size, k, latency, reps = values
        result = measure_latency(int(n), size, int(k), float(latency), int(reps), warm_up=warm)
    print(json.dumps(result))
