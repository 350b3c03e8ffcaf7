"""The Jupyter server extension: what a save through the server keeps of mesh-magics'
widget outputs (their image, not their widget view), and that nothing else is touched.

The hook works on a notebook as the frontend sends it (a dict); `jupyter server
extension list` and a real `FileContentsManager` show that it is found and called. The
browser test (tests/browser/test_reopen.py) reopens a saved notebook in JupyterLab and
Notebook 7.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics
from mesh_magics.marks import WIDGET_VIEW, is_marked, widget_mark
from mesh_magics.serverext import _load_jupyter_server_extension, strip_widget_views

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "mesh_magics.json"
VIEW = {"version_major": 2, "version_minor": 0, "model_id": "abc123"}
PNG = "iVBORw0KGgo="


def output(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


def notebook(*outputs: dict[str, Any]) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# a page"),
            nbformat.v4.new_code_cell(
                "%mesh form", outputs=[nbformat.from_dict(o) for o in outputs]
            ),
        ]
    )
    return json.loads(json.dumps(nb))  # a plain dict, as the frontend sends it


def test_a_marked_widget_with_an_image_keeps_the_image_and_loses_the_view() -> None:
    code = "%%meshimage --size 64x64 A fox"
    nb = notebook(output({WIDGET_VIEW: VIEW, "text/plain": code, "image/png": PNG}, widget_mark()))
    assert strip_widget_views(nb) == 1
    saved = nb["cells"][1]["outputs"][0]
    assert saved["data"] == {"text/plain": code, "image/png": PNG}
    assert is_marked(saved["metadata"])  # the mark stays: the next save finds nothing to do
    assert strip_widget_views(nb) == 0
    nbformat.validate(nbformat.from_dict(nb))


def test_html_is_a_fallback_too() -> None:
    grid = output({WIDGET_VIEW: VIEW, "text/html": "<img src='data:'>"}, widget_mark())
    nb = notebook(grid)
    assert strip_widget_views(nb) == 1
    assert WIDGET_VIEW not in nb["cells"][1]["outputs"][0]["data"]


def test_a_marked_widget_with_only_text_is_kept() -> None:
    running = output({WIDGET_VIEW: VIEW, "text/plain": "meshimage: a fox (running)"}, widget_mark())
    nb = notebook(running)
    before = copy.deepcopy(nb)
    assert strip_widget_views(nb) == 0
    assert nb == before


def test_other_libraries_widgets_are_untouched() -> None:
    plot = output({WIDGET_VIEW: VIEW, "image/png": PNG, "text/plain": "Canvas()"})
    other_mark = output(
        {WIDGET_VIEW: VIEW, "image/png": PNG}, {"mesh_magics": {"widget_fallback": "yes"}}
    )
    stream = {"output_type": "stream", "name": "stdout", "text": "hi"}
    nb = notebook(plot, other_mark, stream)
    before = copy.deepcopy(nb)
    assert strip_widget_views(nb) == 0
    assert nb == before


def test_the_hook_is_called_by_the_contents_manager_on_save(tmp_path: Path) -> None:
    from jupyter_server.services.contents.filemanager import FileContentsManager

    manager = FileContentsManager(root_dir=str(tmp_path))
    log = SimpleNamespace(info=lambda *args: None)
    _load_jupyter_server_extension(SimpleNamespace(contents_manager=manager, log=log))
    form = output({WIDGET_VIEW: VIEW, "text/plain": "code", "image/png": PNG}, widget_mark())
    other = output({WIDGET_VIEW: VIEW, "image/png": PNG})
    manager.save(
        {"type": "notebook", "format": "json", "content": notebook(form, other)}, "f.ipynb"
    )
    manager.save({"type": "file", "format": "text", "content": WIDGET_VIEW}, "notes.txt")

    saved = nbformat.read(tmp_path / "f.ipynb", as_version=4).cells[1].outputs
    assert [WIDGET_VIEW in out["data"] for out in saved] == [False, True]
    assert (tmp_path / "notes.txt").read_text() == WIDGET_VIEW


def test_the_package_names_its_extension_and_imports_nothing_heavy() -> None:
    script = (
        "import sys, importlib, mesh_magics\n"
        "[point] = mesh_magics._jupyter_server_extension_points()\n"
        "importlib.import_module(point['module'])._load_jupyter_server_extension\n"
        "print(point['module'], sorted(m for m in ('IPython', 'ipywidgets', 'httpx', 'PIL')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mesh_magics.serverext", "[]"]


def test_the_shipped_config_enables_it_and_the_wheel_installs_it(tmp_path: Path) -> None:
    assert json.loads(CONFIG.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"mesh_magics": True}}
    }
    pyproject = (ROOT / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    table = pyproject.split("[tool.setuptools.data-files]\n", 1)[1].split("\n[", 1)[0]
    assert (
        f'"etc/jupyter/jupyter_server_config.d" = ["{CONFIG.relative_to(ROOT).as_posix()}"]'
        in table
    )
    # The server finds it through that file: in a config dir of its own here.
    (tmp_path / "jupyter_server_config.d").mkdir()
    (tmp_path / "jupyter_server_config.d" / CONFIG.name).write_text(CONFIG.read_text())
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    text = listed.stdout + listed.stderr
    line = next(line for line in text.splitlines() if "mesh_magics" in line)
    assert "enabled" in line, text
    assert "mesh_magics" in text.split("OK", 1)[0] and "X " not in text, text


# -- the mark on what mesh-magics displays --------------------------------------------


@pytest.fixture
def published(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every display the shell publishes: (data, metadata)."""
    seen: list[Any] = []

    def publish(data: dict[str, Any], metadata: Any = None, **_kwargs: Any) -> None:
        seen.append((data, metadata or {}))

    monkeypatch.setattr(ip.display_pub, "publish", publish)
    yield seen


def test_every_widget_view_mesh_magics_shows_carries_the_mark(published: list[Any]) -> None:
    from mesh_magics.views.sweep_widget import WidgetSweepView
    from mesh_magics.views.widget import WidgetProgressView

    view = WidgetProgressView("a fox", on_cancel=lambda: None)
    view.start()
    sweep = WidgetSweepView("sweep", ["seed 1", "seed 2"])
    sweep.start()
    form = mesh_magics.form("A fox", size="64x64")
    form._ipython_display_()
    shown = [(data, metadata) for data, metadata in published if WIDGET_VIEW in data]
    assert len(shown) == 3
    assert all(is_marked(metadata) for _, metadata in shown)
    view.finish("✓ done")
    sweep.finish("✓ done")
    form.close()
    assert WIDGET_VIEW not in published[-1][0]
