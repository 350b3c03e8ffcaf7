"""Colab, honestly: a background run says in one line that Colab can't show its progress,
and runs in the foreground; the form's "insert cell" shows the code to copy instead.

Colab is detected as Colab users' own code detects it: `"google.colab" in sys.modules`.
A real `google.colab` can't be installed here (it ships only inside Colab's runtime), so
these tests fake the module in an IPython shell. That is the honest limit of them: they
show what the package does once it believes it is on Colab, not what Colab's frontend
renders of it.
"""

from __future__ import annotations

import sys
import types

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.engine.generation import Generation
from mesh_magics.local import LocalServer
from mesh_magics.views import in_kernel, on_colab
from mesh_magics.views.in_cell import ON_COLAB

from .support import run_cell

IMAGES = {"image/png", "image/jpeg"}


@pytest.fixture
def colab(monkeypatch: pytest.MonkeyPatch) -> None:
    google = types.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", sys.modules.get("google", google))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert on_colab()


def shown_images(outputs: list[dict[str, object]]) -> int:
    return sum(bool(IMAGES & set(data)) for data in outputs)


def test_a_bg_cell_runs_in_the_foreground_and_says_why(ip: InteractiveShell, colab: None) -> None:
    run = run_cell(
        ip,
        "%meshimage --bg -o t_fox --size 64x64 A fox\n"
        "print('done at once' if t_fox.done() else 'still running')",
    )
    assert run.success, run.error
    assert run.stderr.count(ON_COLAB) == 1 and ON_COLAB.count("\n") == 0
    assert "done at once" in run.stdout
    fox = ip.user_ns["t_fox"]
    assert isinstance(fox, Generation) and fox.status == "done"
    assert fox.result().prompt == "A fox" and shown_images(run.outputs) == 1


def test_elsewhere_a_bg_cell_returns_at_once(ip: InteractiveShell, server: LocalServer) -> None:
    """The same cell off Colab (this shell shows nothing later, so the cell still waits
    for the run at its end, but after its own code)."""
    assert not on_colab()
    run = run_cell(
        ip,
        "%meshimage --bg -o t_fox --size 64x64 A fox\n"
        "print('done at once' if t_fox.done() else 'still running')",
    )
    assert run.success, run.error
    assert "still running" in run.stdout and ON_COLAB not in run.stderr


def test_a_bg_sweep_runs_in_the_foreground(ip: InteractiveShell, colab: None) -> None:
    run = run_cell(ip, "%meshimage --bg -o t_grid --size 64x64,32x32 A fox\nt_grid.done()")
    assert run.success, run.error
    assert run.stderr.count(ON_COLAB) == 1
    grid = ip.user_ns["t_grid"]
    assert run.result is True and len(grid.results) == 2
    assert any("image/png" in data or "text/html" in data for data in run.outputs)


def test_mm_start_runs_in_the_foreground(
    ip: InteractiveShell, server: LocalServer, colab: None
) -> None:
    ip.user_ns["t_url"] = server.url
    run = run_cell(
        ip,
        "import mesh_magics as mm\n"
        "t_handle = mm.start('A fox', size='64x64', base_url=t_url, progress='none')\n"
        "t_handle.done()",
    )
    assert run.success, run.error
    assert run.result is True and run.stderr.count(ON_COLAB) == 1
    assert shown_images(run.outputs) == 1


def test_the_form_shows_the_cell_to_copy(
    ip: InteractiveShell, server: LocalServer, colab: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted: list[str] = []
    monkeypatch.setattr(ip, "set_next_input", inserted.append)
    ip.user_ns["t_form"] = mm.form("A cat", size="64x64", base_url=server.url)
    run = run_cell(ip, "t_form.to_cell()")
    assert run.success, run.error
    code = ip.user_ns["t_form"].code
    (shown,) = [data["text/plain"] for data in run.outputs if "copy" in str(data)]
    assert str(shown).endswith(code) and inserted == []
    assert run.result == code


def test_the_form_inserts_a_cell_elsewhere(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted: list[str] = []
    monkeypatch.setattr(ip, "set_next_input", inserted.append)
    form = mm.form("A cat", size="64x64", base_url=server.url)
    assert form.to_cell() == form.code and inserted == [form.code]


def test_colabs_shell_counts_as_a_kernel() -> None:
    """Colab's shell is a subclass of ipykernel's (google.colab._shell.Shell)."""
    from ipykernel.zmqshell import ZMQInteractiveShell

    shell_class = type("Shell", (ZMQInteractiveShell,), {})
    assert in_kernel(shell_class.__new__(shell_class))
