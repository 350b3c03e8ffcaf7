"""The local store, as its users meet it: a generation kept on disk comes back as a replay
(`get`) or in the history, private to its owner, within its size cap, shared by two kernels
at once, and honest when a file on disk has gone or changed."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import sqlite3
import stat
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from PIL import Image

from mesh_magics.client.functions import generate
from mesh_magics.errors import MeshError
from mesh_magics.images import check_image
from mesh_magics.local import LocalServer
from mesh_magics.results.result import ImageResult
from mesh_magics.store import (
    Store,
    StoredImage,
    StoredImageError,
    StoreWarning,
    host_of,
    open_store,
    request_key,
    store_dir,
)
from mesh_magics.store import images as stored_images
from mesh_magics.store import store as store_module

from .servers import KeyRelay
from .support import API, FAKE_KEY, MODEL, at_once, key_is_absent, key_of, png, result_of


def noise_png(size: int = 128) -> bytes:
    """An image that does not compress: a realistic number of bytes per pixel."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def image_files(store: Store) -> set[Path]:
    return set(files_in(store.directory / "images"))


# -- replay: the same request answered from disk --------------------------------------------


def test_a_stored_generation_comes_back_as_a_replay(store: Store) -> None:
    fox = result_of(png(1), png(2), revised="A red fox, in deep snow", size="64x64")
    store.put(fox, api_host=API, cell="%%meshimage -n 2\nA fox in snow")

    replay = store.get(key_of(fox))

    assert replay is not None and replay.replayed
    assert replay.data == fox.data  # the original bytes, not a re-encoding
    assert replay.sizes == fox.sizes and replay.formats == ["png", "png"]
    assert replay.revised_prompts == ["A red fox, in deep snow"] * 2
    assert replay.request == fox.request and replay.model == MODEL
    assert replay.request_id == "req_1" and replay.usage == {"total_tokens": 42}
    assert replay.created == fox.created and replay.elapsed == fox.elapsed
    assert replay[1].size == (64, 64)  # decodes like any result
    bundle, _ = replay._repr_mimebundle_()
    assert bundle["text/plain"].startswith("<ImageResult ↺ replayed 2 images")
    assert "text/html" in bundle  # shown as a grid, like the original


def test_a_replay_says_when_it_was_made_and_by_which_request() -> None:
    made = time.mktime((2026, 11, 25, 16, 31, 0, 0, 0, -1))  # local time, as shown
    image = check_image(png(), what="test image")
    replay = ImageResult(
        [image],
        request={"prompt": "A fox"},
        model=MODEL,
        request_id="req_7f3a",
        elapsed=9.0,
        created=made,
        replayed=True,
    )
    assert replay.summary() == (
        "↺ replayed 1 image · openai/gpt-image-1 · 64x64 png · from 2026-11-25 16:31 (req_7f3a)"
    )
    assert repr(replay).startswith("<ImageResult ↺ replayed 1 image")


def test_a_new_result_knows_when_it_was_made_and_is_no_replay() -> None:
    before = time.time()
    fresh = result_of(png())
    assert before <= (fresh.created or 0) <= time.time()
    assert not fresh.replayed and fresh.summary().startswith("✓ 1 image")


def test_an_unknown_request_is_a_quiet_miss(store: Store) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get(request_key({"prompt": "never asked"}, API)) is None


def test_the_newest_answer_to_a_request_is_the_one_replayed(store: Store) -> None:
    store.put(result_of(png(1), request_id="req_old", created=1000.0), api_host=API)
    store.put(result_of(png(2), request_id="req_new", created=2000.0), api_host=API)
    replay = store.get(key_of(result_of(png())))
    assert replay is not None and replay.request_id == "req_new" and replay.data == [png(2)]


def test_a_replay_is_not_stored_again(store: Store) -> None:
    fox = result_of(png())
    store.put(fox, api_host=API)
    replay = store.get(key_of(fox))
    assert replay is not None
    store.put(replay, api_host=API)
    assert len(store.history()) == 1


def test_a_result_can_be_stored_from_the_engine_thread_and_read_on_this_one(
    store: Store,
) -> None:
    fox = result_of(png())
    writer = threading.Thread(target=store.put, args=(fox,), kwargs={"api_host": API})
    writer.start()
    writer.join()
    assert store.get(key_of(fox)) is not None


# -- what makes two requests the same -------------------------------------------------------


def test_how_the_answer_travels_does_not_change_the_request() -> None:
    body = {"prompt": "A fox", "size": "1024x1024", "n": 2, "quality": "high"}
    reordered = dict(reversed(list(body.items())))
    delivered = {**body, "stream": True, "partial_images": 2, "response_format": "b64_json"}
    assert request_key(body, API) == request_key(reordered, API) == request_key(delivered, API)
    assert request_key(body, API) != request_key({**body, "prompt": "A wolf"}, API)
    assert request_key(body, API) != request_key({**body, "n": 3}, API)


def test_the_key_is_the_sha256_of_the_canonical_body_and_the_host() -> None:
    body = {"prompt": "Un renard, été", "n": 1, "stream": True}
    canonical = '{"n":1,"prompt":"Un renard, été"}' + "\nhttps://api.meshapi.ai:443"
    assert request_key(body, API) == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_same_api_spelled_another_way_is_the_same_host() -> None:
    body = {"prompt": "A fox"}
    same = [API, "https://API.meshapi.ai:443/v1/", f"https://me:{FAKE_KEY}@api.meshapi.ai"]
    assert {request_key(body, host) for host in same} == {request_key(body, API)}
    assert host_of(same[2]) == "https://api.meshapi.ai:443"  # no credentials, ever
    others = ["https://eu.meshapi.ai", "https://api.meshapi.ai:8443", "http://api.meshapi.ai"]
    assert len({request_key(body, host) for host in [API, *others]}) == 4
    assert host_of("http://127.0.0.1:8123/v1") == "http://127.0.0.1:8123"
    assert host_of("local") == "local"


# -- history -------------------------------------------------------------------------------


def test_history_lists_the_latest_generations_newest_first(store: Store) -> None:
    for day, prompt in enumerate(["A fox", "A wolf", "A heron", "A fox at dawn"]):
        store.put(result_of(png(day), prompt=prompt, created=1e9 + day * 86400), api_host=API)

    latest = store.history()
    assert [r.prompt for r in latest] == ["A fox at dawn", "A heron", "A wolf", "A fox"]
    assert [r.prompt for r in store.history(limit=2)] == ["A fox at dawn", "A heron"]
    assert latest[3].created == 1e9  # when it was made, not when it was read
    assert not any(r.replayed for r in latest)
    assert latest[0].summary().startswith("✓ 1 image")


def test_history_finds_a_word_in_the_prompt_model_or_request_id(store: Store) -> None:
    store.put(result_of(png(1), prompt="Un RENARD en été", request_id="req_aaa"), api_host=API)
    store.put(result_of(png(2), prompt="A wolf", model="black-forest/flux"), api_host=API)
    store.put(result_of(png(3), prompt="A heron", request_id="req_Heron42"), api_host=API)

    def found(text: str) -> list[str]:
        return [r.prompt for r in store.history(text)]

    assert found("renard") == ["Un RENARD en été"]
    assert found("ÉTÉ") == ["Un RENARD en été"]  # case-insensitive beyond ASCII
    assert found("FLUX") == ["A wolf"]
    assert found("heron42") == ["A heron"]
    assert found("owl") == []
    assert len(found("")) == 3  # no filter


def test_a_history_of_200_images_reads_no_image_until_one_is_shown(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 0
    for run in range(50):
        blobs = [noise_png() for _ in range(4)]
        total += sum(map(len, blobs))
        store.put(result_of(*blobs, prompt=f"Study {run}"), api_host=API)
    read: list[Path] = []
    real_read = stored_images.read_image

    def counted(path: Path, sha256: str) -> bytes:
        read.append(path)
        return real_read(path, sha256)

    monkeypatch.setattr(stored_images, "read_image", counted)

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = store.history(limit=50)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert sum(map(len, history)) == 200
    assert held < total / 20, f"a history of {total:,} image bytes holds {held:,} bytes"
    listing = [repr(r) for r in history] + [str(r.sizes) for r in history]
    assert len(listing) == 100 and read == []  # listing it touched no file

    shown = history[7]
    shown._repr_mimebundle_()
    assert read and set(read) <= {image.path for image in shown._images}  # type: ignore[attr-defined]
    assert shown[0].size == (128, 128)


def test_a_history_result_shows_and_saves_like_any_other(store: Store, tmp_path: Path) -> None:
    store.put(result_of(png(1), png(2), revised="A red fox"), api_host=API)
    (fox,) = store.history()
    assert isinstance(fox._images[0], StoredImage)

    saved = fox.save(tmp_path / "out" / "fox.jpg")  # converted from PNG on the way
    assert [Image.open(path).format for path in saved] == ["JPEG", "JPEG"]
    assert fox.preview(0).mime == "image/png" and fox.preview(0).data == png(1)
    assert "A red fox" in fox._repr_mimebundle_()[0]["text/html"]


# -- on disk: content-addressed, private, atomic ---------------------------------------------


def test_images_are_kept_as_they_came_in_files_named_by_their_hash(store: Store) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 16), (10, 20, 30)).save(jpeg, "JPEG")
    store.put(result_of(png(5), jpeg.getvalue(), png(5)), api_host=API)  # png(5) twice

    files = image_files(store)
    assert len(files) == 2  # one file per distinct image
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name in (f"{digest}.png", f"{digest}.jpg")
        assert path.parent.name == digest[:2]
    assert {path.read_bytes() for path in files} == {png(5), jpeg.getvalue()}
    assert not [p for p in files_in(store.directory) if p.name.endswith(".part")]


def test_the_index_row_holds_the_run_and_its_images(store: Store) -> None:
    fox = result_of(png(1), png(2), revised="A red fox", size="64x64", created=1234.5)
    cell = "%%meshimage -n 2 --size 64x64\nA fox in snow"
    store.put(fox, api_host="http://127.0.0.1:8123/v1", cell=cell)

    db = sqlite3.connect(store.directory / "index.db")
    run = db.execute(
        "SELECT key, api_host, request, request_id, model, usage, created, elapsed, cell, "
        "total_bytes FROM runs"
    ).fetchone()
    host = "http://127.0.0.1:8123"
    assert run[:2] == (request_key(fox.request, host), host)
    assert json.loads(run[2]) == fox.request
    assert run[3:9] == ("req_1", MODEL, '{"total_tokens": 42}', 1234.5, 3.2, cell)
    assert run[9] >= len(png(1)) + len(png(2))
    images = db.execute("SELECT sha256, format, width, height, revised_prompt FROM images")
    assert images.fetchall() == [
        (hashlib.sha256(png(i)).hexdigest(), "png", 64, 64, "A red fox") for i in (1, 2)
    ]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the loosest umask: every mode below is the store's own doing
    try:
        store = Store(tmp_path / "cache" / "mesh-magics")
        store.put(result_of(png(1), png(2)), api_host=API)
        assert store.history()  # a reader makes the -shm file too
    finally:
        os.umask(old)
    everything = [store.directory, *store.directory.rglob("*")]
    folders = [p for p in everything if p.is_dir()]
    files = [p for p in everything if p.is_file()]
    assert len(folders) >= 3 and {p.name for p in files} >= {"index.db", "index.db-wal"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {"0o700"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o600"}
    store.close()


def test_the_api_key_never_reaches_the_store(server: LocalServer, tmp_path: Path) -> None:
    with KeyRelay(server) as api:  # an API that is sent the key, unlike our own backend
        result = generate("A fox in snow", base_url=api.url, progress="none", size="64x64", n=2)
    assert isinstance(result, ImageResult)
    store = Store(tmp_path / "store")
    # A user who typed the key into the cell, and an API URL written with credentials.
    cell = f'import os; os.environ["MESHAPI_API_KEY"] = "{FAKE_KEY}"\n%meshimage A fox in snow'
    host = server.url.replace("http://", f"http://me:{FAKE_KEY}@")
    store.put(result, api_host=host, cell=cell)
    assert store.get(key_of(result, server.url)) is not None and store.history()

    assert f"Bearer {FAKE_KEY}" in api.authorizations  # the key was in hand for the run
    stored = files_in(store.directory)
    assert len(stored) >= 4  # index.db, its WAL, the images
    for path in stored:
        content = path.read_bytes()
        assert FAKE_KEY.encode() not in content, f"the key leaked into {path.name}"
        assert FAKE_KEY[:12].encode() not in content
    assert key_is_absent(*(r.request for r in store.history()))
    store.close()


# -- the size cap ---------------------------------------------------------------------------


def test_the_oldest_generations_go_when_the_store_is_full(tmp_path: Path) -> None:
    logo = noise_png(64)  # in every run: its file stays while any run uses it
    runs = [result_of(noise_png(), logo, prompt=f"Study {i}", created=1e9 + i) for i in range(8)]
    per_run = sum(map(len, runs[0].data)) + 500
    store = Store(tmp_path / "store", max_bytes=3 * per_run)
    for run in runs:
        store.put(run, api_host=API)

    kept = [r.prompt for r in store.history(limit=100)]
    assert 1 <= len(kept) < 8
    assert kept == [f"Study {i}" for i in reversed(range(8 - len(kept), 8))]  # the newest
    assert store.total_bytes() <= store.max_bytes
    wanted = {hashlib.sha256(blob).hexdigest() for r in runs[8 - len(kept) :] for blob in r.data}
    assert {path.stem for path in image_files(store)} == wanted  # evicted images are gone
    assert store.get(key_of(runs[0])) is None and store.get(key_of(runs[-1])) is not None
    store.close()


# -- damage on disk -------------------------------------------------------------------------


def test_a_truncated_image_is_a_miss_with_one_warning_line(store: Store) -> None:
    fox = result_of(png(1), png(2))
    store.put(fox, api_host=API)
    damaged = next(path for path in image_files(store) if path.read_bytes() == png(2))
    damaged.write_bytes(png(2)[:40])

    with pytest.warns(StoreWarning) as caught:
        assert store.get(key_of(fox)) is None
    (warning,) = caught
    message = str(warning.message)
    assert str(damaged) in message and "damaged" in message and "\n" not in message

    store.put(fox, api_host=API)  # the next run with the same images mends the store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        replay = store.get(key_of(fox))
    assert replay is not None and replay.data == [png(1), png(2)]


def test_a_deleted_image_is_a_miss_with_one_warning_line(store: Store) -> None:
    fox = result_of(png(1))
    store.put(fox, api_host=API)
    (gone,) = image_files(store)
    gone.unlink()

    with pytest.warns(StoreWarning) as caught:
        assert store.get(key_of(fox)) is None
    (warning,) = caught
    assert str(gone) in str(warning.message) and "missing" in str(warning.message)


def test_a_replay_evicted_by_another_kernel_meanwhile_is_a_quiet_miss(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fox = result_of(png(1))
    store.put(fox, api_host=API)
    other_kernel = Store(store.directory, max_bytes=1)  # its next run evicts everything
    real_read = store_module.read_image

    def read_after_eviction(path: Path, sha256: str) -> bytes:
        other_kernel.put(result_of(png(2), prompt="A wolf"), api_host=API)
        return real_read(path, sha256)

    monkeypatch.setattr(store_module, "read_image", read_after_eviction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get(key_of(fox)) is None
    other_kernel.close()


def test_a_history_image_whose_file_has_gone_says_so_when_shown(store: Store) -> None:
    store.put(result_of(png(1)), api_host=API)
    (fox,) = store.history()
    (gone,) = image_files(store)
    gone.unlink()
    assert fox.summary().startswith("✓ 1 image")  # listing still works
    with pytest.raises(StoredImageError) as caught:
        fox[0]
    assert isinstance(caught.value, MeshError) and str(gone) in str(caught.value)


def test_a_generation_that_cannot_be_stored_is_a_warning_not_a_failed_run(
    store: Store,
) -> None:
    blob = png(9)
    shard = store.directory / "images" / hashlib.sha256(blob).hexdigest()[:2]
    shard.write_bytes(b"")  # a file where the image's folder should be
    with pytest.warns(StoreWarning, match="not stored"):
        store.put(result_of(blob), api_host=API)
    assert store.history() == []


# -- two kernels, one store -----------------------------------------------------------------

WRITER = """
    import io, sys, warnings
    from pathlib import Path
    from PIL import Image
    from mesh_magics.images import check_image
    from mesh_magics.results.result import ImageResult
    from mesh_magics.store import Store, StoreWarning

    warnings.simplefilter("error", StoreWarning)  # a run that is not stored fails here

    def png(seed):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (seed % 256, seed // 256, 7)).save(buffer, "PNG")
        return buffer.getvalue()

    directory, writer = Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # both start at once
    store = Store(directory)
    for run in range(50):
        shared = png(run)  # the other writer stores it too: same bytes, same file
        own = png(1000 * (writer + 1) + run)
        images = [check_image(blob, what="image") for blob in (shared, own)]
        result = ImageResult(images, request={"prompt": f"writer {writer}, run {run}"}, model="m")
        store.put(result, api_host="https://api.meshapi.ai")
    print("done", flush=True)
"""


def test_two_kernels_store_into_one_folder_at_once(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    at_once(WRITER, [[str(directory), str(i)] for i in range(2)], timeout=100)

    db = sqlite3.connect(directory / "index.db")
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (100,)
    assert db.execute("SELECT COUNT(*) FROM images").fetchone() == (200,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    store = Store(directory)
    assert len(image_files(store)) == 150  # 50 shared by both writers, 50 of each
    replays = [
        store.get(request_key({"prompt": f"writer {w}, run {r}"}, API))
        for w in range(2)
        for r in range(50)
    ]
    assert all(replay is not None and len(replay) == 2 for replay in replays)
    store.close()


# -- which store ------------------------------------------------------------------------------


def test_the_store_can_be_turned_off() -> None:
    assert open_store({"store": False, "store_dir": None}) is None


def test_where_the_store_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MESH_MAGICS_STORE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert store_dir({}) == tmp_path / "home" / ".cache" / "mesh-magics"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store_dir({}) == tmp_path / "xdg" / "mesh-magics"
    monkeypatch.setenv("MESH_MAGICS_STORE", str(tmp_path / "env"))
    assert store_dir({"store_dir": None}) == tmp_path / "env"
    assert store_dir({"store_dir": str(tmp_path / "set")}) == tmp_path / "set"


def test_tests_never_store_into_the_home_cache() -> None:
    assert Path(os.environ["MESH_MAGICS_STORE"]) != Path.home() / ".cache" / "mesh-magics"
    assert store_dir({}) == Path(os.environ["MESH_MAGICS_STORE"])


def test_one_store_per_folder_per_process(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    first = open_store({"store": True, "store_dir": str(folder), "store_max_bytes": 10_000})
    again = open_store(
        {"store": True, "store_dir": str(tmp_path / "x" / ".." / "shared"), "store_max_bytes": 99}
    )
    assert first is not None and again is first
    assert first.max_bytes == 99  # the latest configuration's cap
    other = open_store({"store": True, "store_dir": str(tmp_path / "other")})
    assert other is not None and other is not first


def test_a_store_folder_that_cannot_be_made_is_a_warning_and_no_store(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.warns(StoreWarning, match="cannot open"):
        assert open_store({"store": True, "store_dir": str(tmp_path / "a-file" / "s")}) is None
