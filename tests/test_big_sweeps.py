"""Sweeps of thousands of runs, as a user runs them: memory stays flat (a run's result
reads its images from the store once it is stored; with the store off it keeps them), a
displayed sweep keeps thumbnails only, a large sweep's grid is paged so that a saved
notebook of 1,000 images stays small and shows every run, and a dry run of 10,000 runs
prints a short plan and sends nothing. The API is the embedded backend over loopback; its
`noise` fault draws pictures no encoder shrinks, as big as photographs."""

from __future__ import annotations

import base64
import gc
import hashlib
import io
import re
import threading
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image

import mesh_magics as mm
from bench.sweep_notebook import execute_sweep_notebook
from mesh_magics.errors import OptionError
from mesh_magics.local import LocalServer

from .kernel import HeldServer
from .support import generations, magics, run_cell, stored, wait_for, worker_threads

NOISE = '-p mesh_local=\'{"fault": "noise"}\''
NOISE_PARAMS = {"mesh_local": {"fault": "noise"}}
THUMBNAILS = re.compile(r'<img src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"')


def drawn(server: LocalServer, body: dict[str, Any]) -> bytes:
    """The bytes the embedded backend sends for `body` (it draws the same request the
    same way, noise included), asked for again without streaming."""
    plain = {**body, "stream": False, "response_format": "b64_json"}
    answer = httpx.post(f"{server.url}/v1/images/generations", json=plain, timeout=30)
    (entry,) = answer.json()["data"]
    return base64.b64decode(entry["b64_json"])


MACHINERY = ("httpx", "httpcore", "h11", "ssl", "socket", "asyncio", "concurrent", "sqlite3")


def held_bytes(root: object) -> list[int]:
    """The sizes of the byte strings of 1 KiB or more that `root` keeps alive (reachable
    through its references; a function's through its closure, not its module; not into
    the connection machinery of a pool it may reach, whose buffers hold no image),
    largest first: what of any image it holds."""
    seen: set[int] = set()
    sizes: list[int] = []
    todo = [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType):
            continue
        if type(item).__module__.split(".")[0] in MACHINERY:
            continue
        seen.add(id(item))
        if isinstance(item, bytes | bytearray | memoryview):
            if len(item) >= 1024:
                sizes.append(len(item))
        elif isinstance(item, types.FunctionType):
            todo += [cell.cell_contents for cell in item.__closure__ or () if _full(cell)]
            todo += [item.__defaults__, item.__kwdefaults__]
        elif not isinstance(item, types.BuiltinFunctionType):
            todo += gc.get_referents(item)
    return sorted(sizes, reverse=True)


def _full(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # a closure variable not assigned yet
        return False
    return True


# -- the results of a sweep: read from the store ---------------------------------------------


def test_a_cells_sweep_results_read_their_bytes_from_the_store_and_survive_marks_and_save(
    ip: InteractiveShell, server: LocalServer, store_dir: Path, tmp_path: Path
) -> None:
    run = run_cell(ip, f"%%meshimage -o t_big --size 128x128 --seed 1,2,3 {NOISE}\nA fox")
    assert run.success, run.error
    sweep = ip.user_ns["t_big"]
    assert len(sweep.results) == 3
    sent = {r.request["seed"]: drawn(server, r.request) for r in sweep.results}
    assert min(len(data) for data in sent.values()) > 40_000  # noise: as big as the pixels
    for result in sweep.results:
        assert not result.in_memory  # it holds no image bytes...
        assert result.data == [sent[result.request["seed"]]]  # ...and gives the server's
    assert held_bytes(sweep) == []  # nothing of any image is kept

    first = sweep[0].result
    assert first[0].size == (128, 128)  # decoded from the store's file
    assert first[0].tobytes() == Image.open(io.BytesIO(sent[1])).convert("RGB").tobytes()

    sweep[0].rate(4)
    sweep.tag("study")
    assert first.rating == 4 and first.tags == ("study",)
    marked = {r.request["seed"]: (r.rating, r.tags) for r in stored(ip)}
    assert marked == {1: (4, ("study",)), 2: (None, ("study",)), 3: (None, ("study",))}

    paths = sweep.save(tmp_path / "out")
    assert [p.name for p in paths][-1] == "grid.png" and len(paths) == 4
    for path in paths[:3]:
        meta = mm.read_metadata(path)
        assert meta["sha256"] == hashlib.sha256(sent[meta["seed"]]).hexdigest()
    assert not first.in_memory  # saving read the files, and kept nothing


def test_mm_sweep_results_are_lazy_and_report_grid_and_table_read_the_store(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESH_MAGICS_STORE", str(tmp_path / "store"))
    sweep = mm.sweep(
        ["A fox", "An owl"], seed=[1, 2], size="96x96", base_url=server.url,
        progress="none", params=NOISE_PARAMS,
    )  # fmt: skip
    assert len(sweep.results) == 4 and not any(r.in_memory for r in sweep.results)
    for result in sweep.results:
        assert result.data == [drawn(server, result.request)]
    assert sweep.grid_image(tile=96).size[0] > 2 * 96
    report = sweep.report(tmp_path / "report.html").read_text()
    assert len(THUMBNAILS.findall(report)) == 4
    assert [row["status"] for row in sweep.table()] == ["done"] * 4
    assert held_bytes(sweep) == []


def test_with_the_store_off_a_sweep_keeps_its_bytes_since_nothing_else_does(
    ip: InteractiveShell, server: LocalServer
) -> None:
    magics(ip).store = False
    run = run_cell(ip, f"%%meshimage -o t_big --size 64x64 --seed 1,2 {NOISE}\nA fox")
    assert run.success, run.error
    sweep = ip.user_ns["t_big"]
    for result in sweep.results:
        assert result.in_memory and result.data == [drawn(server, result.request)]
    assert held_bytes(sweep)[:2] == sorted((len(r.data[0]) for r in sweep.results), reverse=True)
    with pytest.raises(OptionError, match="in no store"):
        sweep[0].rate(3)


def test_a_sweeps_runs_outlive_the_store_cap_while_their_results_live(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    magics(ip).store_max_bytes = 20_000  # one run of a 64x64 noise PNG (~12 KB)
    run = run_cell(ip, f"%%meshimage -o t_big --size 64x64 --seed 1,2,3,4 {NOISE}\nA fox")
    assert run.success, run.error
    sweep = ip.user_ns["t_big"]
    assert [r.data for r in sweep.results] == [[drawn(server, r.request)] for r in sweep.results]
    assert sorted(r.request["seed"] for r in stored(ip)) == [1, 2, 3, 4]  # over the cap
    ip.displayhook.flush()  # Out[], _N
    for names in (ip.user_ns, ip.user_ns_hidden):  # t_big, and _ (IPython keeps both)
        for name in [name for name, value in names.items() if value is sweep]:
            del names[name]
    run_cell(ip, "None")  # the shell's last execution result held it too
    del sweep, run
    gc.collect()
    assert run_cell(ip, f"%%meshimage --size 64x64 --seed 5 {NOISE}\nA fox").success
    assert [r.request["seed"] for r in stored(ip)] == [5]  # now they may go


# -- running: a window of runs, not all of them ----------------------------------------------


def test_a_sweep_of_many_runs_starts_only_a_window_of_them_at_once(
    ip: InteractiveShell, store_dir: Path
) -> None:
    with HeldServer(ping_interval=0.2) as held:
        held.hold()
        outcome: dict[str, Any] = {}

        prompts = [f"fox {i}" for i in range(40)]  # fields every model takes: no model list

        def sweep() -> None:
            outcome["sweep"] = mm.sweep(
                prompts, size="64x64", concurrency=2, base_url=held.url, progress="none"
            )

        runner = threading.Thread(target=sweep, daemon=True)
        runner.start()
        try:
            wait_for(lambda: held.in_flight == 2, "two runs at the server")
            # Two in flight, two waiting for a slot: the 36 others are not made yet.
            assert 2 <= len(worker_threads()) <= 4
        finally:
            held.release()
            runner.join(60)
    swept = outcome["sweep"]
    assert len(swept.results) == 40 and held.max_in_flight == 2
    assert sorted(r.body["prompt"] for r in generations(held)) == sorted(prompts)


# -- what a displayed sweep keeps ----------------------------------------------------------


def test_a_displayed_sweep_keeps_thumbnails_only(ip: InteractiveShell, store_dir: Path) -> None:
    seeds = ",".join(str(seed) for seed in range(60))  # past the grid: pages of thumbnails
    run = run_cell(ip, f"%%meshimage -o t_big --yes --size 256x256 --seed {seeds} {NOISE}\nA fox")
    assert run.success, run.error
    sweep = ip.user_ns["t_big"]
    image_bytes = min(len(result.data[0]) for result in sweep.results)
    assert image_bytes > 150_000
    html = sweep._repr_mimebundle_()[0]["text/html"]  # as the cell showed it
    assert len(THUMBNAILS.findall(html)) == 60
    assert html.count("<details") == 1 and "runs 1–60 of 60" in html
    held = held_bytes(sweep)  # the thumbnails the display made, kept for the next one
    assert len(held) == 60 and held[0] < image_bytes // 10, held[:3]
    assert sweep._repr_mimebundle_()[0]["text/html"] == html  # from what it kept
    assert held_bytes(sweep) == held


def test_a_small_sweeps_grid_keeps_no_tile_that_is_a_whole_image(
    ip: InteractiveShell, store_dir: Path
) -> None:
    run = run_cell(ip, f"%%meshimage -o t_big --size 256x256 --seed 1,2,3 {NOISE}\nA fox")
    assert run.success, run.error
    sweep = ip.user_ns["t_big"]
    html = sweep._repr_mimebundle_()[0]["text/html"]
    assert len(THUMBNAILS.findall(html)) == 3  # a 512 px tile: the 256 px image itself
    assert held_bytes(sweep) == []  # read from the store for the grid, not kept


# -- a saved notebook of 1,000 images --------------------------------------------------------


def test_a_saved_notebook_of_a_1000_image_sweep_is_under_5_mb_and_shows_every_run(
    server: LocalServer, tmp_path: Path
) -> None:
    saved = execute_sweep_notebook(server.url, 1000, "256x256", tmp_path)
    assert saved.errors == []
    assert server.generation_count == 1000
    assert saved.size < 5_000_000, saved.size
    assert saved.thumbnails == 1000  # a thumbnail for every run...
    assert saved.pages == 10  # ...in pages of 100
    (result,) = [o for o in saved.cell["outputs"] if o["output_type"] == "execute_result"]
    plain = "".join(result["data"]["text/plain"]).splitlines()
    assert plain[0].startswith("<ImageSweep ✓ 1,000 runs · 1,000 images")
    assert plain[-1] == "  … and 950 more runs (.table() lists every one)"
    html = "".join(result["data"]["text/html"])
    assert set(re.findall(r'<img [^>]*width="(\d+)"', html)) == {"80"}  # not the 256 px images


# -- planning ------------------------------------------------------------------------------


def test_a_dry_run_of_10000_runs_prints_a_short_plan_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer
) -> None:
    seeds = ",".join(str(seed) for seed in range(10_000))
    cell = f"%%meshimage --dry-run -o t_big --size 64x64 --seed {seeds} {{}}\nA fox"
    refused = run_cell(ip, cell.format(""))
    assert isinstance(refused.error, OptionError), repr(refused.error)
    assert "10,000 images in 10,000 runs" in str(refused.error) and "--yes" in str(refused.error)

    run = run_cell(ip, cell.format("--yes"))
    assert run.success, run.error
    (shown,) = run.outputs
    lines = shown["text/plain"].splitlines()
    assert lines[0] == f"dry run, nothing sent: 10,000 runs, 10,000 images, to {server.url}"
    assert lines[1:11] == [f"  seed {seed} · 1 × 'A fox'" for seed in range(10)]
    assert lines[11] == "  … and 9,990 more runs"
    assert lines[12] == "estimated cost: ~$420.000"  # 10,000 x $0.042, /v1/models's price
    assert len(lines) == 13
    assert generations(server) == [] and "t_big" not in ip.user_ns
