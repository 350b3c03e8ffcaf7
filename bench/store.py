"""Benchmarks 10 and 11: the local store's reading and writing, against the disk.

10. **Replay**: a stored cell of 10 images (1024x1024 PNG) read back: `Store.get` of its
    key, which is the `ImageResult` (every file read and checked against its SHA-256),
    plus touching each image's bytes, against reading the same files with
    `Path.read_bytes` and decoding each with Pillow (`Image.open(...).load()`, the images
    kept until the clock stops). A second row (no goal) decodes the images through the
    result too (`result.images`), the same work as the reference plus the store's. The
    files are in the page cache for both.
11. **Store cost**: the same cell of 4 images at zero latency, as `mm.generate` runs it
    (`prepare` + `run_blocking`, no progress view), with the store on against off. Each
    run asks for a new seed, so the store writes (and fsyncs) new files every time.

Both talk to the embedded backend in a process of its own (`local_server.py`) and run in
a fresh subprocess (`python -m bench.store replay|cost ...`).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ROOT
from .local_server import ServerProcess
from .plan import Plan
from .report import Goal, Row
from .timing import ms, rounds

if TYPE_CHECKING:
    from mesh_magics.engine.generation import Generation
    from mesh_magics.results.result import ImageResult

REPLAY_GOAL = Goal(1.5)  # Store.get + touching the bytes <= 1.5x read + Pillow decode
STORE_GOAL = Goal(1.1)  # a cell with the store on <= 1.1x the same with it off
PROMPT = "a lighthouse on a cliff at dusk"


def run_replay(plan: Plan, server: str) -> list[Row]:
    del server  # this one talks to the embedded backend
    args = [str(plan.replay_n), plan.replay_size, str(plan.reps)]
    medians = in_subprocess("replay", args, warm_up=plan.warm_up)
    disk = medians["disk"]
    what = f"stored cell of {plan.replay_n} images {plan.replay_size}"
    return [
        Row(
            "10",
            f"{what}: Store.get + touching the bytes vs read the files + Pillow decode",
            fine_ms(medians["replay"]),
            fine_ms(disk),
            medians["replay"] / disk,
            REPLAY_GOAL,
        ),
        Row(
            "10",
            f"{what}: Store.get + decoding every image (result.images) vs the same",
            fine_ms(medians["replay_decoded"]),
            fine_ms(disk),
            medians["replay_decoded"] / disk,
        ),
    ]


def run_cost(plan: Plan, server: str) -> list[Row]:
    del server
    args = [str(plan.store_n), plan.store_size, str(plan.store_reps)]
    medians = in_subprocess("cost", args, warm_up=plan.warm_up)
    on, off = medians["store_on"], medians["store_off"]
    return [
        Row(
            "11",
            f"cell of {plan.store_n} images {plan.store_size}, zero latency: store on vs off",
            f"{ms(on)} ({(on - off) * 1000:+.0f} ms)",
            ms(off),
            on / off,
            STORE_GOAL,
        )
    ]


def fine_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def in_subprocess(which: str, args: Sequence[str], *, warm_up: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.store", which, *args, *(["--warm-up"] if warm_up else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        raise RuntimeError(f"bench.store {which} failed:\n{done.stderr}")
    medians: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return medians


# -- in the subprocess ---------------------------------------------------------------------


def cell(
    url: str, config: dict[str, Any], n: int, size: str, seed: int
) -> tuple[Generation, ImageResult]:
    """`mm.generate(PROMPT, n=n, size=size, seed=seed, progress="none")` with `config`
    (which `mm.generate` takes from the settings alone): the same steps."""
    from mesh_magics.client.prepare import prepare, request_fields
    from mesh_magics.engine.wait import run_blocking
    from mesh_magics.views import make_view

    fields = request_fields({"n": n, "size": size, "seed": seed}, None)
    run = prepare(PROMPT, fields, config=config, base_url=url)
    result = run_blocking(run, make_view(run.heading, "none", None))
    if len(result) != n:
        raise RuntimeError(f"{len(result)} images, not {n}")
    return run, result


def configs(store: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings with the store on (in `store`, never ~/.cache) and off."""
    from mesh_magics.settings import configured

    on = {**configured(), "store": True, "store_dir": str(store), "replay": False}
    return on, {**on, "store": False}


def measure_replay(n: int, size: str, reps: int, *, warm_up: bool) -> dict[str, float]:
    from PIL import Image

    from mesh_magics.store.disk import image_path

    with tempfile.TemporaryDirectory() as folder, ServerProcess(latency=0) as server:
        on, _ = configs(Path(folder))
        run, made = cell(server.url, on, n, size, seed=0)
        store, key = run.store, run.store_key
        if store is None:
            raise RuntimeError("the store did not open")
        paths = [
            image_path(store.directory / "images", hashlib.sha256(data).hexdigest(), fmt)
            for data, fmt in zip(made.data, made.formats, strict=True)
        ]
        if not all(path.is_file() for path in paths):
            raise RuntimeError("the stored files are not where the store keeps them")
        del made

        def replayed() -> ImageResult:
            result = store.get(key)
            if result is None or len(result) != n or not result.replayed:
                raise RuntimeError("the stored cell did not replay")
            return result

        def replay() -> float:
            started = time.perf_counter()
            result = replayed()
            touched = sum(len(data) for data in result.data)
            elapsed = time.perf_counter() - started
            assert touched > 0
            return elapsed

        def replay_decoded() -> float:
            started = time.perf_counter()
            images = replayed().images
            elapsed = time.perf_counter() - started
            assert len(images) == n
            return elapsed

        def disk() -> float:
            started = time.perf_counter()
            images = []  # kept, as a replay's are: each decoded into memory of its own
            for path in paths:
                image = Image.open(io.BytesIO(path.read_bytes()))
                image.load()
                images.append(image)
            elapsed = time.perf_counter() - started
            assert len(images) == n
            return elapsed

        contenders: dict[str, Callable[[], float]] = {
            "replay": replay,
            "replay_decoded": replay_decoded,
            "disk": disk,
        }
        return rounds(contenders, reps, warm_up=warm_up)


def measure_cost(n: int, size: str, reps: int, *, warm_up: bool) -> dict[str, float]:
    seeds = itertools.count()  # a new request every time: the store writes new files
    with tempfile.TemporaryDirectory() as folder, ServerProcess(latency=0) as server:
        on, off = configs(Path(folder))

        def timed(config: dict[str, Any]) -> Callable[[], float]:
            def run_cell() -> float:
                started = time.perf_counter()
                cell(server.url, config, n, size, next(seeds))
                return time.perf_counter() - started

            return run_cell

        return rounds({"store_on": timed(on), "store_off": timed(off)}, reps, warm_up=warm_up)


if __name__ == "__main__":
    which, count, size, reps, *flags = sys.argv[1:]
    measure = measure_replay if which == "replay" else measure_cost
    print(json.dumps(measure(int(count), size, int(reps), warm_up="--warm-up" in flags)))
