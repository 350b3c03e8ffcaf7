"""Benchmark 13: one generation through our function API against the client a user would
pick instead, the `openai` SDK.

One n=4 1024x1024 generation against the embedded backend at zero latency
(`LocalServer`, in a process of its own: `local_server.py`), each contender timed from
its call to holding every image's bytes:

- `generate`: `mm.generate(PROMPT, n=4, size=..., progress="none")`, the store on (a
  temporary folder, as a user has it); a new connection per call, as the default client
  keeps none between calls;
- `client`: `mm.Client(...).generate(...)`, one client made before the clock starts, so
  one connection pool for every call;
- `openai`: `OpenAI(base_url=..., api_key=...).images.generate(model=..., prompt=...,
  n=4, size=...)`, non-streaming, one client made before the clock starts, then each
  image's base64 decoded (the SDK returns text);
- `meshapi`: the official `meshapi` SDK's `images.generate(ImageGenerationParams(...))`,
  the same way;
- `httpx`: a bare `httpx.stream` POST of the very body `mm.generate` sends (a new client
  per request, as `httpx.stream` makes), its SSE split and each image base64-decoded.

Two more rows give the CPU time the calling process spent per call (all its threads; the
server is another process): steadier than wall time on a loaded machine, and what our own
road costs beside the SDK's.

Every call asks for a new seed (the store writes new files each time; the server draws
anew), the same for every contender. The contenders take turns after a warm-up; medians.
Runs in a subprocess of its own (`python -m bench.sdks N SIZE REPS [--warm-up]`), so the
benchmarks before it do not leak in. Without `openai` installed (`pip install -e
.[bench]`) it reports nothing.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from . import ROOT
from .e2e import bare_stream
from .local_server import ServerProcess
from .plan import Plan
from .report import Goal, Row
from .store import fine_ms
from .timing import ms, rounds

SDK_GOAL = Goal(1.0)  # mm.generate <= 1.0x the openai SDK
MODEL = "openai/gpt-image-1"  # what mm.generate picks against the embedded backend
PROMPT = "a lighthouse on a cliff at dusk"
WHAT = {
    "generate": 'mm.generate(progress="none"), store on',
    "generate_no_store": 'mm.generate(progress="none"), store off',
    "client": "mm.Client(...).generate (one pool), store on",
    "meshapi": "official meshapi SDK images.generate",
    "httpx": "bare httpx.stream + base64",
}


def openai_available() -> bool:
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def run(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    if not openai_available():
        return []  # `pip install -e .[bench]` brings it
    done = subprocess.run(
        [sys.executable, "-m", "bench.sdks", str(plan.sdks_n), plan.sdks_size, str(plan.sdks_reps)]
        + (["--warm-up"] if plan.warm_up else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"bench.sdks failed:\n{done.stderr}")
    medians: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = medians["openai"]
    what = f"n={plan.sdks_n} {plan.sdks_size}, zero latency"
    return [
        Row(
            "13",
            f"{what}: {WHAT[name]} vs the openai SDK images.generate",
            f"{ms(medians[name])} ({(medians[name] - reference) * 1000:+.0f} ms)",
            ms(reference),
            medians[name] / reference,
            SDK_GOAL if name == "generate" else None,
        )
        for name in WHAT
        if name in medians
    ] + [
        Row(
            "13",
            f"{what}: CPU time of the calling process, {WHAT[name]} vs the openai SDK",
            fine_ms(medians[f"cpu_{name}"]),
            fine_ms(medians["cpu_openai"]),
            medians[f"cpu_{name}"] / medians["cpu_openai"],
        )
        for name in ("generate", "generate_no_store")
    ]


# -- in the subprocess ---------------------------------------------------------------------


def measure(n: int, size: str, reps: int, *, warm_up: bool) -> dict[str, float]:
    from openai import OpenAI

    import mesh_magics as mm

    seeds = itertools.count(1)  # a new request every time, for every contender
    with tempfile.TemporaryDirectory() as folder, ServerProcess(latency=0) as server:
        os.environ["MESH_MAGICS_STORE"] = folder  # the default store, never ~/.cache
        openai_client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        client = mm.Client(base_url=server.url, progress="none")
        fields: dict[str, Any] = {"n": n, "size": size}

        def generate() -> float:
            started = time.perf_counter()
            result = mm.generate(PROMPT, base_url=server.url, progress="none",
                                 seed=next(seeds), **fields)  # fmt: skip
            elapsed = time.perf_counter() - started
            assert len(result.data) == n and result.model == MODEL
            return elapsed

        no_store = mm.Client(base_url=server.url, progress="none", store=False)
        no_store._pooled = False  # a connection per call, as the default client has

        def generate_no_store() -> float:
            started = time.perf_counter()
            result = no_store.generate(PROMPT, seed=next(seeds), **fields)
            elapsed = time.perf_counter() - started
            assert len(result.data) == n
            return elapsed

        def pooled() -> float:
            started = time.perf_counter()
            result = client.generate(PROMPT, seed=next(seeds), **fields)
            elapsed = time.perf_counter() - started
            assert len(result.data) == n
            return elapsed

        def openai_sdk() -> float:
            started = time.perf_counter()
            answer = openai_client.images.generate(
                model=MODEL, prompt=PROMPT, n=n, size=size,  # type: ignore[arg-type]
                extra_body={"seed": next(seeds)},
            )  # fmt: skip
            images = [_image_bytes(item.b64_json, item.url) for item in answer.data or []]
            elapsed = time.perf_counter() - started
            assert len(images) == n
            return elapsed

        body = {"prompt": PROMPT, "model": MODEL, **fields, "stream": True}

        def bare() -> float:
            return bare_stream(server.url, {**body, "seed": next(seeds)}, n)

        contenders: dict[str, Callable[[], float]] = {
            "generate": generate,
            "generate_no_store": generate_no_store,
            "client": pooled,
            "openai": openai_sdk,
            "httpx": bare,
        }
        meshapi = _meshapi_sdk(server.url, n, size, seeds)
        if meshapi is not None:
            contenders["meshapi"] = meshapi
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        timed = {name: _with_cpu(run, cpu[name]) for name, run in contenders.items()}
        try:
            medians = rounds(timed, reps, warm_up=warm_up)
            skip = 1 if warm_up else 0
            medians.update(
                {f"cpu_{name}": statistics.median(seconds[skip:]) for name, seconds in cpu.items()}
            )
            return medians
        finally:
            client.close()
            openai_client.close()


def _with_cpu(run: Callable[[], float], cpu: list[float]) -> Callable[[], float]:
    """`run`, also noting the CPU time this process spent in it (every thread's)."""

    def timed() -> float:
        started = time.process_time()
        elapsed = run()
        cpu.append(time.process_time() - started)
        return elapsed

    return timed


def _meshapi_sdk(
    url: str, n: int, size: str, seeds: itertools.count[int]
) -> Callable[[], float] | None:
    try:
        from meshapi import ImageGenerationParams, MeshAPI
    except ImportError:
        return None
    sdk = MeshAPI(base_url=url, token="rsk_bench", max_retries=0)

    def meshapi() -> float:
        params = ImageGenerationParams(prompt=PROMPT, model=MODEL, n=n, size=size,
                                       seed=next(seeds))  # fmt: skip
        started = time.perf_counter()
        answer = sdk.images.generate(params)
        images = [_image_bytes(item.b64_json, item.url) for item in answer.data]
        elapsed = time.perf_counter() - started
        assert len(images) == n
        return elapsed

    return meshapi


def _image_bytes(b64_json: str | None, url: str | None) -> bytes:
    """An SDK's image item as bytes: its base64, or its `data:` URL's (the embedded
    backend answers with data URLs)."""
    return base64.b64decode(b64_json or (url or "").partition(",")[2])


if __name__ == "__main__":
    count, size, reps = sys.argv[1:4]
    print(json.dumps(measure(int(count), size, int(reps), warm_up="--warm-up" in sys.argv)))
