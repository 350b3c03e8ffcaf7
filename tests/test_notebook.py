"""Whole notebooks in a real kernel (nbclient), read back from the saved JSON."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from mesh_magics.local import LocalServer

from .support import FAKE_KEY, wait_for

ROOT = Path(__file__).resolve().parents[1]


def execute(
    nb: nbformat.NotebookNode, workdir: Path, **client_options: object
) -> nbformat.NotebookNode:
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        **client_options,
    ).execute()
    saved = workdir / "saved.ipynb"
    nbformat.write(nb, saved)
    return nbformat.read(saved, as_version=4)


def image_outputs(cell: nbformat.NotebookNode) -> list[str]:
    """The images a cell shows: image outputs, and the tiles of an HTML grid (data URIs)."""
    found = []
    for out in cell.get("outputs", []):
        for mime, value in out.get("data", {}).items():
            if mime.startswith("image/"):
                found.append(mime)
            elif mime == "text/html":
                found += re.findall(r'src="data:(image/\w+);', value)
    return found


def test_quickstart_runs_and_saves_images_without_widgets_or_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHAPI_BASE_URL", "local")
    nb = execute(nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4), tmp_path)
    text = (tmp_path / "saved.ipynb").read_text()
    code = [c for c in nb.cells if c.cell_type == "code"]
    magic_cells = [c for c in code if c.source.startswith("%%meshimage -o")]
    assert len(magic_cells) == 3 and all(image_outputs(c) for c in magic_cells)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["OptionError", "NotFoundError"]
    assert all(len(e.traceback) == 1 for e in errors)  # short, no deep traceback
    assert "widget" not in text  # no widget views, no widget state
    assert FAKE_KEY not in text
    assert list((tmp_path / "quickstart-images").glob("*.png"))


def test_widget_progress_leaves_only_the_summary_and_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHAPI_BASE_URL", "local")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%load_ext mesh_magics\n%config MeshImageMagics.progress = 'widget'"
        ),
        nbformat.v4.new_code_cell(
            "%%meshimage -o fox -n 2 --size 64x64 --partial-images 1\n"
            "-p mesh_local='{\"latency\": 1.2}'\nfox"
        ),
    ]
    nb = execute(nb, tmp_path, store_widget_state=False)
    outputs = nb.cells[1].outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert outputs[0].data["text/plain"].startswith("✓ 2 images")
    assert image_outputs(nb.cells[1])


def test_kernel_interrupt_cancels_within_a_second_and_the_kernel_lives_on() -> None:
    with LocalServer(latency=30, ping_interval=0.2) as server:
        manager, client = start_new_kernel(kernel_name="python3")
        try:
            client.execute_interactive("%load_ext mesh_magics", timeout=30)
            msg_id = client.execute(f"%%meshimage -o fox --base-url {server.url}\nslow fox")
            wait_for(
                lambda: [r for r in server.requests if r.path.endswith("/generations")],
                "the request to reach the server",
                timeout=20,
            )
            interrupted = time.monotonic()
            manager.interrupt_kernel()
            reply = client.get_shell_msg(timeout=10)
            assert reply["parent_header"]["msg_id"] == msg_id
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "GenerationCancelled"
            assert "cancelled" in reply["content"]["evalue"]
            assert time.monotonic() - interrupted < 2.0
            assert server.wait_for_disconnect(2)
            check = client.execute_interactive(
                "print('fox' in dir())", timeout=10, output_hook=_collect
            )
            assert check["content"]["status"] == "ok" and _seen[-1].strip() == "False"
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


_seen: list[str] = []


def _collect(msg: dict) -> None:  # type: ignore[type-arg]
    if msg["msg_type"] == "stream":
        _seen.append(msg["content"]["text"])


def test_the_repository_notebook_is_valid_and_has_no_outputs() -> None:
    path = ROOT / "notebooks" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert json.loads(path.read_text())["nbformat"] == 4
