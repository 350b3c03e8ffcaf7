"""The benchmark suite runs: every benchmark once, at a tiny size, reporting ratios.

No timing claims here (machines are noisy): `python -m bench` is where numbers come from.
`bench/` sits beside the package at the repository root, which pytest puts on the path.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.local_server import ServerProcess
from bench.payload import sse_stream
from bench.plan import Plan
from bench.readers import sdk_available
from bench.report import Goal, Row, markdown_table, text_table
from bench.sdks import openai_available
from bench.suite import run_suite
from mesh_magics.images import check_image


def test_smoke_run_reports_a_ratio_for_every_benchmark() -> None:
    rows = run_suite(Plan.smoke())
    numbers = {row.number for row in rows}
    assert {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"} <= numbers
    assert sdk_available() and "1c" in numbers  # scripts/setup installs the official SDK
    assert openai_available() and "13" in numbers  # ... and the openai SDK (`.[bench]`)
    assert all(math.isfinite(row.ratio) and row.ratio > 0 for row in rows)
    for number in ("1", "7", "8", "9", "10", "11", "13"):
        assert any(row.goal is not None for row in rows if row.number == number), number
    (latency,) = [row for row in rows if row.number == "8"]
    assert "2 in flight at most" in latency.ours  # the sweep kept to its concurrency
    text = text_table(rows)
    assert text.count("\n") == len(rows) + 1 and "ratio" in text


def test_command_writes_the_markdown_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.md"
    assert main(["--smoke", "--only", "load", "--out", str(out)]) == 0
    document = out.read_text()
    assert "| # | measurement |" in document and "Goals met:" in document
    assert re.search(r"\| 3 \| .*\| \d+\.\d\dx \|", document)
    assert "fresh IPython" in capsys.readouterr().out


def test_payload_is_a_stream_of_images_the_client_accepts() -> None:
    stream = sse_stream(0.25)
    processing, ping, final, done, end = stream.body.split(b"\n\n")
    assert json.loads(processing.removeprefix(b"data: "))["data"] == []
    assert (ping, done, end) == (b": ping", b"data: [DONE]", b"")
    (item,) = json.loads(final.removeprefix(b"data: "))["data"]
    image = check_image(base64.b64decode(item["b64_json"]), what="the payload")
    assert image.format == "png" and stream.image_bytes == len(image.data)
    assert 0.2 < stream.megabytes < 0.3


def test_table_marks_goals() -> None:
    rows = [Row("1", "a", "1 ms", "2 ms", 0.5, Goal(1.3)), Row("2", "b", "", "", 4.0, Goal(3))]
    rows.append(Row("1c", "c", "", "", 25.0, Goal(20, at_least=True)))
    assert [row.verdict for row in rows] == ["yes", "NO", "yes"]
    table = markdown_table(rows)
    assert table.count("✅") == 2 and table.count("❌") == 1


def test_local_server_process_counts_generations() -> None:
    import httpx

    with ServerProcess(latency=0) as server:
        server.reset_counts()
        body = {"prompt": "a fox", "size": "256x256"}
        answer = httpx.post(f"{server.url}/v1/images/generations", json=body, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["data"]) == 1
        counts = server.counts()
        assert counts["generation_count"] == 1 and counts["max_in_flight"] == 1
