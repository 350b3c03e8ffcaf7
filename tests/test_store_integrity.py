"""The store against what it finds on disk: an edited index, planted symlinks, a folder
open to others, damaged rows, files a killed process left behind. It refuses, repairs or
skips, says so in one line, and never reads, writes or deletes a file outside itself."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest

import mesh_magics as mm
from mesh_magics.errors import OptionError
from mesh_magics.store import Store, StoreWarning, open_store
from mesh_magics.store.store import ORPHAN_AGE

from .support import API, key_of, png, result_of


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of the user's, in a folder of its own outside the store."""
    mine = tmp_path_factory.mktemp("elsewhere") / "holiday.png"
    mine.write_bytes(png(99))
    mine.chmod(0o644)
    return mine


def sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def untouched(path: Path, blob: bytes, mode: int = 0o644) -> bool:
    return path.read_bytes() == blob and stat.S_IMODE(path.stat().st_mode) == mode


def one_line_each(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    messages = [str(warning.message) for warning in caught if warning.category is StoreWarning]
    assert messages and all("\n" not in message for message in messages)
    return messages


def edit(store: Store, sql: str, *values: object) -> None:
    """Change the index behind the store's back, as a user with sqlite3 (or a bug) might."""
    db = sqlite3.connect(store.directory / "index.db", isolation_level=None)
    db.execute(sql, values)
    db.close()


# -- paths named by the index must lie inside the store ---------------------------------------


def test_an_edited_row_cannot_make_eviction_delete_a_file_outside(
    store: Store, outside: Path
) -> None:
    fox = result_of(png(1))
    store.put(fox, api_host=API)
    # images/<sha[:2]>/<sha>.png with sha "../../…/holiday": the user's own file
    escape = os.path.relpath(outside.with_suffix(""), store.directory.resolve())
    edit(store, "UPDATE images SET sha256 = ?", escape)

    store.max_bytes = store.total_bytes() * 3 // 2  # the next run evicts the edited one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.put(result_of(png(2), prompt="A wolf"), api_host=API)

    assert untouched(outside, png(99))
    assert any("not a SHA-256" in message for message in one_line_each(caught))
    assert [run.prompt for run in store.history()] == ["A wolf"]


def test_an_edited_row_is_not_read_from_outside(store: Store, outside: Path) -> None:
    fox = result_of(png(1))
    store.put(fox, api_host=API)
    escape = os.path.relpath(outside.with_suffix(""), store.directory.resolve())
    edit(store, "UPDATE images SET sha256 = ?", escape)

    with pytest.warns(StoreWarning) as caught:
        assert store.get(key_of(fox)) is None
        assert store.history() == []
    assert all("damaged" in message for message in one_line_each(caught))
    assert untouched(outside, png(99))


def test_eviction_never_deletes_through_a_symlinked_folder(store: Store, outside: Path) -> None:
    store.put(result_of(png(1)), api_host=API)
    shard = store.directory / "images" / sha(png(1))[:2]
    for stored in shard.iterdir():
        stored.unlink()
    shard.rmdir()
    # a link where the image's folder was, to a folder holding a file of that very name
    mine = outside.parent / f"{sha(png(1))}.png"
    mine.write_bytes(png(1))
    shard.symlink_to(outside.parent, target_is_directory=True)

    store.max_bytes = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.put(result_of(png(2), prompt="A wolf"), api_host=API)

    assert mine.read_bytes() == png(1) and untouched(outside, png(99))
    assert any("outside the store" in message for message in one_line_each(caught))


# -- symlinks inside the store are not followed ---------------------------------------------


def test_an_image_folder_that_is_a_symlink_is_not_written_through(
    store: Store, outside: Path
) -> None:
    shard = store.directory / "images" / sha(png(3))[:2]
    shard.symlink_to(outside.parent, target_is_directory=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.put(result_of(png(3)), api_host=API)

    assert sorted(p.name for p in outside.parent.iterdir()) == ["holiday.png"]
    (message,) = one_line_each(caught)
    assert "not stored" in message and "outside the store" in message


def test_an_index_that_is_a_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path, outside: Path
) -> None:
    folder = tmp_path / "planted"
    folder.mkdir(mode=0o700)
    (folder / "index.db").symlink_to(outside)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert open_store({"store": True, "store_dir": str(folder)}) is None

    assert untouched(outside, png(99))  # neither chmod-ed to 0600 nor opened as a database
    (message,) = one_line_each(caught)
    assert "cannot open" in message and "symlink" in message


# -- a folder open to others ------------------------------------------------------------------


def test_a_store_folder_open_to_others_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    (folder / "images").mkdir(parents=True)
    for made in (folder, folder / "images"):
        made.chmod(0o777)

    with pytest.warns(StoreWarning) as caught:
        Store(folder).close()

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "images").stat().st_mode) == 0o700
    assert all("made it private" in message for message in one_line_each(caught))


def test_someone_elses_open_store_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(os, "geteuid", lambda: folder.stat().st_uid + 1)  # we are not its owner

    with pytest.warns(StoreWarning) as caught:
        assert open_store({"store": True, "store_dir": str(folder)}) is None

    (message,) = one_line_each(caught)
    assert "not yours" in message and "store_dir" in message
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777  # not ours to change
    assert list(folder.iterdir()) == []


# -- a damaged row is skipped, the rest is served -----------------------------------------------


def test_damaged_rows_are_skipped_with_one_line_each(store: Store) -> None:
    runs = {
        name: result_of(png(seed), prompt=f"A {name}", created=1_700_000_000.0 + seed)
        for seed, name in enumerate(["fox", "owl", "wolf", "hare", "lynx"], start=1)
    }
    for run in runs.values():
        store.put(run, api_host=API)
    edit(store, "UPDATE runs SET request = '{not json' WHERE prompt = 'A owl'")
    edit(store, "UPDATE runs SET created = 'yesterday' WHERE prompt = 'A wolf'")
    edit(store, "UPDATE runs SET usage = '[1, 2' , total_bytes = 'lots' WHERE prompt = 'A hare'")
    edit(store, "UPDATE images SET width = 'wide' WHERE sha256 = ?", sha(png(5)))

    with pytest.warns(StoreWarning) as caught:
        assert [run.prompt for run in store.history()] == ["A fox"]
        shown = repr(mm.history(config={"store": True, "store_dir": str(store.directory)}))
        assert store.get(key_of(runs["owl"])) is None
        assert store.find_image(sha(png(3))) is None
    messages = one_line_each(caught)
    assert all("damaged" in message and "skipped" in message for message in messages)
    assert any("request is not a JSON object" in message for message in messages)
    assert any("created is 'yesterday'" in message for message in messages)
    assert "A fox" in shown

    replay = store.get(key_of(runs["fox"]))
    assert replay is not None and replay.data == [png(1)]
    store.max_bytes = store.total_bytes() // 2  # eviction goes over the damaged rows too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.put(result_of(png(9), prompt="A stag"), api_host=API)
    db = sqlite3.connect(store.directory / "index.db")
    left = [prompt for (prompt,) in db.execute("SELECT prompt FROM runs ORDER BY id")]
    db.close()
    assert "A wolf" not in left and left[-1] == "A stag"  # the time that is no time went first
    assert store.history()[0].prompt == "A stag"


# -- history's limit ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [2**63, -1, 0, 1.5, True, "20"])
def test_a_history_limit_out_of_range_is_a_one_line_option_error(limit: object) -> None:
    with pytest.raises(OptionError) as caught:
        mm.history(limit=limit)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    (line,) = caught.value._render_traceback_()
    assert "1 to 1,000,000" in line and "\n" not in line


# -- a warning is one line, as the user sees it ---------------------------------------------

UNSTORABLE = """
    import asyncio, hashlib, io, sys
    from pathlib import Path
    from PIL import Image
    from mesh_magics.images import check_image
    from mesh_magics.results.result import ImageResult
    from mesh_magics.store import Store

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
    blob = buffer.getvalue()
    store = Store(Path(sys.argv[1]))
    # a file where the image's folder should be: the run cannot be stored
    (store.directory / "images" / hashlib.sha256(blob).hexdigest()[:2]).write_bytes(b"")
    result = ImageResult([check_image(blob, what="image")], request={"prompt": "x"}, model="m")
    asyncio.run(asyncio.to_thread(store.put, result, api_host="https://api.meshapi.ai"))
"""


def test_a_store_warning_is_one_line_on_stderr(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(UNSTORABLE), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert "StoreWarning" in line and "not stored" in line


# -- what a killed process leaves behind ----------------------------------------------------

KILLED_WRITER = """
    import io, os, sys
    from pathlib import Path
    from PIL import Image
    from mesh_magics.images import check_image
    from mesh_magics.results.result import ImageResult
    from mesh_magics.store import Store

    def png(seed):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (seed, 0, 7)).save(buffer, "PNG")
        return buffer.getvalue()

    store = Store(Path(sys.argv[1]))
    renamed = 0
    real_replace = os.replace

    def replace(source, target):  # the second image stops between its temp file and its name
        global renamed
        renamed += 1
        if renamed == 2:
            print("written", flush=True)
            sys.stdin.readline()  # killed here, before any row is committed
        real_replace(source, target)

    os.replace = replace
    images = [check_image(png(seed), what="image") for seed in (201, 202)]
    result = ImageResult(images, request={"prompt": "killed"}, model="m")
    store.put(result, api_host="https://api.meshapi.ai")
    print("stored", flush=True)
"""


def test_files_left_by_a_killed_writer_are_reclaimed_when_the_store_is_opened(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    kept = Store(folder)
    fox = result_of(png(1))
    kept.put(fox, api_host=API)
    kept.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
    images = folder / "images"
    left = {path for path in images.rglob("*") if path.is_file()}
    referenced = {path for path in left if path.stem == sha(png(1))}
    assert len(left) == 3 and len(referenced) == 1  # ours, the orphan image, a .part file
    assert any(path.suffix == ".part" for path in left)
    an_hour_ago = time.time() - ORPHAN_AGE - 60
    for path in left:  # the crash was a while ago
        os.utime(path, (an_hour_ago, an_hour_ago))
    fresh = images / "ff" / f"{'f' * 64}.png"  # another kernel's, not yet indexed: too young
    fresh.parent.mkdir(mode=0o700)
    fresh.write_bytes(png(5))

    reopened = Store(folder)

    assert {path for path in images.rglob("*") if path.is_file()} == referenced | {fresh}
    replay = reopened.get(key_of(fox))
    assert replay is not None and replay.data == [png(1)]
    reopened.close()
