"""The API key never appears in any output, error, repr, log or saved file.

A notebook runs with a known fake key through every path (success, each class of error,
the reprs of the configuration, client and result, saved images, debug logs of httpx,
httpcore and mesh_magics) and everything it left behind is searched for the key."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mesh_magics.local import LocalServer

from .conftest import FAKE_KEY

FAULTS = [
    "status:401", "status:402", "status:403", "status:404", "status:413", "status:429",
    "status:500", "status:503", "html:502", "error_frame", "drop", "cut", "malformed",
    "not_image", "truncated_png", "bomb", "fewer",
]  # fmt: skip


def notebook(server_url: str, log: Path, images: Path) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell
    cells = [
        cell(
            "import logging\n"
            f"logging.basicConfig(filename={str(log)!r}, level=logging.DEBUG, force=True)\n"
            "%load_ext mesh_magics\n"
            f"%config MeshImageMagics.base_url = {server_url!r}\n"
            "%config MeshImageMagics.max_retry_wait = 0.05"
        ),
        cell("%%meshimage -o fox -n 2 --size 64x64\nA fox"),
        cell("%%meshimage -o remote --size 64x64 --model openai/dall-e-3 --no-stream\nA fox"),
        cell(f"paths = fox.save({str(images)!r})\nprint(repr(fox), fox.request, paths)"),
        cell("fox._repr_mimebundle_()[0]['text/plain']"),
        cell(
            "from mesh_magics.client import MeshClient\n"
            "magics = get_ipython().magics_manager.registry['MeshImageMagics']\n"
            "settings = magics.client_settings()\n"
            "print(repr(settings), str(settings), MeshClient(settings), settings.api_key)"
        ),
        cell("%config MeshImageMagics"),
        cell("%meshimage --list-models"),
        cell("%%meshimage --qualty high\nA fox"),
        cell("%%meshimage --timeout 0.3 -p mesh_local='{\"latency\": 3}'\nA fox"),
        cell("%%meshimage --size 9999x9999\nA fox"),
    ]
    for fault in FAULTS:
        spec = json.dumps({"fault": fault, "retry_after": "0"})
        cells.append(cell(f"%%meshimage -o fox -n 2 --size 64x64 -p mesh_local='{spec}'\nA fox"))
        cells.append(
            cell("import sys, traceback\nprint(repr(sys.last_value), vars(sys.last_value))\n%tb")
        )
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_the_key_is_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, images, saved = tmp_path / "debug.log", tmp_path / "images", tmp_path / "run.ipynb"
    with LocalServer() as server:
        nb = notebook(server.url, log, images)
        NotebookClient(
            nb, timeout=120, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # fmt: skip
        sent = [r.headers.get("authorization", "") for r in server.requests]
    nbformat.write(nb, saved)

    # The key really went where it belongs, so every path above had it in hand.
    assert f"Bearer {FAKE_KEY}" in sent
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert len(errors) >= len(FAULTS) + 3
    assert "HTTP Request: POST" in log.read_text()  # httpx logged at debug level

    searched = [saved, log, *images.iterdir()]
    assert len(searched) >= 4
    for path in searched:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the key leaked into {path.name}"
    assert not (tmp_path / ".cache").exists()  # no cache anywhere to leak into
