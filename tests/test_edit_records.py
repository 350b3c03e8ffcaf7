"""An edit remembers the images it came from: the store keeps its inputs and keys it apart
from a generation, finds the run that made an image, walks an edit back to its first
generation (`parents`), brings an older store up to date, and every saved file names its
own hash and its inputs' hashes, so a folder of saved files can be walked back too."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mesh_magics.client.functions import generate
from mesh_magics.images import check_image
from mesh_magics.local import LocalServer
from mesh_magics.results.metadata import read_metadata
from mesh_magics.results.result import ImageResult
from mesh_magics.results.saving import MANIFEST
from mesh_magics.settings import configured
from mesh_magics.store import Store, StoredImage, open_store, request_key
from mesh_magics.store.disk import image_path, make_private_folder, write_image
from mesh_magics.store.index import SCHEMA_VERSION

from .servers import KeyRelay
from .support import FAKE_KEY, at_once, key_is_absent

API = "https://api.meshapi.ai"
MODEL = "openai/gpt-image-1"


def png(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed % 256, seed * 7 % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sent(blob: bytes, role: str = "image", name: str | None = None) -> dict[str, Any]:
    """An input entry, as the client records an image it sent."""
    with Image.open(io.BytesIO(blob)) as img:
        width, height = img.size
    return {
        "role": role,
        "sha256": sha(blob),
        "name": name,
        "format": "png",
        "width": width,
        "height": height,
        "bytes": len(blob),
    }


def generation(
    *blobs: bytes, prompt: str = "A fox in snow", created: float | None = None
) -> ImageResult:
    images = [check_image(blob, what="test image") for blob in blobs]
    return ImageResult(
        images,
        request={"model": MODEL, "prompt": prompt, "n": len(blobs), "stream": True},
        model=MODEL,
        request_id=f"req_{prompt[-8:]}",
        created=created,
    )


def edit(
    out: bytes, inputs: list[dict[str, Any]], prompt: str = "Make it night", **extra: Any
) -> ImageResult:
    """An edit result whose body names its inputs by hash, as the client builds it."""
    body: dict[str, Any] = {"model": MODEL, "prompt": prompt}
    by_role = {role: [f"sha256:{i['sha256']}" for i in inputs if i["role"] == role] for role in
               ("image", "reference", "mask")}  # fmt: skip
    body["image"] = by_role["image"][0]
    if by_role["reference"]:
        body["reference_images"] = by_role["reference"]
    if by_role["mask"]:
        body["mask"] = by_role["mask"][0]
    body["operation"] = "edit"
    return ImageResult(
        [check_image(out, what="edited image")],
        request=body,
        model=MODEL,
        request_id=f"req_{prompt[-8:]}",
        inputs=inputs,
        **extra,
    )


@pytest.fixture
def configured_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The store `parents` opens (the configured one), in a folder of this test's own."""
    monkeypatch.setenv("MESH_MAGICS_STORE", str(tmp_path / "configured"))
    opened = open_store(configured())
    assert opened is not None
    return opened


# -- the result ---------------------------------------------------------------------------


def test_a_generation_has_no_inputs_and_an_edit_has_them() -> None:
    fox = generation(png(1))
    assert fox.inputs == [] and not fox.is_edit and fox.parents == []
    entries = [sent(png(1), name="fox[0]"), sent(png(2), "mask")]
    night = edit(png(3), entries)
    assert night.is_edit and night.inputs == entries
    entries[0]["name"] = "changed"
    assert night.inputs[0]["name"] == "fox[0]"  # its own copy


# -- the store ----------------------------------------------------------------------------


def test_an_edit_is_stored_and_replayed_with_its_inputs(store: Store) -> None:
    entries = [sent(png(1), name="fox[0]"), sent(png(2), "reference", "wolf[1]")]
    night = edit(png(3), entries)
    store.put(night, api_host=API, cell="%%meshimage --image fox[0] ...\nMake it night")

    replay = store.get(request_key(night.request, API, "edits"))
    assert replay is not None and replay.replayed and replay.is_edit
    assert replay.inputs == entries and replay.request == night.request
    assert replay.data == [png(3)]
    assert store.get(request_key(night.request, API)) is None  # not a generation's answer
    (listed,) = store.history()
    assert listed.inputs == entries and not listed.replayed

    fox = generation(png(4))
    store.put(fox, api_host=API)
    again = store.get(request_key(fox.request, API))
    assert again is not None and again.inputs == [] and not again.is_edit
    db = sqlite3.connect(store.directory / "index.db")
    stored = db.execute("SELECT prompt, inputs FROM runs ORDER BY id").fetchall()
    db.close()
    assert stored[0][0] == "Make it night" and json.loads(stored[0][1]) == entries
    assert stored[1] == ("A fox in snow", None)  # NULL for a generation


def test_the_same_body_to_another_endpoint_is_another_request() -> None:
    body = {"model": MODEL, "prompt": "A fox", "image": "sha256:" + "ab" * 32, "stream": True}
    generations = request_key(body, API)
    assert request_key(body, API, "generations") == generations
    assert request_key(body, API, "edits") != generations
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "stream"}, sort_keys=True, separators=(",", ":")
    )
    line = canonical + "\nhttps://api.meshapi.ai:443"
    assert generations == sha(line.encode())  # the key of every run stored before edits
    assert request_key(body, API, "edits") == sha((line + "\nedits").encode())


def test_find_image_gives_the_newest_run_that_made_it_lazily(store: Store) -> None:
    shared = png(1)
    store.put(generation(shared, png(2), prompt="older", created=1000.0), api_host=API)
    store.put(generation(png(3), shared, prompt="newer", created=2000.0), api_host=API)

    found = store.find_image(sha(shared), preview_max_px=256)
    assert found is not None and found.prompt == "newer" and not found.replayed
    assert found.preview_max_px == 256 and found.created == 2000.0
    assert all(isinstance(i, StoredImage) and not i.loaded for i in found._images)
    assert found.data == [png(3), shared]  # read when asked
    assert store.find_image(sha(png(2))).prompt == "older"  # type: ignore[union-attr]
    assert store.find_image(sha(b"never stored")) is None


# -- parents --------------------------------------------------------------------------------


def test_an_edit_of_an_edit_walks_back_to_its_generation(configured_store: Store) -> None:
    first, second, third = png(10), png(11), png(12)
    fox = generation(first, png(13), prompt="A fox in snow")
    configured_store.put(fox, api_host=API)
    dusk = edit(second, [sent(first, name="fox[0]")], prompt="Make it dusk")
    configured_store.put(dusk, api_host=API)
    night = edit(third, [sent(second, name="dusk[0]")], prompt="Make it night")
    configured_store.put(night, api_host=API)

    (made_dusk,) = night.parents
    assert made_dusk.prompt == "Make it dusk" and made_dusk.is_edit
    assert not any(i.loaded for i in made_dusk._images)  # type: ignore[attr-defined]
    assert made_dusk.inputs == dusk.inputs
    (made_fox,) = made_dusk.parents
    assert made_fox.prompt == "A fox in snow" and not made_fox.is_edit
    assert made_fox.parents == [] and made_fox.data == [first, png(13)]

    chain, step = [], night  # what a user's loop does
    while step.parents:
        step = step.parents[0]
        chain.append(step.prompt)
    assert chain == ["Make it dusk", "A fox in snow"]


def test_parents_follow_the_inputs_in_order_once_each(configured_store: Store) -> None:
    fox, wolf = png(20), png(21)
    configured_store.put(generation(fox, prompt="A fox"), api_host=API)
    configured_store.put(generation(wolf, prompt="A wolf"), api_host=API)
    from_disk = png(22)  # an image the store never made
    entries = [
        sent(wolf, name="wolf[0]"),
        sent(from_disk, "reference", None),
        sent(fox, "reference", "fox[0]"),
        sent(wolf, "mask", "wolf[0]"),  # the same image again: the same parent, once
    ]
    both = edit(png(23), entries, prompt="The two of them")
    configured_store.put(both, api_host=API)
    assert [parent.prompt for parent in both.parents] == ["A wolf", "A fox"]

    alone = edit(png(24), [sent(from_disk)], prompt="From a file")
    assert alone.parents == []  # not stored, and its input is not in the store either


def test_an_edit_that_gave_its_input_back_is_not_its_own_parent(
    configured_store: Store,
) -> None:
    fox = png(30)
    configured_store.put(generation(fox, prompt="A fox", created=1000.0), api_host=API)
    same = edit(fox, [sent(fox)], prompt="Change nothing", created=2000.0)
    configured_store.put(same, api_host=API)
    assert configured_store.find_image(sha(fox)).prompt == "Change nothing"  # type: ignore[union-attr]
    assert same.parents == []  # rather than itself, for ever


def test_a_result_no_store_holds_has_no_parents(configured_store: Store) -> None:
    fox = png(40)
    configured_store.put(generation(fox), api_host=API)
    night = edit(png(41), [sent(fox)])
    assert night.parents == []  # made by hand, held by no store: nowhere to look
    configured_store.put(night, api_host=API)
    assert len(night.parents) == 1  # the store that holds it finds its parent


# -- a store made before edits ----------------------------------------------------------------

V1_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    api_host TEXT NOT NULL,
    request TEXT NOT NULL,
    prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    request_id TEXT,
    usage TEXT,
    created REAL NOT NULL,
    elapsed REAL NOT NULL,
    cell TEXT,
    total_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, created);
CREATE INDEX IF NOT EXISTS runs_by_age ON runs (created);
CREATE TABLE IF NOT EXISTS images (
    run_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    revised_prompt TEXT,
    PRIMARY KEY (run_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS images_by_hash ON images (sha256);
PRAGMA user_version = 1;
COMMIT;
"""
OLD_BODY = {"model": MODEL, "prompt": "An old fox", "n": 1}


def make_v1_store(folder: Path, blob: bytes) -> None:
    """A store as version 1 left it: its schema, one run, its image file."""
    for private in (folder, folder / "images"):  # 0700, as version 1 made them
        make_private_folder(private)
    db = sqlite3.connect(folder / "index.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(V1_SCHEMA)
    db.execute(
        "INSERT INTO runs (key, api_host, request, prompt, model, request_id, usage, created, "
        "elapsed, cell, total_bytes) VALUES (?, ?, ?, ?, ?, ?, NULL, 1000.0, 2.5, NULL, ?)",
        (request_key(OLD_BODY, API), "https://api.meshapi.ai:443", json.dumps(OLD_BODY),
         "An old fox", MODEL, "req_old", len(blob)),
    )  # fmt: skip
    db.execute(
        "INSERT INTO images VALUES (1, 0, ?, 'png', 48, 32, ?, NULL)", (sha(blob), len(blob))
    )
    db.close()
    write_image(image_path(folder / "images", sha(blob), "png"), blob)


def schema_of(folder: Path) -> tuple[int, list[str], int]:
    db = sqlite3.connect(folder / "index.db")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    (runs,) = db.execute("SELECT COUNT(*) FROM runs").fetchone()
    db.close()
    return version, columns, runs


def test_a_store_made_before_edits_is_brought_up_to_date(tmp_path: Path) -> None:
    folder, old = tmp_path / "v1", png(50)
    make_v1_store(folder, old)
    version, columns, runs = schema_of(folder)
    assert version == 1 and "inputs" not in columns and runs == 1

    store = Store(folder)
    version, columns, runs = schema_of(folder)
    assert version == SCHEMA_VERSION and columns.count("inputs") == 1 and runs == 1
    replay = store.get(request_key(OLD_BODY, API))  # the old row, replayed as before
    assert replay is not None and replay.data == [old] and replay.inputs == []
    assert store.find_image(sha(old)).request_id == "req_old"  # type: ignore[union-attr]

    night = edit(png(51), [sent(old, name="old[0]")])
    store.put(night, api_host=API)
    stored = store.get(request_key(night.request, API, "edits"))
    assert stored is not None and stored.inputs == night.inputs
    store.close()

    again = Store(folder)  # opening it again changes nothing
    assert schema_of(folder) == (SCHEMA_VERSION, columns, 2)
    assert [r.prompt for r in again.history()] == ["Make it night", "An old fox"]
    again.close()
    db = sqlite3.connect(folder / "index.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_store_of_a_newer_version_keeps_its_number(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    db = sqlite3.connect(tmp_path / "s" / "index.db")
    db.execute("PRAGMA user_version = 7")
    db.close()
    Store(tmp_path / "s").close()
    assert schema_of(tmp_path / "s")[0] == 7


OPENER = """
    import io, sys, warnings
    from pathlib import Path
    from PIL import Image
    from mesh_magics.images import check_image
    from mesh_magics.results.result import ImageResult
    from mesh_magics.store import Store, StoreWarning

    warnings.simplefilter("error", StoreWarning)
    directory, who = Path(sys.argv[1]), int(sys.argv[2])
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (who, 1, 2)).save(buffer, "PNG")
    print("ready", flush=True)
    sys.stdin.readline()  # both open the old store at once
    store = Store(directory)
    entry = {"role": "image", "sha256": sys.argv[3], "name": "old[0]", "format": "png",
             "width": 48, "height": 32, "bytes": 1}
    result = ImageResult([check_image(buffer.getvalue(), what="image")],
                         request={"prompt": f"edit {who}", "image": "sha256:" + sys.argv[3]},
                         model="m", inputs=[entry])
    store.put(result, api_host="https://api.meshapi.ai")
    print("done", flush=True)
"""


def test_two_kernels_opening_an_old_store_at_once_both_use_it(tmp_path: Path) -> None:
    folder, old = tmp_path / "v1", png(60)
    make_v1_store(folder, old)
    at_once(OPENER, [[str(folder), str(i), sha(old)] for i in range(2)], timeout=60)
    version, columns, runs = schema_of(folder)
    assert version == SCHEMA_VERSION and columns.count("inputs") == 1 and runs == 3
    store = Store(folder)
    assert sorted(r.prompt for r in store.history() if r.is_edit) == ["edit 0", "edit 1"]
    store.close()


# -- saved files ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".gif"])
def test_a_saved_edit_names_the_saved_image_it_came_from(tmp_path: Path, suffix: str) -> None:
    first = png(70)
    fox = generation(first, prompt="A fox in snow")
    (fox_file,) = fox.save(tmp_path / f"fox{suffix}")
    entries = [sent(first, name="fox[0]"), sent(png(71), "mask", "mask")]
    night = edit(png(72), entries)
    (night_file,) = night.save(tmp_path / f"night{suffix}")

    made, edited = read_metadata(fox_file), read_metadata(night_file)
    assert made["sha256"] == sha(first) and made["inputs"] is None
    assert edited["inputs"] == entries and edited["sha256"] == sha(png(72))
    assert edited["inputs"][0]["sha256"] == made["sha256"]
    assert edited["image"] == f"sha256:{sha(first)}" and edited["operation"] == "edit"
    assert edited["prompt"] == "Make it night"


def test_the_manifest_and_a_stored_result_say_the_same(tmp_path: Path, store: Store) -> None:
    first = png(80)
    fox = generation(first, png(81))
    store.put(fox, api_host=API)
    night = edit(png(82), [sent(first, name="fox[0]")])
    store.put(night, api_host=API)
    for result in (*store.history(), fox, night):  # lazy ones hash without a read too
        result.save(tmp_path / "out")
    lines = [json.loads(line) for line in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    saved = [(line["metadata"]["sha256"], line["metadata"]["inputs"]) for line in lines]
    edited, made = [(sha(png(82)), night.inputs)], [(sha(first), None), (sha(png(81)), None)]
    assert saved == edited + made + made + edited  # the history (newest first), then these
    for line in lines:
        assert line["metadata"] == read_metadata(tmp_path / "out" / line["file"])
        assert line["sha256"] == sha((tmp_path / "out" / line["file"]).read_bytes())


def test_without_the_prompt_the_hashes_and_inputs_stay(tmp_path: Path) -> None:
    first = png(90)
    night = edit(png(91), [sent(first, name="fox[0]")], prompt="a private night plan")
    for suffix in (".png", ".jpg", ".webp", ".gif"):
        (path,) = night.save(tmp_path / f"x{suffix}", embed_prompt=False)
        found = read_metadata(path)
        assert found["prompt"] is None and found["inputs"] == night.inputs
        assert found["sha256"] == sha(png(91))
    saved = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"private night" not in saved


def test_inputs_of_any_text_round_trip(tmp_path: Path) -> None:
    names = ["fox[0]", "一只狐狸[1]", "nul \x00 bell \x07 \ufffe", "a & <b> ]]>", "\u2028x\r\n"]
    entries = [sent(png(i), "reference", name) for i, name in enumerate(names, 100)]
    night = edit(png(99), [sent(png(98)), *entries])
    for suffix in (".png", ".jpg", ".webp", ".gif"):
        (path,) = night.save(tmp_path / f"x{suffix}")
        assert read_metadata(path)["inputs"] == night.inputs


# -- the key ----------------------------------------------------------------------------------


def test_the_api_key_never_reaches_an_edit_in_the_store(
    server: LocalServer, tmp_path: Path
) -> None:
    with KeyRelay(server) as api:  # an API that is sent the key, unlike our own backend
        fox = generate("A fox in snow", base_url=api.url, progress="none", size="64x64")
    assert isinstance(fox, ImageResult)
    assert f"Bearer {FAKE_KEY}" in api.authorizations
    store = Store(tmp_path / "store")
    store.put(fox, api_host=server.url)
    typed = f"fox_{FAKE_KEY}[0]"  # a user who named a variable after the key
    night = edit(png(110), [sent(fox.data[0], name=typed)])
    cell = f'import os; os.environ["MESHAPI_API_KEY"] = "{FAKE_KEY}"\n%meshimage --image fox[0]'
    store.put(night, api_host=server.url.replace("http://", f"http://me:{FAKE_KEY}@"), cell=cell)

    stored = store.get(request_key(night.request, server.url, "edits"))
    assert stored is not None and stored.inputs[0]["sha256"] == sha(fox.data[0])
    assert key_is_absent(stored.inputs, stored.request, stored.model)
    assert stored.inputs[0]["name"].startswith("fox_")  # masked, not dropped
    files = sorted(p for p in store.directory.rglob("*") if p.is_file())
    assert len(files) >= 4
    for path in files:
        content = path.read_bytes()
        for form in (FAKE_KEY, FAKE_KEY[:12], FAKE_KEY[-16:]):
            assert form.encode() not in content, f"the key leaked into {path.name}"
            assert base64.b64encode(form.encode()) not in content
    store.close()

    saved = night.save(tmp_path / "saved")  # the saved file and its manifest line too
    (kept,) = read_metadata(saved[0])["inputs"]
    assert kept["name"].startswith("fox_") and kept["sha256"] == sha(fox.data[0])
    for path in [*saved, tmp_path / "saved" / "manifest.jsonl"]:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the key leaked into {path.name}"
