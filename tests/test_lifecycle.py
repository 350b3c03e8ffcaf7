"""The run lifecycle, as a user meets it: what was paid for is recorded, bound and shown
first; a side effect that fails after that (`--save` into a folder that cannot be made)
fails the cell in one line and takes nothing back; an interrupt keeps what had finished;
in Python an interrupt stays a `KeyboardInterrupt`; a sweep handle is a handle.

The API is the embedded backend on loopback; interrupts are real signals."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.engine.usage import session_usage
from mesh_magics.errors import GenerationCancelled, IncompleteResultError, SaveError
from mesh_magics.local import LocalServer
from mesh_magics.results.image_sweep import ImageSweep, SweepError
from mesh_magics.results.result import ImageResult
from mesh_magics.settings import configured
from mesh_magics.store import open_store

from .support import interrupt_when, magics, run_cell, script_env, settled, stored

WAIT = 30.0  # generous bound of every wait on a condition
SLOW_MODEL = "vertex/imagen-3"


def images_shown(outputs: list[dict[str, Any]]) -> int:
    """How many images the cell's rich outputs show (an image, or tiles of a grid)."""
    count = 0
    for data in outputs:
        count += sum(1 for mime in data if mime.startswith("image/"))
        count += str(data.get("text/html", "")).count("<img ")
    return count


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A folder `--save` cannot make: its parent is a file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "out"


# -- a side effect that fails takes nothing back ----------------------------------------------


def test_a_failed_save_keeps_the_result_bound_and_shown_and_fails_the_cell_in_one_line(
    ip: InteractiveShell, server: LocalServer, store_dir: Path, unwritable: Path
) -> None:
    run = run_cell(ip, f"%%meshimage -o t_kept --size 64x64 --save {unwritable}\nA fox")
    assert not run.success
    assert isinstance(run.error, SaveError)
    assert type(run.error).__name__ in run.error._render_traceback_()[0]
    assert len(run.error._render_traceback_()) == 1  # one line, no traceback
    kept = ip.user_ns["t_kept"]
    assert isinstance(kept, ImageResult) and len(kept) == 1
    assert images_shown(run.outputs) == 1  # shown, though the cell failed
    assert [r.request_id for r in stored(ip)] == [kept.request_id]


def test_a_failed_save_of_a_sweep_keeps_every_run_bound_and_shown(
    ip: InteractiveShell, server: LocalServer, store_dir: Path, unwritable: Path
) -> None:
    run = run_cell(ip, f"%%meshimage -o t_grid --size 64x64 --seed 1,2 --save {unwritable}\nA fox")
    assert isinstance(run.error, SaveError)
    sweep = ip.user_ns["t_grid"]
    assert isinstance(sweep, ImageSweep) and len(sweep.results) == 2
    assert images_shown(run.outputs) == 2
    assert len(stored(ip)) == 2


def test_an_incomplete_result_is_bound_and_shown_then_the_cell_fails(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    usage_before = sum(line.requests for line in session_usage().lines())
    run = run_cell(
        ip, '%%meshimage -o t_fewer -n 3 --size 64x64\n-p mesh_local=\'{"fault": "fewer"}\'\nA fox'
    )
    assert isinstance(run.error, IncompleteResultError)
    assert "kept" in str(run.error)
    kept = ip.user_ns["t_fewer"]
    assert isinstance(kept, ImageResult) and 0 < len(kept) < 3
    assert images_shown(run.outputs) == len(kept)
    # It was billed, so it counts in --usage.
    assert sum(line.requests for line in session_usage().lines()) == usage_before + 1


def test_one_corrupt_image_of_three_keeps_the_good_two_and_names_the_bad_one(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    corrupt = '-p mesh_local=\'{"fault": "one_corrupt"}\''
    run = run_cell(ip, f"%%meshimage -o t_good -n 3 --size 64x64\n{corrupt}\nA fox")
    assert isinstance(run.error, IncompleteResultError)
    assert str(run.error).startswith("image 3 of 3 is a truncated PNG")
    assert "the 2 images that decoded are kept" in str(run.error)
    assert len(run.error._render_traceback_()) == 1
    kept = ip.user_ns["t_good"]
    assert isinstance(kept, ImageResult) and len(kept) == 2
    assert images_shown(run.outputs) == 2
    assert [len(r) for r in stored(ip)] == [2]


def printed_so_far() -> str:
    """What the running cell has printed (its stdout is captured in a StringIO)."""
    out = sys.stdout
    return out.getvalue() if hasattr(out, "getvalue") else ""


def test_a_rate_limit_pause_says_what_it_waits_for_and_an_interrupt_ends_it(
    ip: InteractiveShell, server: LocalServer
) -> None:
    """A 429 pauses the host for its Retry-After, beyond the run that met it: a later,
    unrelated cell says what it waits for instead of sitting at "connecting", and an
    interrupt ends each wait at once."""
    magics(ip).max_retry_wait = 60.0
    limited = '-p mesh_local=\'{"fault": "status:429", "retry_after": 60}\''
    interrupter = interrupt_when(lambda: "retrying in" in printed_so_far())
    first = run_cell(ip, f"%%meshimage --size 64x64\n{limited}\nA fox")
    assert interrupter.finished() is not None, f"no retry was announced: {first.error!r}"
    assert isinstance(first.error, GenerationCancelled)
    before = server.request_count

    interrupter = interrupt_when(lambda: "rate limited by" in printed_so_far())
    started = time.monotonic()
    later = run_cell(ip, "%%meshimage --size 64x64\nAn owl")
    assert interrupter.finished() is not None, f"the later cell did not wait: {later.error!r}"
    assert isinstance(later.error, GenerationCancelled)
    assert time.monotonic() - started < WAIT  # not the 60 s of the pause
    waited = rf"rate limited by 127\.0\.0\.1:{server.port}, retrying in (5\d|60) s"
    assert re.search(waited, later.stdout), later.stdout
    assert server.request_count == before  # nothing was sent while the host was paused


def test_a_blocking_cell_over_max_images_per_cell_fails_before_sending(
    ip: InteractiveShell, server: LocalServer
) -> None:
    magics(ip).max_images_per_cell = 5
    before = server.request_count
    run = run_cell(ip, "%%meshimage -n 6 --size 64x64\nA fox")
    assert "6 images" in str(run.error) and "max_images_per_cell (5)" in str(run.error)
    assert server.request_count == before
    assert run_cell(ip, "%%meshimage -n 6 --size 64x64 --yes\nA fox").success


# -- an interrupt keeps what had finished ------------------------------------------------------


def test_interrupting_a_sweep_binds_and_shows_the_finished_runs_and_marks_the_rest_cancelled(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    server.model_latency = {SLOW_MODEL: 60.0}
    started = time.monotonic()
    interrupter = interrupt_when(lambda: len(stored(ip)) == 1)
    run = run_cell(
        ip,
        f"%%meshimage -o t_partial --size 64x64 --model openai/gpt-image-1,{SLOW_MODEL}\nA fox",
    )
    returned = time.monotonic()
    sent_at = interrupter.finished()
    assert sent_at is not None, f"the sweep ended before the interrupt: {run.error!r}"
    assert isinstance(run.error, GenerationCancelled)
    assert "1 of 2 runs had finished" in str(run.error)
    said = float(str(run.error).split("after ")[1].split(" s")[0])
    assert sent_at - started - 0.5 <= said <= returned - started + 0.5  # the sweep's own time
    sweep = ip.user_ns["t_partial"]
    assert [r.status for r in sweep.runs] == ["done", "cancelled"]
    assert run.error.partial is sweep
    assert images_shown(run.outputs) == 1
    assert settled(lambda: server.in_flight == 0, timeout=WAIT), "a connection is left open"


def test_ctrl_c_during_mm_sweep_in_a_script_is_a_keyboard_interrupt_carrying_the_finished_runs(
    server: LocalServer, tmp_path: Path
) -> None:
    server.model_latency = {SLOW_MODEL: 60.0}
    store = tmp_path / "store"
    script = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import mesh_magics as mm
            try:
                mm.sweep("a fox", model=["openai/gpt-image-1", {SLOW_MODEL!r}],
                         base_url={server.url!r}, size="64x64", progress="none")
            except KeyboardInterrupt as stopped:
                partial = stopped.partial
                print(type(stopped).__name__, [run.status for run in partial.runs])
                print(len(partial.results[0]), stopped)
        """),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**script_env(), "MESH_MAGICS_STORE": str(store)},
    )
    config = {**configured(), "store_dir": str(store)}
    try:
        reached = settled(
            lambda: store.exists() and len(open_store(config).history()) == 1,  # type: ignore[union-attr]
            timeout=WAIT,
        )
        assert reached, "the fast run never reached the store"
        script.send_signal(signal.SIGINT)
        out, err = script.communicate(timeout=WAIT)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 0, err
    assert out.splitlines()[0] == "RunInterrupted ['done', 'cancelled']"
    assert out.splitlines()[1].startswith("1 cancelled by an interrupt after ")


# -- mm.sweep says when runs failed ------------------------------------------------------------


def test_mm_sweep_with_failed_runs_raises_sweep_error_carrying_the_sweep(
    ip: InteractiveShell, server: LocalServer
) -> None:
    fault = {"mesh_local": {"fault": "status:500"}}
    with pytest.raises(SweepError) as raised:
        mm.sweep(["a fox", "an owl"], size="64x64", progress="none", params=fault)
    assert len(raised.value.sweep) == 2 and len(raised.value.sweep.failed) == 2
    quiet = mm.sweep("a fox", size="64x64", progress="none", params=fault, raise_errors=False)
    assert quiet.status == "failed" and len(quiet.failed) == 1


def test_an_empty_sweep_is_refused_before_anything_is_sent(server: LocalServer) -> None:
    before = server.request_count
    with pytest.raises(mm.OptionError, match="no prompts"):
        mm.sweep([], base_url=server.url, progress="none")
    with pytest.raises(mm.OptionError, match="seed: an empty list"):
        mm.sweep("a fox", seed=[], base_url=server.url, progress="none")
    assert server.request_count == before


# -- a sweep handle is a handle ----------------------------------------------------------------


def test_a_background_sweep_handle_has_status_cancel_and_result(server: LocalServer) -> None:
    server.latency = 60.0
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import mesh_magics as mm
            h = mm.start("a fox", seed=[1, 2], size="64x64", progress="none",
                         base_url={server.url!r})
            print(h.status, h.done())
            for touch in (lambda: h.save("anywhere"), h.retry, lambda: h.result(timeout=0.1)):
                try:
                    touch()
                except (mm.StillRunning, TimeoutError) as error:
                    print(type(error).__name__, error)
            print(h.cancel(), h.wait(30), h.status)
            try:
                h.result()
            except mm.SweepError as error:
                print("SweepError", len(error.sweep.failed))
            g = mm.start("a fox", size="64x64", progress="none", base_url={server.url!r})
            try:
                g.result(timeout=0.1)
            except TimeoutError as error:
                print("TimeoutError", error)
            g.cancel()
        """),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        env=script_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "running False"
    assert lines[1].startswith("StillRunning save(): this sweep is still running (0 of 2 runs")
    assert lines[2].startswith("StillRunning retry(): this sweep is still running")
    assert lines[3] == (
        "TimeoutError the sweep is still running after 0.1 s (0 of 2 runs ended); "
        "wait longer, or .cancel() it"
    )
    assert lines[4] == "True True cancelled"
    assert lines[5] == "SweepError 2"
    assert lines[6].startswith("TimeoutError the generation is still running after 0.1 s (")
    assert settled(lambda: server.in_flight == 0, timeout=WAIT)
