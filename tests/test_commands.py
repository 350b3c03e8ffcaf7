"""`%mesh`, the commands apart from the magic that generates: each subcommand, its `-h`,
a mistake in one line, and the old `%meshimage` flags pointing to their new home."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics.engine.jobs import JobList
from mesh_magics.errors import OptionError
from mesh_magics.ipython.commands import COMMANDS, MOVED
from mesh_magics.local import LocalServer
from mesh_magics.results.history import History
from mesh_magics.results.model_list import ModelList
from mesh_magics.results.usage_report import UsageReport

from .support import run_cell


def test_mesh_alone_lists_every_command(ip: InteractiveShell) -> None:
    run = run_cell(ip, "%mesh")
    assert run.success
    for name in COMMANDS:
        assert f"%mesh {name}" in run.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(ip: InteractiveShell, name: str) -> None:
    run = run_cell(ip, f"%mesh {name} -h")
    assert run.success and run.result is None
    assert f"%mesh {name}" in run.stdout


def test_the_commands_answer_with_their_values(ip: InteractiveShell, server: LocalServer) -> None:
    assert run_cell(ip, "%meshimage --size 64x64 -o t_cmd_fox A fox").success
    models = run_cell(ip, "%mesh models -o t_cmd_models")
    assert isinstance(models.result, ModelList) and ip.user_ns["t_cmd_models"] is models.result
    history = run_cell(ip, "%mesh history -n 5 fox")
    assert isinstance(history.result, History) and len(history.result) >= 1
    assert isinstance(run_cell(ip, "%mesh usage").result, UsageReport)
    assert isinstance(run_cell(ip, "%mesh jobs").result, JobList)
    assert run_cell(ip, "%mesh wait --timeout 5").success


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("%mesh modles", "did you mean models?"),
        ("%mesh history -n many", "%mesh history: argument -n/--limit: invalid int value"),
        ("%mesh history -n 0", "limit"),
        ("%mesh wait --forever", "unrecognized arguments: --forever"),
        ("%mesh jobs -o get_ipython", "-o"),
        ("%%mesh usage\nsome text", "takes no cell"),
    ],
)
def test_a_mistake_is_one_line(ip: InteractiveShell, cell: str, said: str) -> None:
    run = run_cell(ip, cell)
    assert isinstance(run.error, OptionError), run.error
    assert said in str(run.error)
    assert len(run.error._render_traceback_()) == 1


@pytest.mark.parametrize("flag", list(MOVED))
def test_the_old_flags_point_to_the_new_command(ip: InteractiveShell, flag: str) -> None:
    run = run_cell(ip, f"%meshimage {flag}")
    assert isinstance(run.error, OptionError)
    assert f"%mesh {MOVED[flag]}" in str(run.error)
