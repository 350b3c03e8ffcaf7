"""Presets as a user keeps them: in the project's pyproject.toml or in their own
presets.toml, used by `--preset NAME` and `preset=NAME`, under the options given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.local import LocalServer

from .support import run_cell

PYPROJECT = """\
[project]
name = "research"

[tool.mesh-magics.presets.draft]
size = "64x64"
quality = "low"
seed = 7

[tool.mesh-magics.presets.broken]
quality = "ultra"
"""

USER = """\
[draft]
size = "1024x1024"

[poster]
size = "32x32"
output-format = "jpeg"
"""


def bodies(server: LocalServer) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.body.items() if k not in ("stream", "model")}
        for r in server.requests
        if r.path.endswith("/images/generations")
    ]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose notebooks run in a folder below its pyproject.toml, and a user
    config folder of the test's own."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "config" / "mesh-magics").mkdir(parents=True)
    (tmp_path / "config" / "mesh-magics" / "presets.toml").write_text(USER)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    notebooks = tmp_path / "notebooks" / "week1"
    notebooks.mkdir(parents=True)
    monkeypatch.chdir(notebooks)
    return tmp_path


def test_the_nearest_pyproject_wins_over_the_user_file_and_an_option_over_both(
    ip: InteractiveShell, server: LocalServer, project: Path
) -> None:
    run = run_cell(ip, "%meshimage --preset draft --seed 3 A fox")
    assert run.success, run.error
    run = run_cell(ip, "%%meshimage --preset poster\nAn owl")
    assert run.success, run.error
    assert bodies(server) == [
        {"prompt": "A fox", "size": "64x64", "quality": "low", "seed": 3},
        {"prompt": "An owl", "size": "32x32", "output_format": "jpeg"},
    ]


def test_a_sweep_over_a_presets_field_lists_its_own_values(
    ip: InteractiveShell, server: LocalServer, project: Path
) -> None:
    run = run_cell(ip, "%meshimage -o t_sw --preset draft --seed 1,2 A fox")
    assert run.success, run.error
    assert sorted(b["seed"] for b in bodies(server)) == [1, 2]
    assert {b["size"] for b in bodies(server)} == {"64x64"}


def test_preset_in_python_for_generate_sweep_and_a_client(
    server: LocalServer, project: Path
) -> None:
    mm.generate("A fox", preset="draft", quality="high", base_url=server.url, progress="none")
    mm.sweep(["A", "B"], preset="poster", base_url=server.url, progress="none")
    with mm.Client(base_url=server.url, progress="none") as client:
        client.generate("A cat", preset="poster", size="48x48")
    assert sorted(bodies(server), key=lambda b: b["prompt"]) == [  # a sweep's runs overlap
        {"prompt": "A", "size": "32x32", "output_format": "jpeg"},
        {"prompt": "A cat", "size": "48x48", "output_format": "jpeg"},
        {"prompt": "A fox", "size": "64x64", "quality": "high", "seed": 7},
        {"prompt": "B", "size": "32x32", "output_format": "jpeg"},
    ]


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        ("%meshimage --preset drfat A fox", "no preset 'drfat'; did you mean draft?"),
        ("%meshimage --preset broken A fox", "preset 'broken': --quality: invalid value 'ultra'"),
    ],
)
def test_a_wrong_preset_is_one_line_before_anything_is_sent(
    ip: InteractiveShell, server: LocalServer, project: Path, cell: str, said: str
) -> None:
    run = run_cell(ip, cell)
    assert isinstance(run.error, mm.OptionError) and said in run.error_text
    assert bodies(server) == []
    with pytest.raises(mm.OptionError, match="did you mean draft"):
        mm.generate("A fox", preset="drfat", base_url=server.url)


def test_an_unknown_key_of_a_preset_and_no_presets_at_all(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(mm.OptionError, match="no presets are defined"):
        mm.generate("A fox", preset="draft", base_url=server.url)
    (tmp_path / "pyproject.toml").write_text("[tool.mesh-magics.presets.d]\nqualty = 'low'\n")
    with pytest.raises(mm.OptionError, match="unknown field 'qualty': did you mean quality"):
        mm.generate("A fox", preset="d", base_url=server.url)
    assert bodies(server) == []


def test_mm_cell_takes_a_preset_and_a_table_file_on_the_same_road(
    server: LocalServer, project: Path
) -> None:
    Path("rows.csv").write_text("prompt,seed\nA fox,1\nAn owl,\n")
    sweep = mm.cell(f"--base-url {server.url} --preset draft --prompts rows.csv")
    assert sweep is not None and [r.label for r in sweep] == ["row 1 · seed 1", "row 2"]
    assert sorted(bodies(server), key=lambda b: b["prompt"]) == [
        {"prompt": "A fox", "size": "64x64", "quality": "low", "seed": 1},
        {"prompt": "An owl", "size": "64x64", "quality": "low", "seed": 7},
    ]
