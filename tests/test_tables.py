"""Table-driven sweeps as a user runs them: a CSV, a JSON Lines file, a text file of
prompts, a list of dicts or a DataFrame, one run a row, through the cell and through
Python. The embedded backend's request records are the judge of what was sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas
import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.local import LocalServer

from .support import run_cell


def generations(server: LocalServer) -> list[dict[str, Any]]:
    bodies = [r.body for r in server.requests if r.path.endswith("/images/generations")]
    return sorted(bodies, key=lambda body: body["prompt"])


def without_stream(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("stream", "model")}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- through the cell ------------------------------------------------------------------------


def test_a_csv_makes_a_run_a_row_with_the_cells_options_under_each_rows_own(
    ip: InteractiveShell, server: LocalServer, folder: Path
) -> None:
    (folder / "rows.csv").write_text(
        "prompt,seed,quality\nA fox {os.environ[MESHAPI_API_KEY]},1,\nAn owl,,high\n"
    )
    run = run_cell(ip, "%meshimage -o t_sw --size 64x64 --quality low --prompts rows.csv")
    assert run.success, run.error
    assert [without_stream(b) for b in generations(server)] == [
        {"prompt": "A fox {os.environ[MESHAPI_API_KEY]}", "size": "64x64", "quality": "low",
         "seed": 1},
        {"prompt": "An owl", "size": "64x64", "quality": "high"},
    ]  # fmt: skip
    sweep = ip.user_ns["t_sw"]
    assert [r.label for r in sweep] == ["row 1 · seed 1", "row 2 · quality high"]
    html = sweep._repr_mimebundle_()[0]["text/html"]
    assert "row 1 · seed 1: A fox" in html and "row 2 · quality high: An owl" in html


def test_a_jsonl_file_and_a_txt_file_of_prompts(
    ip: InteractiveShell, server: LocalServer, folder: Path
) -> None:
    rows = [{"prompt": "A fox", "size": "64x64", "n": 2}, {"prompt": "An {owl}", "seed": 7}]
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    run = run_cell(ip, "%%meshimage -o t_sw --size 32x32\n--prompts rows.jsonl")
    assert run.success, run.error
    assert [without_stream(b) for b in generations(server)] == [
        {"prompt": "A fox", "size": "64x64", "n": 2},
        {"prompt": "An {owl}", "size": "32x32", "seed": 7},
    ]
    (folder / "prompts.txt").write_text("# a comment\nA cat\n\n  A dog  \n")
    run = run_cell(ip, "%meshimage -o t_cmp --size 32x32 --seed 1,2 --prompts prompts.txt")
    assert run.success, run.error
    assert len(ip.user_ns["t_cmp"]) == 4  # a list of prompts: comma lists still cross
    assert {r.prompt for r in ip.user_ns["t_cmp"]} == {"A cat", "A dog"}


def test_a_variable_holding_a_list_of_dicts_or_a_dataframe_is_a_table(
    ip: InteractiveShell, server: LocalServer
) -> None:
    ip.user_ns["t_rows"] = pandas.DataFrame({"prompt": ["A fox", "An owl"], "seed": [3, None]})
    run = run_cell(ip, "%meshimage -o t_sw --size 32x32 --seed 9 --prompts t_rows")
    assert run.success, run.error
    assert [b.get("seed") for b in generations(server)] == [3, 9]
    assert [r.label for r in ip.user_ns["t_sw"]] == ["row 1 · seed 3", "row 2"]


@pytest.mark.parametrize(
    ("csv", "cell", "said"),
    [
        ("prompt,quality\na,low\nb,high\nc,ultra\n", "", "row 3: --quality: invalid value 'ultra'"),
        ("prompt,qualty\na,low\n", "", "row 1: unknown column 'qualty': did you mean quality?"),
        ("prompt,seed\na,1\n,2\n", "", "row 2: no prompt"),
        ("prompt,seed\na,1,5\n", "", "row 1: more values than columns"),
        ("prompt\na\n", " --seed 1,2", "--seed: --prompts rows.csv is a table"),
        ("prompt,background\na,transparent\n", " --format jpeg", "row 1: --background"),
    ],
)
def test_bad_rows_are_refused_with_their_number_before_anything_is_sent(
    ip: InteractiveShell, server: LocalServer, folder: Path, csv: str, cell: str, said: str
) -> None:
    (folder / "rows.csv").write_text(csv)
    run = run_cell(ip, f"%meshimage --prompts rows.csv{cell}")
    assert isinstance(run.error, mm.OptionError) and said in run.error_text
    assert "\n" not in run.error_text
    assert generations(server) == []


def test_a_prompts_value_that_is_neither_a_file_nor_a_variable(
    ip: InteractiveShell, folder: Path
) -> None:
    run = run_cell(ip, "%meshimage --prompts nope.csv")
    assert isinstance(run.error, mm.OptionError) and "no such file" in run.error_text
    run = run_cell(ip, "%meshimage --prompts t_missing")
    assert "no variable 't_missing'" in run.error_text


def test_dry_run_lists_the_rows(ip: InteractiveShell, server: LocalServer, folder: Path) -> None:
    (folder / "rows.csv").write_text("prompt,seed\nA fox,1\nAn owl,2\n")
    run = run_cell(ip, "%meshimage --dry-run --prompts rows.csv")
    assert run.success, run.error
    text = run.outputs[0]["text/plain"]
    assert "2 runs" in text and "row 1 · seed 1" in text and "row 2 · seed 2" in text
    assert generations(server) == []


# -- through Python --------------------------------------------------------------------------


def test_mm_sweep_of_rows_keywords_under_each_rows_own_and_no_cross_product(
    server: LocalServer,
) -> None:
    rows = [{"prompt": "A fox", "seed": 1}, {"prompt": "An owl", "size": "32x32", "n": 2}]
    sweep = mm.sweep(rows, size="64x64", base_url=server.url, progress="none")
    assert [without_stream(b) for b in generations(server)] == [
        {"prompt": "A fox", "size": "64x64", "seed": 1},
        {"prompt": "An owl", "size": "32x32", "n": 2},
    ]
    assert [r.label for r in sweep] == ["row 1 · seed 1", "row 2 · 32x32 · n 2"]
    assert [row["seed"] for row in sweep.table()] == [1, None]
    with pytest.raises(mm.OptionError, match="a table runs one run a row"):
        mm.sweep(rows, seed=[1, 2], base_url=server.url)


def test_a_dataframe_through_a_client_and_asweep(server: LocalServer) -> None:
    import asyncio

    frame = pandas.DataFrame({"prompt": ["A fox", "An owl"], "output-format": ["jpeg", None]})
    with mm.Client(base_url=server.url, progress="none") as client:
        sweep = client.sweep(frame, size="32x32")
    assert [b.get("output_format") for b in generations(server)] == ["jpeg", None]
    assert sweep.results[0].formats == ["jpeg"]
    again = asyncio.run(mm.asweep(frame, size="32x32", base_url=server.url, progress="none"))
    assert len(again) == 2


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c", "quality": "ultra"}],
         "row 3: quality: invalid value 'ultra'; allowed: "),
        ([{"prompt": "a"}, {"prompt": "b", "qualty": "low"}],
         "row 2: unknown column 'qualty': did you mean quality?"),
        ([{"seed": 1}], "row 1: no prompt"),
        ([{"prompt": "a", "seed": [1, 2]}], "row 1: seed: invalid value [1, 2]"),
    ],
)  # fmt: skip
def test_mm_sweep_refuses_bad_rows_naming_the_row(
    server: LocalServer, rows: list[dict[str, Any]], said: str
) -> None:
    with pytest.raises(mm.OptionError) as caught:
        mm.sweep(rows, base_url=server.url, progress="none")
    assert said in str(caught.value)
    assert generations(server) == []
