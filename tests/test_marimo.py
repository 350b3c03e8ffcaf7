"""marimo, first-class: `mm.cell` (a cell of the grammar without magics), replay on by
default there, marimo's own progress, and the tour notebook exported to HTML with its
images.

`mm.cell` is tested in a plain Python script against a loopback server, where nothing
imports IPython or marimo; the marimo side by `marimo export html`, which runs the
notebook in a real marimo kernel (tests/browser/test_marimo.py opens it in a browser).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import mesh_magics
from mesh_magics import settings, views
from mesh_magics.local import LocalServer

from .support import generations

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "notebooks" / "tour_marimo.py"
TOUR_IMAGES = 8  # fox 1, owls 2, the sweep 4, the dropdown's animal 1


def run_script(code: str, server: LocalServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MESHAPI_BASE_URL": server.url,
        "MESH_MAGICS_STORE": str(tmp_path / "store"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mm_cell_in_a_script_does_what_the_magic_does(server: LocalServer, tmp_path: Path) -> None:
    done = run_script(
        '''
        import json, sys
        import mesh_magics as mm
        from mesh_magics import ImageResult, ImageSweep, OptionError

        said = {}
        fox = mm.cell("""--size 512x512 -n 2
            # a comment, as in a cell
            A fox in the snow""")
        said["fox"] = [type(fox).__name__, len(fox), fox.sizes[0], fox.prompt]

        def drawn(animal):  # {animal} from the caller's variables
            return mm.cell("--size 256x256\\nA {animal} at dusk")
        said["owl"] = drawn("owl").prompt

        names = {"animal": "heron"}
        heron = mm.cell("--size 256x256 -o bird\\nA {animal}", namespace=names)
        said["bound"] = names["bird"] is heron

        sweep = mm.cell("--size 256x256 --seed 1,2\\nA cat")
        said["sweep"] = [type(sweep).__name__, len(sweep.runs)]

        pasted = mm.cell("%%meshimage --size 256x256 --save saved\\nA pasted cell")
        said["pasted"] = pasted.sizes[0]

        said["dry"] = repr(mm.cell("--dry-run\\nA dry run"))
        for text in ("--list-models", "--bg\\nA fox", "--size big\\nA fox"):
            try:
                mm.cell(text)
            except OptionError as exc:
                said.setdefault("refused", []).append(str(exc))
        said["imports"] = sorted(m for m in ("IPython", "marimo", "ipywidgets") if m in sys.modules)
        print(json.dumps(said))
        ''',
        server,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    said = json.loads(last)
    assert said["fox"] == ["ImageResult", 2, [512, 512], "A fox in the snow"]
    assert said["owl"] == "A owl at dusk"
    assert said["bound"] is True
    assert said["sweep"] == ["ImageSweep", 2]
    assert said["pasted"] == [256, 256]
    assert len(list((tmp_path / "saved").iterdir())) >= 1
    assert said["dry"] == "None"
    assert any(line.startswith("dry run, nothing sent: POST") for line in printed)
    lists, bg, size = said["refused"]
    assert "--list-models is a command of %mesh" in lists
    assert lists.startswith("mm.cell generates images")
    assert "--bg runs in the background of an IPython cell" in bg
    assert size.startswith("--size")
    assert said["imports"] == []  # a script loads neither IPython, marimo nor ipywidgets
    # Outside marimo replay stays off: every run above was sent, none answered from the store.
    assert server.request_count >= 6


def test_o_name_without_a_namespace_says_the_value_is_returned(
    server: LocalServer, tmp_path: Path
) -> None:
    done = run_script(
        """
        import mesh_magics as mm
        fox = mm.cell("--size 256x256 -o fox\\nA fox")
        print(type(fox).__name__)
        """,
        server,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ImageResult"
    assert "-o fox: mm.cell returns the value and binds no name" in done.stderr


def test_replay_is_on_in_marimo_and_said_once(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.delenv("MESHAPI_REPLAY", raising=False)
    monkeypatch.setattr(settings, "_replay_note_said", False)
    assert settings.replay_by_default({}) is False  # not in marimo
    monkeypatch.setattr(settings, "in_marimo", lambda: True)
    assert settings.replay_by_default({}) is True
    assert settings.replay_by_default({}) is True
    notes = [str(w.message) for w in recwarn if "marimo reruns cells" in str(w.message)]
    assert notes == [settings.MARIMO_REPLAY_NOTE]  # once
    monkeypatch.setenv("MESHAPI_REPLAY", "0")
    assert settings.replay_by_default({}) is False  # turned off on purpose


def test_every_run_of_a_sweep_replays_in_marimo_also_those_started_on_the_engine(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """marimo knows its cell on the cell's thread only, and a sweep starts its later runs
    on the engine's thread: the replay default is the cell's, for every run."""
    monkeypatch.delenv("MESHAPI_REPLAY", raising=False)
    cell_thread = threading.get_ident()
    monkeypatch.setattr(settings, "in_marimo", lambda: threading.get_ident() == cell_thread)

    def sweep() -> mesh_magics.ImageSweep:  # a window of 2: runs 3 to 6 start on the engine
        return mesh_magics.sweep(
            "A marten", seed=list(range(1, 7)), size="256x256", concurrency=1,
            base_url=server.url, progress="none", replay=None,
        )  # fmt: skip

    sweep()
    sent = [r.body["seed"] for r in generations(server)]
    again = sweep()
    assert [r.body["seed"] for r in generations(server)] == sent  # nothing sent again
    assert all(run.result is not None and run.result.replayed for run in again)


def test_progress_in_marimo_is_marimo_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert views.view_mode("auto", None) == "text"
    monkeypatch.setattr(views, "in_marimo", lambda: True)
    assert views.view_mode("auto", None) == "marimo"
    assert views.view_mode("text", None) == "text"  # a forced mode is kept


def test_mm_cell_is_the_function_though_a_module_is_named_cell() -> None:
    from mesh_magics.cell import parse_cell  # the grammar's module: imported by its names

    assert callable(mesh_magics.cell)
    assert mesh_magics.cell.__module__ == "mesh_magics.client.cells"
    assert sys.modules["mesh_magics.cell"].parse_cell is parse_cell


def _export(tmp_path: Path, server: LocalServer, name: str) -> str:
    out = tmp_path / name
    env = {
        **os.environ,
        "MESHAPI_BASE_URL": server.url,
        "MESH_MAGICS_STORE": str(tmp_path / "store"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "marimo", "export", "html", str(TOUR), "-o", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text(encoding="utf-8")


def test_the_tour_exports_to_html_with_its_images(server: LocalServer, tmp_path: Path) -> None:
    page = _export(tmp_path, server, "tour.html")
    images = re.findall(r"data:image/(?:png|jpeg);base64,", page)
    assert len(images) >= TOUR_IMAGES, f"{len(images)} images in the export"
    assert "marimo reruns cells: replay is on" in page  # said once, in a cell's console
    sent = server.request_count
    assert sent >= 7  # fox, owls, the sweep's 4 runs, the animal: all sent the first time

    # marimo reruns cells by itself: the same notebook again costs nothing.
    again = _export(tmp_path, server, "again.html")
    assert server.request_count == sent
    assert len(re.findall(r"data:image/(?:png|jpeg);base64,", again)) >= TOUR_IMAGES
