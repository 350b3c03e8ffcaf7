"""A sweep that leaves the notebook: a labelled picture of its grid (`grid_image()`,
`grid.png` beside a saved sweep), one self-contained HTML report, and an MLflow run in a
real local tracking store. The sweeps are made against the embedded backend, one of
their runs failing."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import mesh_magics as mm
from mesh_magics.errors import MissingDependency, SweepError
from mesh_magics.results.image_sweep import ImageSweep
from mesh_magics.results.sweep_picture import FAILED_FILL

from .support import FAKE_KEY, FaultsBySeed, key_is_absent

PROMPTS = ["A fox <b>in</b> the snow & ice", "An owl, see https://example.com/owl"]


@pytest.fixture(scope="module")
def sweep() -> Iterator[ImageSweep]:
    """Two prompts by seeds 1, 2, 3; seed 2 fails (a 500) for both prompts."""
    with FaultsBySeed({2: "status:500"}) as api:
        with pytest.raises(SweepError) as raised:
            mm.sweep(PROMPTS, seed=[1, 2, 3], size="64x64", base_url=api.url, progress="none")
        yield raised.value.sweep


def failed_area(picture: Image.Image) -> tuple[int, int, int, int] | None:
    """The box of the picture's failed-tile fill, or None."""
    width = picture.width
    data, marker = picture.convert("RGB").tobytes(), bytes(FAILED_FILL)
    found = [i // 3 for i in range(0, len(data), 3) if data[i : i + 3] == marker]
    if not found:
        return None
    xs, ys = [i % width for i in found], [i // width for i in found]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


# -- the picture -------------------------------------------------------------------------------


def test_the_grid_picture_has_a_labelled_tile_per_run_and_marks_the_failed_ones(
    sweep: ImageSweep,
) -> None:
    assert [run.status for run in sweep] == ["done", "failed", "done"] * 2
    picture = sweep.grid_image(tile=128)
    assert picture.mode == "RGB"
    # Three columns of 128 px tiles beside the row labels, two rows below the headers.
    assert 3 * 128 + 120 <= picture.width <= 3 * 128 + 260
    assert 2 * 128 + 40 <= picture.height <= 2 * 128 + 140
    box = failed_area(picture)
    assert box is not None, "the failed runs are marked"
    left, top, right, bottom = box
    # The middle column (seed 2), both rows, and nothing of the other columns.
    assert picture.width / 3 < left and right < picture.width - 128
    assert right - left < 128 and bottom - top > 128
    fine = [run for run in sweep if run.status == "done"]
    assert failed_area(ImageSweep(fine, swept=["seed"]).grid_image(tile=128)) is None
    smaller = sweep.grid_image(tile=512)  # 64 px images are not blown up to 512
    assert smaller.width < 3 * 300


def test_save_writes_the_grid_beside_the_images(sweep: ImageSweep, tmp_path: Path) -> None:
    paths = sweep.save(tmp_path, embed_prompt=True)
    assert [p.name for p in paths][-1] == "grid.png" and len(paths) == 4 + 1
    with Image.open(paths[-1]) as grid:
        assert grid.size == sweep.grid_image().size
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 4  # the images; the grid is not one of the results
    again = sweep.save(tmp_path, embed_prompt=True)
    assert again[-1].name == "grid-v2.png"  # nothing is overwritten


# -- the report --------------------------------------------------------------------------------


def test_the_report_is_one_self_contained_file_with_grid_table_provenance_and_cost(
    sweep: ImageSweep, tmp_path: Path
) -> None:
    path = sweep.report(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<script|<link|<iframe|@import|url\(", text, re.I)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 4 and all(s.startswith("data:image/") for s in sources)
    assert "<b>in</b>" not in text and "&lt;b&gt;in&lt;/b&gt;" in text  # user text escaped
    assert key_is_absent(text) and FAKE_KEY not in text
    # The table of runs: a row each, the failed ones marked and their error listed.
    assert text.count('<tr class="failed">') == 2
    assert text.count("InternalServerError") >= 2
    # Provenance: each run's request id, the model that answered, its body.
    for run in sweep:
        assert run.request_id is not None and run.request_id in text
    assert text.count("request body") == 6 and "&quot;seed&quot;: 3" in text
    assert "estimated cost</th><td>unknown" in text
    model = sweep.results[0].model
    priced = sweep.report(tmp_path / "priced.html", prices={model: 0.25}).read_text()
    assert "~$1.000 (estimated)" in priced  # 4 images at $0.25


# -- MLflow ------------------------------------------------------------------------------------


def test_log_mlflow_logs_params_metrics_and_artifacts_to_a_local_store(
    sweep: ImageSweep, tmp_path: Path
) -> None:
    import mlflow  # the test extra installs it
    from mlflow.tracking import MlflowClient

    # A real local store: MLflow's SQLite backend (its file store is retired), and the
    # artifacts in this test's folder.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("mesh sweeps", artifact_location=(tmp_path / "art").as_uri())
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        run_id = sweep.log_mlflow("mesh sweeps", run_name="foxes", embed_prompt=True)
    finally:
        mlflow.set_tracking_uri(before)
    run = client.get_run(run_id)
    assert run.info.run_name == "foxes"
    assert client.get_experiment(run.info.experiment_id).name == "mesh sweeps"
    params = run.data.params
    assert params["seed"] == "1,2,3" and params["swept"] == "seed"
    assert params["size"] == "64x64"
    assert params["prompts"] == "\n---\n".join(PROMPTS)
    metrics = run.data.metrics
    assert metrics["runs"] == 6 and metrics["failed"] == 2 and metrics["images"] == 4
    assert metrics["seconds"] > 0 and "cost_usd" not in metrics
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"grid.png", "report.html", "images"} <= top
    images = {a.path for a in client.list_artifacts(run_id, "images")}
    assert len([p for p in images if p.endswith(".png") and "grid" not in p]) == 4
    assert "images/manifest.jsonl" in images
    report = Path(client.download_artifacts(run_id, "report.html", str(tmp_path / "got")))
    assert "https://" not in report.read_text(encoding="utf-8")


def test_log_mlflow_without_mlflow_says_what_to_install(
    sweep: ImageSweep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(MissingDependency, match=r"pip install mesh-magics\[mlflow\]"):
        sweep.log_mlflow()
