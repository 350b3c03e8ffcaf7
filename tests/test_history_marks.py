"""Findable history: a user rates and tags what they made, and finds it again by model,
size, seed, time, tag or rating, from Python and with `%mesh history`; the marks are in
the store, so they outlive the kernel, and a store made before marks gains them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.errors import OptionError
from mesh_magics.local import LocalServer
from mesh_magics.results.history import History
from mesh_magics.results.result import ImageResult
from mesh_magics.store import Store
from mesh_magics.store.index import SCHEMA_VERSION
from mesh_magics.views.history_widget import HistoryWidget

from .support import run_cell

MADE = [
    ("openai/gpt-image-1", "64x64", 1),
    ("local/sketch", "96x64", 2),
    ("vertex/imagen-3", "64x64", 3),
]


def made(server: LocalServer, word: str) -> list[ImageResult]:
    """Three runs, one per model, size and seed, with `word` in each prompt."""
    where = {"base_url": server.url, "n": 2, "progress": "none"}
    return [
        mm.generate(f"{word} fox", model=m, size=s, seed=n, **where)  # type: ignore[arg-type]
        for m, s, n in MADE
    ]


def models(found: History) -> list[str]:
    return [result.model for result in found]


def test_rating_and_tags_are_kept_in_the_store_and_outlive_the_kernel(
    server: LocalServer, _session_store: Path
) -> None:
    word = uuid.uuid4().hex
    first, second, _ = made(server, word)
    first.rate(4)
    first.tag("hero", "draft")
    first.untag("draft")
    first.rate(5, image=1)
    first.tag("best", image=-1)  # the last image
    second.tag("sky", image=1)
    assert (first.rating, first.tags, first.rating_of(1), first.tags_of(1)) == (
        4, ("hero",), 5, ("best",)
    )  # fmt: skip
    assert second.rating is None and second.tags == () and second.tags_of(1) == ("sky",)

    # Another process (a restarted kernel) reads them from the same store.
    code = (
        "import mesh_magics as mm\n"
        f"(r,) = mm.history({word!r}, tag='hero')\n"
        "print(r.rating, r.tags, r.rating_of(1), r.tags_of(1))\n"
    )
    env = {**__import__("os").environ, "MESH_MAGICS_STORE": str(_session_store)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.strip() == "4 ('hero',) 5 ('best',)", out.stderr


def test_every_filter_finds_its_runs(server: LocalServer) -> None:
    word = uuid.uuid4().hex
    gpt, sketch, imagen = made(server, word)
    gpt.rate(3)
    sketch.rate(5, image=0)
    imagen.tag("hero")
    sketch.tag("hero", image=1)
    sketch.tag("night")

    def find(**filters: object) -> list[str]:
        return models(mm.history(word, **filters))  # type: ignore[arg-type]

    everything = ["vertex/imagen-3", "local/sketch", "openai/gpt-image-1"]
    assert find() == everything
    assert find(model="local/sketch") == ["local/sketch"]
    assert find(size="64x64") == ["vertex/imagen-3", "openai/gpt-image-1"]
    assert find(size="96x64") == ["local/sketch"]
    assert find(seed=3) == ["vertex/imagen-3"]
    assert find(tag="hero") == ["vertex/imagen-3", "local/sketch"]  # a run's, or an image's
    assert find(tag=["hero", "night"]) == ["local/sketch"]  # all of them
    assert find(min_rating=3) == ["local/sketch", "openai/gpt-image-1"]
    assert find(min_rating=5) == ["local/sketch"]
    now = datetime.now()
    assert find(since=now - timedelta(hours=1)) == everything
    assert find(since=(now + timedelta(hours=1)).isoformat()) == []
    assert find(until=date.today()) == everything  # a date: to the end of that day
    assert find(until="2000-01-01") == []
    assert find(since=date.today().isoformat(), model="openai/gpt-image-1") == [
        "openai/gpt-image-1"
    ]
    assert find(limit=1) == ["vertex/imagen-3"]


@pytest.mark.parametrize(
    ("filters", "says"),
    [
        ({"min_rating": 6}, "1 to 5 stars"),
        ({"min_rating": "4"}, "1 to 5 stars"),
        ({"since": "last tuesday"}, "ISO date"),
        ({"until": 5}, "ISO date"),
        ({"size": "big"}, "size"),
        ({"seed": 1.5}, "seed"),
        ({"tag": ""}, "tag"),
        ({"limit": 0}, "limit"),
    ],
)
def test_a_bad_filter_is_one_line(filters: dict[str, object], says: str) -> None:
    with pytest.raises(OptionError, match=says) as caught:
        mm.history(**filters)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_rating_must_be_one_to_five_stars_and_a_result_in_a_store(server: LocalServer) -> None:
    (result, *_) = made(server, uuid.uuid4().hex)
    for wrong in (0, 6, 2.5, True):
        with pytest.raises(OptionError, match="1 to 5"):
            result.rate(wrong)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="image 7"):
        result.rate(3, image=7)
    loose = ImageResult(list(result._images), request=result.request, model=result.model)
    with pytest.raises(OptionError, match="in no store"):
        loose.rate(3)
    sha = __import__("hashlib").sha256(result.data[1]).hexdigest()
    result.rate(2, image=sha)
    assert result.rating_of(1) == 2


def test_a_sweep_rates_and_tags_each_run(server: LocalServer) -> None:
    word = uuid.uuid4().hex
    sweep = mm.sweep(
        f"{word} heron", base_url=server.url, seed=[1, 2], size="64x64", progress="none"
    )
    sweep.tag("study")
    sweep[1].rate(5)
    assert [r.tags for r in sweep.results] == [("study",), ("study",)]
    assert [r.request["seed"] for r in mm.history(word, min_rating=5)] == [2]
    assert len(mm.history(word, tag="study")) == 2


def test_mesh_history_takes_the_filters(ip: InteractiveShell, server: LocalServer) -> None:
    word = uuid.uuid4().hex
    gpt, sketch, _ = made(server, word)
    gpt.rate(4)
    sketch.tag("hero")
    found = run_cell(ip, f"%mesh history {word} --model local/sketch --tag hero -n 5")
    assert models(found.result) == ["local/sketch"]
    found = run_cell(
        ip, f"%mesh history {word} --min-rating 4 --size 64x64 --seed 1 --since 2000-01-01"
    )
    assert models(found.result) == ["openai/gpt-image-1"]
    assert "★★★★☆" in repr(found.result)
    found = run_cell(ip, f"%mesh history {word} --until 2000-01-01")
    assert list(found.result) == []
    bad = run_cell(ip, "%mesh history --min-rating 9")
    assert isinstance(bad.error, OptionError) and "%mesh history" in bad.error_text
    assert "\n" not in bad.error_text
    shown = run_cell(ip, "%mesh history -h")
    assert "--min-rating" in shown.stdout and "--tag" in shown.stdout


def test_a_click_on_a_star_rates_the_run_and_a_tag_narrows_the_view(server: LocalServer) -> None:
    word = uuid.uuid4().hex
    made(server, word)
    found = mm.history(word)
    found[0].tag("hero")
    view = HistoryWidget(found)
    view.rows[0].stars[3].click()  # the fourth star
    assert mm.history(word)[0].rating == 4
    assert [b.description for b in view.rows[0].stars] == ["★"] * 4 + ["☆"]
    view.rows[0].stars[3].click()  # its rating again: cleared
    assert mm.history(word)[0].rating is None
    view.rows[1].add_tag("night")
    assert mm.history(word, tag="night")[0].model == found[1].model
    (hero,) = view.rows[0].tags.children
    hero.value = True  # a click on the tag: only the runs with it show
    assert [row.box.layout.display for row in view.rows] == [None, "none", "none"]
    bundle = History(found, widget_view=lambda h: HistoryWidget(h).box)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "#hero" in mm.history(word)._repr_html_()  # the static table, for saved notebooks


def test_a_store_made_before_marks_gains_them(tmp_path: Path, server: LocalServer) -> None:
    folder = tmp_path / "old"
    Store(folder).close()
    db = sqlite3.connect(folder / "index.db")  # undo version 3: as version 2 left it
    db.executescript(
        "DROP TRIGGER tags_go_with_their_run; DROP TABLE tags; "
        "ALTER TABLE runs DROP COLUMN rating; ALTER TABLE images DROP COLUMN rating; "
        "PRAGMA user_version = 2;"
    )
    db.close()
    store = Store(folder)
    (version,) = store._db.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
    (result, *_) = made(server, uuid.uuid4().hex)
    store.put(result, api_host=server.url)  # (already stored in the session's store too)
    (again,) = store.history()
    again.rate(2)
    again.tag("old")
    store.close()
    (reopened,) = Store(folder).history(where=None)
    assert (reopened.rating, reopened.tags) == (2, ("old",))
