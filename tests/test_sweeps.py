"""Sweeps as a user runs them: a cell of several prompts (`---`) and comma lists, at a
bounded concurrency per host, through 429s and failures, cancelled by an interrupt, in
the background of a real kernel, and `mm.sweep()` from Python. The API is the embedded
backend over loopback; what it counted is the judge of what was sent."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.engine.loop import engine
from mesh_magics.errors import GenerationCancelled, OptionError
from mesh_magics.local import LocalServer
from mesh_magics.results.image_sweep import ImageSweep, MissingDependency, SweepError

from .kernel import HeldServer, frontend
from .support import (
    FAKE_KEY,
    FaultsBySeed,
    generations,
    interrupt_when,
    magics,
    open_sockets,
    run_cell,
    settled,
    stored,
)

MODELS = ("openai/gpt-image-1", "vertex/imagen-3")
WAIT = 30.0  # generous upper bound of every wait on a condition


def grid_images(html: str) -> list[str]:
    return re.findall(r'<img src="data:image/(?:png|jpeg);base64,', html)


# -- concurrency ---------------------------------------------------------------------------


def test_three_prompts_by_two_models_run_three_at_a_time_and_show_a_grid(
    ip: InteractiveShell, store_dir: Path
) -> None:
    with HeldServer(ping_interval=0.2) as held:
        # The first requests are held until three are in flight, so they surely overlap;
        # a client that sent more than three would have more in flight, held, too.
        held.hold()
        held.latency = 0.3

        def release_at_three() -> None:
            held.wait_for_in_flight(3, WAIT)
            held.release()

        releaser = threading.Thread(target=release_at_three, daemon=True)
        releaser.start()
        run = run_cell(
            ip,
            f"%%meshimage -o t_sw --concurrency 3 --size 64x64 --base-url {held.url}\n"
            f"--model {','.join(MODELS)}\n"
            "A fox in the snow\n---\nAn owl at dusk\n---\nA heron in the reeds",
        )
        releaser.join(WAIT)
        held.release()

        assert run.success, run.error
        assert held.generation_count == 6
        assert held.max_in_flight == 3
        asked = {(r.body["prompt"], r.body["model"]) for r in generations(held)}
        prompts = ("A fox in the snow", "An owl at dusk", "A heron in the reeds")
        assert asked == {(p, m) for p in prompts for m in MODELS}

    sweep = ip.user_ns["t_sw"]
    assert isinstance(sweep, ImageSweep) and run.result is sweep
    assert len(sweep) == 6 and len(sweep.results) == 6 and not sweep.failed
    assert [(r.prompt, r.params["model"]) for r in sweep] == [
        (p, m) for p in prompts for m in MODELS
    ]
    data, _ = sweep._repr_mimebundle_()
    grid = data["text/html"]
    assert len(grid_images(grid)) == 6
    assert re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', grid) == list(MODELS)
    assert re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', grid) == list(prompts)
    assert data["text/plain"].startswith("<ImageSweep ✓ 6 runs · 6 images")
    lines = run.stdout.splitlines()  # the progress view ends with the summary line
    assert any(line.startswith("✓ 6 runs · 6 images · ") for line in lines), run.stdout


def test_a_429_pauses_every_run_to_the_host_for_its_retry_after(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    server.latency = 0.3  # without the pause, the next runs would go out after 0.3 s
    server.rate_limit_on(1, retry_after="1")
    run = run_cell(
        ip,
        "%%meshimage -o t_sw --concurrency 4 --size 64x64 --seed 1,2,3,4,5,6,7,8\nA fox",
    )
    assert run.success, run.error
    sweep = ip.user_ns["t_sw"]
    assert len(sweep.results) == 8 and not sweep.failed

    log = sorted(generations(server), key=lambda r: r.at)
    assert len(log) == 9  # eight runs, one of them twice
    (limited,) = [r for r in log if r.status == 429]
    assert limited.answered_at is not None
    pause_ends = limited.answered_at + 1
    first_wave = log[:4]  # sent together when the sweep began, before any answer
    early = [r for r in log if limited.answered_at < r.at < pause_ends]
    # Only requests sent before the client read the 429 may come in the pause.
    assert all(r in first_wave for r in early), [(r.body["seed"], r.at) for r in early]
    assert len(early) <= 3
    later = [r for r in log if r not in first_wave]
    assert len(later) == 5 and all(r.at >= pause_ends for r in later)
    again = [r for r in log if r.headers["x-request-id"] == limited.headers["x-request-id"]]
    assert len(again) == 2 and again[1].status == 200


# -- failures, retry -----------------------------------------------------------------------


def test_mixed_failures_bind_show_and_store_the_successes_and_retry_only_the_failed(
    ip: InteractiveShell, store_dir: Path
) -> None:
    faults = {2: "status:429", 3: "status:500", 4: "drop"}
    api = FaultsBySeed(faults, ping_interval=0.2)
    with api:
        ip.user_ns["t_sw"] = "old value"
        run = run_cell(
            ip,
            f"%%meshimage -o t_sw --size 64x64 --seed 1,2,3,4,5 --base-url {api.url}\nA fox",
        )
        assert not run.success
        assert isinstance(run.error, SweepError), repr(run.error)
        message = str(run.error)
        assert message.startswith("3 of 5 runs failed: "), message
        for label in ("RateLimitError", "InternalServerError", "StreamError"):
            assert label in message, message
        assert len(run.error._render_traceback_()) == 1  # one line, not a traceback
        # A 429 is retried (max_retries, 2), the 500 and the dropped stream are not.
        assert api.generation_count == 1 + 3 + 1 + 1 + 1

        sweep = ip.user_ns["t_sw"]  # bound although the cell failed: the images were billed
        assert isinstance(sweep, ImageSweep) and run.error.sweep is sweep
        assert [r.status for r in sweep] == ["done", "failed", "failed", "failed", "done"]
        assert [r.request["seed"] for r in sweep.results] == [1, 5]
        (shown,) = [o for o in run.outputs if "text/html" in o]  # the grid, then the error
        assert len(grid_images(shown["text/html"])) == 2
        assert shown["text/html"].count("✗ ") == 3
        kept = stored(ip)
        assert sorted(r.request["seed"] for r in kept) == [1, 5]
        assert {r.data[0] for r in kept} == {r.data[0] for r in sweep.results}

        api.faults = {}
        api.reset_counts()
        again = run_cell(ip, "t_again = t_sw.retry()")
        assert again.success, again.error
        assert api.generation_count == 3  # only the failed runs
        assert sorted(r.body["seed"] for r in generations(api)[-3:]) == [2, 3, 4]
        merged = ip.user_ns["t_again"]
        assert [r.status for r in merged] == ["done"] * 5
        assert [r.params["seed"] for r in merged] == [1, 2, 3, 4, 5]
        assert merged[0].result is sweep[0].result  # the old successes, kept in place
    assert len(stored(ip)) == 5


def test_prompts_from_a_list_are_sent_verbatim_never_formatted(
    ip: InteractiveShell, server: LocalServer
) -> None:
    rows = ["A fox {os.environ[MESHAPI_API_KEY]}", "An owl {0:>999999999}", "{{kept}} {t_x}"]
    ip.user_ns.update(t_rows=rows, t_x="filled")
    run_cell(ip, "import os")
    run = run_cell(ip, "%meshimage -o t_sw --size 64x64 --prompts t_rows")
    assert run.success, run.error
    assert sorted(r.body["prompt"] for r in generations(server)) == sorted(rows)
    assert [r.prompt for r in ip.user_ns["t_sw"]] == rows
    assert FAKE_KEY not in repr([r.body for r in server.requests]) + run.stdout + repr(run.outputs)


@pytest.mark.parametrize(
    ("models", "says", "hint"),
    [
        ("nope/a,nope/a", "its one run failed: NotFoundError: ", ".retry() runs it again"),
        ("nope/a,nope/b", "both runs failed: NotFoundError: ", ".retry() runs them again"),
        ("nope/a,nope/b,nope/c", "all 3 runs failed: NotFoundError: ", "runs them again"),
        (
            f"nope/a,{MODELS[0]}",
            "1 of 2 runs failed: NotFoundError: ",
            ".retry() runs only the failed one",
        ),
    ],
)
def test_a_sweep_error_reads_right_for_one_two_and_many_runs(
    ip: InteractiveShell, server: LocalServer, models: str, says: str, hint: str
) -> None:
    run = run_cell(ip, f"%%meshimage -o t_sw --size 64x64 --model {models}\nA fox")
    assert isinstance(run.error, SweepError), repr(run.error)
    message = str(run.error)
    assert message.startswith(says) and message.endswith(hint), message
    if says.startswith(("its one", "1 of")):
        assert "(1)" not in message  # a count says nothing when one run failed
    (line,) = run.error._render_traceback_()
    assert line.startswith("SweepError: ")


def test_counts_of_one_are_singular(ip: InteractiveShell, server: LocalServer) -> None:
    dry = run_cell(ip, "%%meshimage --dry-run --size 64x64 --seed 1,1\nA fox")
    assert dry.success, dry.error
    assert dry.outputs[0]["text/plain"].startswith("dry run, nothing sent: 1 run, 1 image, ")
    run = run_cell(ip, "%%meshimage -o t_sw --size 64x64 --seed 1,1\nA fox")
    assert run.success, run.error
    assert "sweep · 1 run · 1 image" in run.stdout, run.stdout
    assert ip.user_ns["t_sw"].summary().startswith("✓ 1 run · 1 image · ")
    shown = run.stdout + repr(run.outputs)
    for wrong in ("1 runs", "1 images", "1 requests", "1 replays"):
        assert wrong not in shown


# -- before anything is sent ---------------------------------------------------------------


def test_dry_run_lists_the_runs_the_images_and_the_cost_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer
) -> None:
    run = run_cell(
        ip,
        f"%%meshimage --dry-run -o t_sw -n 2 --size 64x64 --model {','.join(MODELS)}\n"
        "A fox\n---\nAn owl",
    )
    assert run.success, run.error
    assert server.generation_count == 0
    assert all(not r.path.endswith("/images/generations") for r in server.requests)
    assert "t_sw" not in ip.user_ns
    (shown,) = run.outputs
    lines = shown["text/plain"].splitlines()
    assert lines[0] == f"dry run, nothing sent: 4 runs, 8 images, to {server.url}"
    assert lines[1:5] == [
        f"  {model} · 2 × {prompt!r}" for prompt in ("A fox", "An owl") for model in MODELS
    ]
    # 2 prompts x 2 images x ($0.042 + $0.030), the per-image prices of /v1/models
    assert lines[5] == "estimated cost: ~$0.288"


def test_a_sweep_over_max_images_per_cell_fails_before_sending_unless_yes(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    magics(ip).max_images_per_cell = 3
    cell = "%%meshimage -o t_sw --size 64x64 --seed 1,2 {}\nA fox\n---\nAn owl"
    run = run_cell(ip, cell.format(""))
    assert isinstance(run.error, OptionError), repr(run.error)
    assert "4 images in 4 runs" in str(run.error) and "--yes" in str(run.error)
    assert server.request_count == 0 and "t_sw" not in ip.user_ns

    run = run_cell(ip, cell.format("--yes"))
    assert run.success, run.error
    assert server.generation_count == 4
    assert len(ip.user_ns["t_sw"].results) == 4


# -- an interrupt --------------------------------------------------------------------------


def test_the_runs_of_a_sweep_share_keep_alive_connections(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    before = server.connections_accepted
    sockets_before = open_sockets()
    run = run_cell(
        ip, "%%meshimage -o t_pool --concurrency 3 --size 64x64 --seed 1,2,3,4,5,6,7,8,9\nA fox"
    )
    assert run.success, run.error
    assert len(ip.user_ns["t_pool"].results) == 9
    # Nine runs, three at a time, over at most three connections (one each, before).
    assert 1 <= server.connections_accepted - before <= 3
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5), "the pool stays open"


def test_an_interrupt_stops_every_run_closes_every_connection_and_binds_nothing(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    server.latency = 30
    sockets_before = open_sockets()
    interrupter = interrupt_when(lambda: server.in_flight >= 2)
    run = run_cell(
        ip, "%%meshimage -o t_cancel --concurrency 2 --size 64x64 --seed 1,2,3,4,5\nA fox"
    )
    returned = time.monotonic()
    sent_at = interrupter.finished()
    assert sent_at is not None, f"the sweep ended before the interrupt: {run.error!r}"
    assert isinstance(run.error, GenerationCancelled), repr(run.error)
    assert returned - sent_at < 5
    assert "t_cancel" not in ip.user_ns
    assert settled(lambda: server.disconnects == 2, timeout=5), server.disconnects
    assert settled(lambda: engine().running_tasks() == 0, timeout=5), "a run is left"
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5), "a socket is open"
    assert server.generation_count == 2  # the runs that waited for a slot never went out
    assert server.in_flight == 0
    assert stored(ip) == []
    assert run_cell(ip, "6 * 7").result == 42


# -- from Python ---------------------------------------------------------------------------


def test_mm_sweep_returns_every_combination_with_a_table(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESH_MAGICS_STORE", str(tmp_path))
    sweep = mm.sweep(
        ["A fox", "An owl"],
        model=list(MODELS),
        seed=[1, 2],
        base_url=server.url,
        size="64x64",
        progress="none",
    )
    assert isinstance(sweep, ImageSweep)
    assert len(sweep) == 8 and len(sweep.results) == 8
    assert server.generation_count == 8
    rows = sweep.table()
    combos = [(p, m, s) for p in ("A fox", "An owl") for m in MODELS for s in (1, 2)]
    assert [(row["prompt"], row["model"], row["seed"]) for row in rows] == combos
    assert {row["status"] for row in rows} == {"done"}
    assert {row["images"] for row in rows} == {1}
    assert {row["size"] for row in rows} == {"64x64"}
    assert len({row["request_id"] for row in rows}) == 8
    assert all(row["error"] is None and row["replayed"] is False for row in rows)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependency, match="pip install pandas"):
            sweep.to_pandas()
    else:
        frame = sweep.to_pandas()
        assert len(frame) == 8 and list(frame["seed"]) == [s for *_, s in combos]


# -- --bg in a real kernel -----------------------------------------------------------------


@pytest.fixture
def held() -> Iterator[HeldServer]:
    with HeldServer(ping_interval=0.2) as api:
        yield api


def test_a_background_sweep_returns_at_once_and_its_grid_lands_in_the_cell(
    tmp_path: Path, held: HeldServer
) -> None:
    env: dict[str, str | None] = {
        "MESHAPI_API_KEY": FAKE_KEY,
        "MESHAPI_BASE_URL": None,
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "MESH_MAGICS_STORE": str(tmp_path / "store"),
    }
    with frontend(tmp_path, env) as k:
        k.run("%load_ext mesh_magics")
        held.hold()
        cell = k.execute(
            f"%%meshimage --bg -o sw --size 64x64 --base-url {held.url}\n"
            f"--model {','.join(MODELS)}\nA fox\n---\nAn owl"
        )
        assert k.reply(cell)["content"]["status"] == "ok"  # while the server holds them
        k.wait_idle(cell)
        # All four are at the server and none answered: the cell did not wait for them.
        k.wait_for(lambda: held.in_flight == 4, "the four requests, held")
        assert held.generations() == 4
        view, slot = k.displays(cell)
        assert k.updates(slot) == []
        held.release()

        def grid() -> str | None:
            for m in k.updates(slot):
                html = m["content"]["data"].get("text/html", "")
                if grid_images(html):
                    return str(html)
            return None

        html = k.wait_for(grid, "the grid in the slot")
        assert len(grid_images(html)) == 4
        assert re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', html) == list(MODELS)
        assert re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', html) == ["A fox", "An owl"]
        assert {m["parent_header"]["msg_id"] for m in k.updates(slot)} == {cell}
        summary = k.wait_for(
            lambda: next(
                (
                    m["content"]["data"]["text/plain"]
                    for m in k.updates(view)
                    if str(m["content"]["data"].get("text/plain", ""))[:1] in "✓✗"
                ),
                None,
            ),
            "the summary line",
        )
        assert summary.startswith("✓ 4 runs · 4 images"), summary
        check = k.run("print(type(sw).__name__, len(sw), len(sw.results), sw.failed)")
        assert k.printed(check) == "ImageSweep 4 4 []\n"


def test_waiting_for_a_slot_is_not_counted_against_the_timeout(server: LocalServer) -> None:
    server.latency = 0.4
    sweep = mm.sweep(
        "a fox", seed=[1, 2, 3, 4], concurrency=1, timeout=1.5, base_url=server.url,
        size="64x64", progress="none",
    )  # fmt: skip
    assert not sweep.failed  # four runs one after another: 1.6 s in all, 0.4 s each
    assert all(result.elapsed < 1.5 for result in sweep.results)
