"""notebooks/research.ipynb run by papermill with other parameters, read back from its
output: one seed instead of two makes a 3 x 3 grid, replayed at no cost, saved with its
provenance into the folder the parameters name, listed in the history; a table sweep (a
run a row of the CSV file it writes), rated and tagged, found again by its marks; an edit
chain (a fox, a masked edit, a background removed) whose provenance leads back to the fox;
a self-contained HTML report; and not one error output (papermill fails a run that has
any)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from PIL import Image, ImageChops

import mesh_magics as mm

from .support import FAKE_KEY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "research.ipynb"
MODELS = ["openai/gpt-image-1", "openai/dall-e-3", "vertex/imagen-3"]
OUT = "lighthouse-study"  # the out_dir the run is given, instead of research-images


def code_cell(nb: nbformat.NotebookNode, starts_with: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts_with))


def printed(cell: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def shown(cell: nbformat.NotebookNode, mime: str) -> list[str]:
    return [o.data[mime] for o in cell.outputs if mime in o.get("data", {})]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook run once by papermill's command line, as a user would run it, with
    `-p seeds '[3]' -p out_dir lighthouse-study`, in a temp folder with a store of its own;
    (its output, the folder)."""
    work = tmp_path_factory.mktemp("research")
    out = work / "out.ipynb"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESH")},
        "MESHAPI_BASE_URL": "local",
        "MESH_MAGICS_STORE": str(work / "store"),
        "MESHAPI_API_KEY": FAKE_KEY,
    }
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out)]
    command += ["-p", "seeds", "[3]", "-p", "out_dir", OUT]
    command += ["-k", "python3", "--cwd", str(work), "--no-progress-bar"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(out, as_version=4), work


def test_papermill_runs_it_with_one_seed_and_no_error_output(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, _ = ran
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)  # every cell ran
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not [o for c in code for o in c.outputs if o.get("name") == "stderr"]
    injected = next(c for c in code if "injected-parameters" in c.metadata.get("tags", []))
    assert "seeds = " in injected.source and "[3]" in injected.source
    assert f'out_dir = "{OUT}"' in injected.source
    plan = code_cell(nb, "import json")  # '[3]' arrives as text; the notebook reads it
    assert printed(plan).splitlines() == [
        "3 prompts × 3 models × seeds [3] = 9 runs at 256x256",
        f"files go to {OUT}/",
    ]
    assert FAKE_KEY not in json.dumps(nb)


def test_the_sweep_shows_a_labelled_grid_of_nine_images(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, _ = ran
    sweep = code_cell(nb, "cmp = mm.sweep(")
    assert sweep.outputs[0].data["text/plain"].startswith("✓ 9 runs · 9 images · ")
    [grid] = shown(sweep, "text/html")
    assert 'class="mesh-magics-sweep"' in grid
    assert len(re.findall(r'<img src="data:image/(?:png|jpeg);base64,', grid)) == 9
    columns = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', grid)
    assert columns == [f"{model} · seed 3" for model in MODELS]
    assert len(re.findall(r'<th scope="row"', grid)) == 3
    assert "✗" not in grid  # no failed run

    table = code_cell(nb, "columns = [")
    frames = shown(table, "text/html")  # a DataFrame where pandas is installed, else text
    if frames:
        assert len(re.findall(r"<tr[ >]", frames[0])) == 10  # the header and 9 runs
    else:
        lines = printed(table).splitlines()
        assert lines[0].startswith("to_pandas() needs pandas") and len(lines) == 11
        assert all(" done " in line and "seed 3 " in line for line in lines[2:])
    per_model = printed(code_cell(nb, "for model in models:")).splitlines()
    assert [line.split()[:3] for line in per_model] == [[m, "3", "runs"] for m in MODELS]


def test_the_replay_makes_no_new_request(ran: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, _ = ran
    replay = code_cell(nb, "def requests_sent():")
    assert "new requests: 0; replayed: 9 of 9 runs" in printed(replay)
    assert replay.outputs[0].data["text/plain"].startswith("✓ 9 runs · ↺ 9 replayed · 9 images")
    [usage] = shown(code_cell(nb, "%mesh usage"), "text/plain")
    for model in MODELS:
        assert f"{model}: 3 requests, 3 images, 3 replays (3 images)" in usage


def test_the_saved_set_has_its_manifest_and_metadata(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, work = ran
    text = printed(code_cell(nb, "from pathlib import Path")).splitlines()
    assert text[0].startswith(f"10 files in {OUT}/, the first: ")  # 9 and the grid
    first = text[0].rpartition(" ")[2]
    line = json.loads(text[2])
    assert line["file"] == first
    assert line["metadata"]["seed"] == 3 and line["metadata"]["model"] == MODELS[0]
    assert line["metadata"]["prompt"].startswith("A lighthouse")
    assert not (work / "research-images").exists()  # the out_dir parameter decides
    folder = work / OUT
    assert len(list(folder.glob("*.png"))) == 9 + 1 + 1  # the images, grid.png, lighting.png
    on_disk = (folder / "manifest.jsonl").read_text().splitlines()
    assert len(on_disk) == 9 and json.loads(on_disk[0]) == line

    metadata_cell = code_cell(nb, "metadata = mm.read_metadata(")
    assert printed(metadata_cell).strip() == "the manifest line's metadata: True"
    [metadata] = shown(metadata_cell, "text/plain")
    assert "'seed': 3" in metadata
    assert f"'request_id': '{line['metadata']['request_id']}'" in metadata


def test_the_history_lists_the_stored_generations(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, _ = ran
    history = code_cell(nb, "%mesh history")
    [table] = shown(history, "text/html")
    assert len(re.findall(r"<img ", table)) == 9  # the replays stored nothing new
    [rows] = shown(history, "text/plain")
    assert len(rows.splitlines()) == 9 and all(" · 1 · mm_" in row for row in rows.splitlines())


def table_rows(work: Path) -> list[dict[str, str]]:
    """The rows of the CSV file the notebook wrote in its folder, read as a user would."""
    with open(work / "lighting.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_table_sweep_makes_one_run_a_row_of_its_csv(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, work = ran
    rows = table_rows(work)
    assert [row["seed"] for row in rows] == ["11", "12", "13", "14"]
    assert [row["size"] for row in rows] == ["", "", "", "384x256"]  # empty: the cell's
    said = printed(code_cell(nb, 'Path("lighting.csv")'))
    assert said == f"lighting.csv: a header and {len(rows)} rows\n"

    table = code_cell(nb, "%%meshimage --prompts lighting.csv -o table")
    n = len(rows)
    assert table.outputs[0].data["text/plain"].startswith(f"✓ {n} runs · {n} images · ")
    [grid] = shown(table, "text/html")
    assert "✗" not in grid  # no failed run
    labels = re.findall(r'<th scope="row"[^>]*>([^<]*)</th>', grid)
    assert labels == [
        f"row {i} · {row['size'] + ' · ' if row['size'] else ''}seed {row['seed']}: {row['prompt']}"
        for i, row in enumerate(rows, 1)
    ]
    # One picture a row, each at its row's size: the cell's 256x256, the last one wide.
    pictures = re.findall(r'<img src="data:image/png;base64,([^"]+)"', grid)
    sizes = [Image.open(io.BytesIO(base64.b64decode(data))).size for data in pictures]
    assert sizes == [(256, 256)] * (n - 1) + [(384, 256)]


def test_the_ratings_and_the_hero_are_found_again_by_their_marks(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, work = ran
    marked = printed(code_cell(nb, "import time")).splitlines()
    study = re.fullmatch(r".*  (lighting-\d{8}-\d{6})", marked[0])
    assert study, marked
    tag = study[1]
    assert [line.split(" · ")[0] for line in marked] == ["row 1", "row 2", "row 3", "row 4"]
    assert [line.count("★") for line in marked] == [3, 4, 5, 2]
    assert [line.endswith(f"  hero, {tag}") for line in marked] == [False, False, True, False]
    assert all(line.endswith(tag) for line in marked)

    found = printed(code_cell(nb, "liked = mm.history(")).splitlines()
    assert found[:2] == [
        "5 stars: seed 13, A lighthouse on a rocky coast at night",
        "4 stars: seed 12, A lighthouse on a rocky coast in thick fog",
    ]
    hero_said = re.fullmatch(r"the hero: seed 13, (mm_\w+)", found[2])
    assert hero_said and len(found) == 3, found

    history = code_cell(nb, "%mesh history --min-rating 4")
    [rows] = shown(history, "text/plain")
    # The store is this run's: only the table's two, the hero's line and the fog's.
    hero_line, fog_line = sorted(rows.splitlines(), key=lambda line: "#hero" not in line)
    assert hero_line.endswith(f" · {hero_said[1]} · ★★★★★ #hero #{tag}")
    assert "A lighthouse on a rocky coast in thick fog · openai/gpt-image-1 · " in fog_line
    assert fog_line.endswith(f" · ★★★★☆ #{tag}")
    [table] = shown(history, "text/html")
    assert len(re.findall(r"<img ", table)) == 2

    # The marks live in the store, so the kernel's end did not take them: read them here.
    store = {"store_dir": str(work / "store")}
    [hero] = mm.history(tag="hero", config=store)
    assert hero.request_id == hero_said[1] and hero.request["seed"] == 13
    assert hero.rating == 5 and set(hero.tags) == {"hero", tag}
    liked = mm.history(min_rating=4, config=store)
    assert sorted(result.request["seed"] for result in liked) == [12, 13]
    assert len(mm.history(tag=tag, config=store)) == len(table_rows(work))


def test_the_report_is_one_self_contained_file(ran: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, work = ran
    said = printed(code_cell(nb, "import re")).splitlines()
    assert len(said) == 2, said
    assert re.fullmatch(
        rf"{OUT}/report\.html: \d+ KB, 9 runs, 9 images embedded, 0 links", said[0]
    ), said[0]

    report = work / OUT / "report.html"
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?:", text, re.IGNORECASE)  # nothing to fetch
    assert "<script" not in text and "<link" not in text and "@import" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 9 and all(src.startswith("data:image/") for src in sources)
    first = base64.b64decode(sources[0].partition(",")[2])  # a real picture, embedded
    assert Image.open(io.BytesIO(first)).size == (256, 256)
    # What a colleague reads in it: every run's prompt and request id, and the cost.
    manifest = (work / OUT / "manifest.jsonl").read_text().splitlines()
    for line in manifest:
        metadata = json.loads(line)["metadata"]
        assert metadata["request_id"] in text
    for prompt in {json.loads(line)["metadata"]["prompt"] for line in manifest}:
        assert prompt in text
    assert "(estimated)" in text and "unknown (no per-image price)" not in text
    assert FAKE_KEY not in text

    # The table's grid as a PNG, the size the cell said.
    poster = re.fullmatch(rf"{OUT}/lighting\.png: the table's grid, (\d+)x(\d+)", said[1])
    assert poster, said[1]
    with Image.open(work / OUT / "lighting.png") as grid:
        assert grid.format == "PNG"
        assert grid.size == (int(poster[1]), int(poster[2]))
        assert grid.height > grid.width  # a row per run: four rows, one column


def one_image(cell: nbformat.NotebookNode) -> bytes:
    """The one PNG a magic cell showed, after its summary line."""
    assert cell.outputs[0].data["text/plain"].startswith("✓ 1 image · "), cell.outputs[0]
    [png] = shown(cell, "image/png")
    return base64.b64decode(png)


def test_the_edit_chain_ran_and_leads_back_to_the_fox(
    ran: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, work = ran
    fox = one_image(code_cell(nb, "%%meshimage -o fox "))
    night = one_image(code_cell(nb, "%%meshimage --edit fox[0] --mask sky_mask -o night\n"))
    cutout = one_image(code_cell(nb, "%meshimage --edit night --operation remove_background"))
    mask = printed(code_cell(nb, "from PIL import Image"))
    assert mask.endswith("the mask: 256x256, top half transparent\n")

    # The mask's transparent top half changed, its opaque bottom half did not.
    before, after = (Image.open(io.BytesIO(data)).convert("RGB") for data in (fox, night))
    assert before.size == after.size == (256, 256)
    changed = ImageChops.difference(before, after)
    assert changed.crop((0, 0, 256, 128)).getbbox() is not None
    assert changed.crop((0, 128, 256, 256)).getbbox() is None
    # The background is gone: some pixels transparent, some not.
    alpha = Image.open(io.BytesIO(cutout)).getchannel("A")
    assert alpha.getextrema() == (0, 255)

    lines = printed(code_cell(nb, 'folder = Path(out_dir, "chain")')).splitlines()
    assert len(lines) == 6, lines
    cutout_says = re.fullmatch(r"cutout\.png: input 'night', sha256 ([0-9a-f]{64})", lines[0])
    night_is = re.fullmatch(r"night\.png: sha256 ([0-9a-f]{64})", lines[1])
    assert cutout_says and night_is, lines[:2]
    assert cutout_says[1] == night_is[1] == hashlib.sha256(night).hexdigest()
    walked = [line.split(maxsplit=2) for line in lines[2:5]]
    assert [w[:2] for w in walked] == [[name, MODELS[0]] for name in ("cutout", "night", "fox")]
    assert walked[0][2].startswith("image night ")
    assert walked[1][2].startswith("image fox[0], mask sky_mask ")
    assert "'The same fox asleep in the snow, under a starry night sky'" in walked[1][2]
    assert walked[2][2].startswith("generated ")
    assert "'A red fox asleep in fresh snow under a pale winter sky'" in walked[2][2]
    assert lines[5] == "chain ok: cutout <- night <- fox"

    # The files the cell saved say the same, read back here.
    folder = work / OUT / "chain"
    night_meta = mm.read_metadata(folder / "night.png")
    cutout_meta = mm.read_metadata(folder / "cutout.png")
    assert night_meta["sha256"] == hashlib.sha256(night).hexdigest()
    assert cutout_meta["sha256"] == hashlib.sha256(cutout).hexdigest()
    assert [(i["role"], i["name"], i["sha256"]) for i in cutout_meta["inputs"]] == [
        ("image", "night", night_meta["sha256"])
    ]
    roles = [(i["role"], i["name"]) for i in night_meta["inputs"]]
    assert roles == [("image", "fox[0]"), ("mask", "sky_mask")]
    assert night_meta["inputs"][0]["sha256"] == hashlib.sha256(fox).hexdigest()


def test_the_repository_notebook_has_a_parameters_cell_and_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names: dict[str, object] = {}
    exec(tagged[0].source, names)
    prompts, models, seeds = names["prompts"], names["models"], names["seeds"]
    assert isinstance(prompts, list) and len(prompts) == 3
    assert models == MODELS and seeds == [1, 2]
    assert names["out_dir"] == "research-images"  # what scripts/quickstart lists
    # The magic cell spells out the default models and seeds (option values are literal).
    magic = code_cell(nb, "%%meshimage --prompts prompts")
    assert ",".join(MODELS) in magic.source and "--seed 1,2" in magic.source
