"""A sweep's result and its progress: the labelled grid, the table, saving, retrying, the
error that says what failed; one progress view for all the runs."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import capture_output
from PIL import Image

from mesh_magics.errors import (
    GenerationCancelled,
    IncompleteResultError,
    InternalServerError,
    MeshError,
    OptionError,
    RateLimitError,
)
from mesh_magics.events import Completed, PartialImage, Retrying, StatusChanged
from mesh_magics.images import check_image
from mesh_magics.results.image_sweep import (
    ImageSweep,
    MissingDependency,
    SweepError,
    SweepRun,
    label_of,
    short_error,
    sweep_error,
)
from mesh_magics.results.metadata import read_metadata
from mesh_magics.results.result import ImageResult
from mesh_magics.views import make_sweep_view
from mesh_magics.views.sweep_progress import NullSweepView
from mesh_magics.views.sweep_text import DisplayTextSweepView, StreamTextSweepView
from mesh_magics.views.sweep_widget import WidgetSweepView
from tests.servers import png_bytes

MODELS = ["openai/gpt-image-1", "google/imagen-4"]
SEEDS = [1, 2]
PROMPTS = ["A fox <in> the snow & ice", "An owl at dusk"]


def result_for(prompt: str, params: dict[str, Any], width: int, n: int = 1) -> ImageResult:
    """A result whose images are `width` pixels wide: each image of a sweep can be told
    from the others by its size alone."""
    images = [check_image(png_bytes(width, 20 + i), what="test image") for i in range(n)]
    return ImageResult(
        images,
        request={"prompt": prompt, "n": n, "size": "1024x1024", "stream": True, **params},
        model=params.get("model", "openai/gpt-image-1"),
        request_id=f"req_{width}",
        usage={"total_tokens": width},
        elapsed=1.5,
    )


def rate_limited(request_id: str = "req_429") -> RateLimitError:
    return RateLimitError(
        "Slow <down>", status=429, code="rate_limit_exceeded", request_id=request_id
    )


def server_error() -> InternalServerError:
    return InternalServerError("boom", status=500, code="server_error", request_id="req_500")


def make_sweep(
    failures: dict[int, BaseException] | None = None, *, n: int = 1, **kw: Any
) -> ImageSweep:
    """2 prompts x 2 models x 2 seeds: 8 runs; run i's images are 10 + i pixels wide."""
    failures = failures or {}
    runs = []
    for prompt in PROMPTS:
        for model in MODELS:
            for seed in SEEDS:
                params = {"model": model, "seed": seed}
                run = SweepRun(prompt, params, label_of(params))
                index = len(runs)
                if index in failures:
                    run.error = failures[index]
                else:
                    run.result = result_for(prompt, params, 10 + index, n)
                runs.append(run)
    return ImageSweep(runs, swept=["model", "seed"], **kw)


class Grid(HTMLParser):
    """The table of a sweep's HTML: rows of cells, each cell's text and images."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[list[dict[str, Any]]] = []
        self._cell: dict[str, Any] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td"):
            self._cell = {"tag": tag, "text": "", "images": []}
            self.rows[-1].append(self._cell)
        elif tag == "img" and self._cell is not None:
            self._cell["images"].append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def decoded(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.partition(",")[2])))


# -- the grid --------------------------------------------------------------------------


def test_the_grid_has_a_row_per_prompt_and_a_column_per_combination() -> None:
    sweep = make_sweep({3: rate_limited()})
    data, _ = sweep._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html"}  # no image/* beside it: the pixels once
    grid = Grid(data["text/html"])
    header, *rows = grid.rows
    assert [cell["text"] for cell in header] == [
        "",
        "openai/gpt-image-1 · seed 1",
        "openai/gpt-image-1 · seed 2",
        "google/imagen-4 · seed 1",
        "google/imagen-4 · seed 2",
    ]
    assert [row[0]["text"] for row in rows] == PROMPTS  # escaped in the HTML, read back
    assert [row[0]["tag"] for row in rows] == ["th", "th"]
    widths = [
        [[decoded(img["src"]).width for img in cell["images"]] for cell in row[1:]] for row in rows
    ]
    assert widths == [[[10], [11], [12], []], [[14], [15], [16], [17]]]
    failed = rows[0][4]["text"]
    assert "✗ RateLimitError: 429 rate_limit_exceeded: Slow <down>" in failed
    assert "req_429" not in failed  # the table has the request id; the grid stays short


def test_the_grid_escapes_every_text_it_shows() -> None:
    sweep = make_sweep({0: rate_limited()})
    page = sweep._repr_mimebundle_()[0]["text/html"]
    assert "<in>" not in page and "<down>" not in page
    assert "A fox &lt;in&gt; the snow &amp; ice" in page
    assert "Slow &lt;down&gt;" in page


def test_each_image_is_shown_once_at_twice_its_tile_size() -> None:
    big = ImageResult(
        [check_image(png_bytes(1024, 512), what="a")] * 2,
        request={"prompt": "p", "n": 2},
        model="m",
        preview_max_px=1024,
    )
    run = SweepRun("p", {"seed": 1}, "seed 1", result=big)
    page = ImageSweep([run], swept=["seed"])._repr_mimebundle_()[0]["text/html"]
    images = Grid(page).rows[1][1]["images"]
    assert len(images) == 2 == len(re.findall(r"data:image/", page))
    for img in images:
        assert decoded(img["src"]).size == (512, 256)  # 2x the 256 px display size
        assert (img["width"], img["height"]) == ("256", "128")


def test_a_run_with_several_images_and_one_without_swept_values() -> None:
    sweep = ImageSweep(
        [SweepRun(p, {}, "", result=result_for(p, {}, 30 + i, n=2)) for i, p in enumerate(PROMPTS)],
        swept=[],
    )
    rows = Grid(sweep._repr_mimebundle_()[0]["text/html"]).rows
    assert len(rows) == 2  # no header row: nothing was swept but the prompts
    assert [len(row[1]["images"]) for row in rows] == [2, 2]


def test_an_incomplete_run_shows_its_images_and_its_error() -> None:
    partial = result_for("p", {"seed": 1}, 40)
    run = SweepRun("p", {"seed": 1}, "seed 1", result=partial)
    run.error = IncompleteResultError("asked for 2 images, the server returned 1", partial)
    sweep = ImageSweep([run], swept=["seed"])
    cell = Grid(sweep._repr_mimebundle_()[0]["text/html"]).rows[1][1]
    assert len(cell["images"]) == 1 and "✗ IncompleteResultError: asked for 2" in cell["text"]
    assert run.status == "failed" and sweep.results == [] and sweep.failed == [run]


def test_the_text_fallback_is_a_readable_table() -> None:
    text = repr(make_sweep({3: rate_limited()}))
    lines = text.splitlines()
    assert lines[0] == "<ImageSweep ✗ 7 of 8 runs · 1 failed · 7 images · 1.5 s>"
    assert lines[1].split() == ["prompt", "model", "seed", "outcome"]
    assert "1 image · 1.5 s" in lines[2]
    assert "✗ RateLimitError: 429" in lines[5] and "google/imagen-4" in lines[5]
    assert len(lines) == 10


# -- runs, results, summary ---------------------------------------------------------------


def test_a_sweep_is_a_sequence_of_runs_with_results_and_failures() -> None:
    sweep = make_sweep({3: rate_limited(), 5: GenerationCancelled("cancelled after 1 s")})
    assert len(sweep) == 8 and sweep[0].prompt == PROMPTS[0] and sweep[-1].params["seed"] == 2
    assert [r.request_id for r in sweep.results] == [f"req_{10 + i}" for i in (0, 1, 2, 4, 6, 7)]
    assert [run.status for run in sweep.failed] == ["failed", "cancelled"]
    assert sweep.summary() == "✗ 6 of 8 runs · 1 failed · 1 cancelled · 6 images · 1.5 s"
    assert make_sweep(n=2).summary() == "✓ 8 runs · 16 images · 1.5 s"


def test_a_runs_status_follows_its_generation_until_the_runner_settles_it() -> None:
    done = result_for("p", {}, 50)
    handle = SimpleNamespace(status="running", started_at=None, done=lambda: False)
    run = SweepRun("p", {}, "", run=handle)  # type: ignore[arg-type]
    assert run.status == "running"
    handle.done = lambda: True
    handle.status = "done"
    handle.result = lambda timeout: done
    assert run.status == "done" and run.result is done  # taken from the settled run
    assert SweepRun("p", {}, "").status == "pending"


def test_short_errors_name_the_class_and_leave_the_request_id_to_the_table() -> None:
    assert short_error(rate_limited()) == ("RateLimitError: 429 rate_limit_exceeded: Slow <down>")
    assert short_error(GenerationCancelled("cancelled after 2.0 s")) == "GenerationCancelled"
    assert short_error(KeyError("x")) == "KeyError: 'x'"


# -- the table -----------------------------------------------------------------------------


def test_the_table_has_a_row_per_run_and_the_same_keys_in_each() -> None:
    rows = make_sweep({3: rate_limited("req_abc")}).table()
    assert len(rows) == 8
    assert list(rows[0]) == [
        "prompt", "model", "seed", "n", "size",
        "status", "images", "elapsed", "request_id", "usage", "replayed", "error",
    ]  # fmt: skip
    assert all(list(row) == list(rows[0]) for row in rows)
    assert rows[0] == {
        "prompt": PROMPTS[0], "model": MODELS[0], "seed": 1, "n": 1, "size": "1024x1024",
        "status": "done", "images": 1, "elapsed": 1.5, "request_id": "req_10",
        "usage": {"total_tokens": 10}, "replayed": False, "error": None,
    }  # fmt: skip
    failed = rows[3]
    assert (failed["model"], failed["seed"], failed["status"]) == (MODELS[1], 2, "failed")
    assert failed["request_id"] == "req_abc" and failed["images"] == 0
    assert failed["error"] == "RateLimitError: 429 rate_limit_exceeded: Slow <down>"


def test_input_images_in_the_body_are_named_not_copied() -> None:
    url = "data:image/png;base64," + "A" * 5000
    result = ImageResult([], request={"prompt": "p", "image": [url]}, model="m")
    (row,) = ImageSweep([SweepRun("p", {}, "", result=result)], swept=[]).table()
    assert row["image"] == ["data:image/png;base64,… (5022 chars)"]


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_to_pandas_gives_the_table_as_a_dataframe() -> None:
    frame = make_sweep({3: rate_limited()}).to_pandas()
    assert frame.shape[0] == 8 and list(frame.columns)[:3] == ["prompt", "model", "seed"]


def test_to_pandas_hands_the_table_to_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = make_sweep({3: rate_limited()})
    monkeypatch.setitem(sys.modules, "pandas", SimpleNamespace(DataFrame=lambda rows: rows))
    assert sweep.to_pandas() == sweep.table()


def test_to_pandas_without_pandas_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(MissingDependency, match="pip install pandas") as caught:
        make_sweep().to_pandas()
    assert isinstance(caught.value, MeshError) and isinstance(caught.value, ImportError)
    assert caught.value._render_traceback_()[0].startswith("MissingDependency: to_pandas()")


# -- saving ----------------------------------------------------------------------------------


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_save_names_each_file_by_prompt_and_values_with_a_manifest_line(tmp_path: Path) -> None:
    sweep = make_sweep({3: rate_limited()}, n=2)
    saved = sweep.save(tmp_path, embed_prompt=True)
    paths, grid = saved[:-1], saved[-1]  # the images, then the labelled grid
    assert grid.name == "grid.png" and grid.parent == tmp_path
    assert len(paths) == 14  # 7 runs that succeeded, 2 images each
    assert paths[0].name == "a-fox-in-the-snow-ice-gpt-image-1-seed-1-1.png"
    assert paths[-1].name == "an-owl-at-dusk-imagen-4-seed-2-2.png"
    assert len({path.name for path in paths}) == 14 and all(p.parent == tmp_path for p in paths)
    lines = manifest(tmp_path)
    assert [line["file"] for line in lines] == [path.name for path in paths]
    expected = [r for r in sweep if r.result is not None for _ in range(2)]
    for line, path, run in zip(lines, paths, expected, strict=True):
        assert {k: line["metadata"][k] for k in run.params} == run.params  # the swept values
        assert line["metadata"]["prompt"] == run.prompt
        assert read_metadata(path)["seed"] == run.params["seed"]
    again = sweep.save(tmp_path, embed_prompt=True)  # nothing is overwritten
    assert again[0].name == "a-fox-in-the-snow-ice-gpt-image-1-seed-1-1-v2.png"
    assert len(manifest(tmp_path)) == 28


def test_save_keeps_names_apart_and_the_prompt_out_when_asked(tmp_path: Path) -> None:
    long = "a very long prompt about a fox " * 4
    runs = [
        SweepRun(prompt, {"seed": 1}, "seed 1", result=result_for(prompt, {"seed": 1}, 60 + i))
        for i, prompt in enumerate([long + "one", long + "two"])
    ]
    *named, _ = ImageSweep(runs, swept=["seed"]).save(tmp_path / "a", embed_prompt=True)
    first, second = (p.name for p in named)  # the same 60 characters: told apart by -r2
    assert first.startswith("a-very-long-prompt-about-a-fox") and first.endswith("-seed-1.png")
    assert second.startswith("a-very-long-prompt-about-a-fox") and second.endswith("-seed-1-r2.png")
    assert max(len(p.stem) for p in named) <= 60
    hidden = ImageSweep(runs, swept=["seed"]).save(tmp_path / "b", embed_prompt=False)
    assert [p.name for p in hidden] == ["seed-1.png", "seed-1-r2.png", "grid.png"]
    assert "fox" not in (tmp_path / "b" / "manifest.jsonl").read_text()


# -- retrying ----------------------------------------------------------------------------------


def test_retry_runs_only_the_failed_runs_and_keeps_the_rest() -> None:
    asked: list[list[SweepRun]] = []

    def retry(failed: list[SweepRun]) -> ImageSweep:
        asked.append(failed)
        again = [
            SweepRun(r.prompt, dict(r.params), r.label, result=result_for(r.prompt, r.params, 90))
            for r in failed
        ]
        return ImageSweep(again, swept=["model", "seed"], retry=retry, elapsed=2.0)

    sweep = make_sweep({3: rate_limited(), 6: server_error()}, retry=retry)
    merged = sweep.retry()
    assert [[(r.prompt, r.params) for r in runs] for runs in asked] == [
        [
            (PROMPTS[0], {"model": MODELS[1], "seed": 2}),
            (PROMPTS[1], {"model": MODELS[1], "seed": 1}),
        ]
    ]
    assert [run.status for run in merged] == ["done"] * 8
    assert [merged[i] is sweep[i] for i in range(8)] == [i not in (3, 6) for i in range(8)]
    assert merged[3].result is not None and merged[3].result.request_id == "req_90"
    assert merged.swept == sweep.swept and merged.summary() == "✓ 8 runs · 8 images · 3.5 s"
    with pytest.raises(OptionError, match="nothing to retry"):
        merged.retry()
    with pytest.raises(OptionError, match="cannot run again"):
        make_sweep({0: rate_limited()}).retry()


def test_a_retry_that_fails_again_raises_with_the_whole_sweep() -> None:
    def retry(failed: list[SweepRun]) -> ImageSweep:
        again = [SweepRun(r.prompt, dict(r.params), r.label, error=rate_limited()) for r in failed]
        raise sweep_error(ImageSweep(again, swept=["model", "seed"], retry=retry), "try later")

    sweep = make_sweep({3: server_error()}, retry=retry)
    with pytest.raises(SweepError, match="1 of 8 runs failed: RateLimitError") as caught:
        sweep.retry()
    assert len(caught.value.sweep) == 8 and str(caught.value).endswith("; try later")
    assert caught.value.sweep[3].error is not None and caught.value.sweep[0] is sweep[0]


# -- the error ---------------------------------------------------------------------------


def test_sweep_error_says_how_many_failed_and_why() -> None:
    sweep = make_sweep({1: rate_limited("req_a"), 3: rate_limited("req_b"), 6: server_error()})
    error = sweep_error(sweep)
    assert str(error) == (
        "3 of 8 runs failed: RateLimitError: 429 rate_limit_exceeded: Slow <down> (2), "
        "InternalServerError: 500 server_error: boom (1); the sweep is bound and shown; "
        ".retry() runs only the failed ones"
    )
    assert error.sweep is sweep and isinstance(error, MeshError)
    assert error._render_traceback_() == [f"SweepError: {error}"]


# -- the progress views ----------------------------------------------------------------------


class ZMQInteractiveShell(SimpleNamespace):
    """Stands in for ipykernel's shell (see tests/test_view.py)."""

    def get_parent(self) -> dict[str, object]:
        return {"content": {"allow_stdin": self.allow_stdin}}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """The views' clock, moved by hand: throttling is counted, never timed."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


LABELS = ["openai/gpt-image-1 · seed 1 · A fox", "openai/gpt-image-1 · seed 2 · A fox"]


@pytest.fixture
def shell() -> InteractiveShell:
    """An initialized shell, so that display() publishes (capture_output records it)."""
    get_ipython()  # starts the test shell once; later calls return None
    return InteractiveShell.instance()


def test_each_frontend_gets_its_sweep_view() -> None:
    lab = ZMQInteractiveShell(allow_stdin=True)
    nbclient = ZMQInteractiveShell(allow_stdin=False)
    assert isinstance(make_sweep_view("h", LABELS, "auto", lab), WidgetSweepView)
    assert isinstance(make_sweep_view("h", LABELS, "auto", nbclient), DisplayTextSweepView)
    assert isinstance(make_sweep_view("h", LABELS, "auto", object()), StreamTextSweepView)
    assert isinstance(make_sweep_view("h", LABELS, "widget", nbclient), WidgetSweepView)
    assert isinstance(make_sweep_view("h", LABELS, "none", lab), NullSweepView)


def test_a_script_gets_the_sweep_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    view = make_sweep_view("sweep · 2 runs", LABELS, "auto", None)
    view.start()
    view.run_ended(0, "done", elapsed=3.4)  # the run's own time, when the runner knows it
    view.run_ended(1, "failed", "NotFoundError: 404")  # ended before any event: no time to show
    assert capsys.readouterr().err.splitlines() == [
        "⏳ sweep · 2 runs · started",
        "   ✓ openai/gpt-image-1 · seed 1 · A fox · done · 3.4 s",
        "   ✗ openai/gpt-image-1 · seed 2 · A fox · failed: NotFoundError: 404",
    ]


def test_a_terminal_rewrites_the_totals_and_prints_each_end() -> None:
    terminal, clock = Terminal(), Clock()
    view = StreamTextSweepView("sweep", LABELS, terminal)
    view._clock = clock
    view.start()
    view.update(0, StatusChanged("queued"))
    clock.now += 1.2
    view.update(1, Retrying(2, 1.5, "HTTP 429 rate_limit_exceeded"))
    view.run_ended(0, "done")
    clock.now += 1.0
    view.tick(2.2)
    view.run_ended(1, "failed", "RateLimitError: 429 slow down")
    view.finish("✗ 1 of 2 runs · 1 failed · 1 image · 2.2 s")
    text = terminal.getvalue()
    assert "\r\x1b[K   0 of 2 done · 2 running · 1 s" in text  # the totals, in place
    assert "retrying in 1.5 s (attempt 2)" in text
    assert "\r\x1b[K   ✓ openai/gpt-image-1 · seed 1 · A fox · done · 1.2 s\n" in text
    assert "✗ openai/gpt-image-1 · seed 2 · A fox · failed: RateLimitError: 429 slow down" in text
    assert text.endswith("\r\x1b[K✗ 1 of 2 runs · 1 failed · 1 image · 2.2 s\n")


def test_a_kernel_without_widgets_gets_one_text_output_updated_about_once_a_second(
    shell: InteractiveShell,
) -> None:
    clock = Clock()
    view = DisplayTextSweepView("sweep · 2 runs", LABELS)
    view._clock = clock
    with capture_output() as captured:
        view.start()
        for _ in range(100):  # a burst: no redraw until a second has passed
            view.update(0, StatusChanged("processing"))
            view.tick(0.5)
        clock.now += 1.0
        view.update(1, StatusChanged("queued"))
        view.run_ended(0, "done")
        clock.now += 1.0
        view.tick(2.0)
        view.finish("✓ 2 runs · 2 images · 2.0 s")
    outputs = captured.outputs
    assert len(outputs) == 4  # the first display, an update a second (2), the summary
    assert outputs[0].data["text/plain"].splitlines() == [
        "⏳ sweep · 2 runs · 0 of 2 done · 0 s",
        "  · openai/gpt-image-1 · seed 1 · A fox · waiting",
        "  · openai/gpt-image-1 · seed 2 · A fox · waiting",
    ]
    assert outputs[1].data["text/plain"].splitlines()[1:] == [
        "  … openai/gpt-image-1 · seed 1 · A fox · processing · 1 s",
        "  … openai/gpt-image-1 · seed 2 · A fox · queued · 0 s",
    ]
    assert outputs[2].data["text/plain"].splitlines()[:2] == [
        "⏳ sweep · 2 runs · 1 of 2 done · 1 running · 2 s",
        "  ✓ openai/gpt-image-1 · seed 1 · A fox · done · 1.0 s",
    ]
    assert outputs[3].data == {"text/plain": "✓ 2 runs · 2 images · 2.0 s"}


def test_the_view_of_1000_runs_lists_the_running_the_failed_and_the_latest_and_counts_the_rest(
    shell: InteractiveShell,
) -> None:
    clock = Clock()
    view = DisplayTextSweepView("sweep · 1,000 runs", [f"seed {i}" for i in range(1000)])
    view._clock = clock
    with capture_output() as captured:
        view.start()
        for index in range(100):
            view.update(index, StatusChanged("processing"))
        for index in range(92):
            view.run_ended(index, "failed" if index == 3 else "done", "boom" * (index == 3))
        clock.now += 1.0
        view.tick(1.0)
    lines = captured.outputs[-1].data["text/plain"].splitlines()
    assert lines[0] == "⏳ sweep · 1,000 runs · 91 of 1,000 done · 1 failed · 8 running · 1 s"
    assert len(lines) == 1 + 40 + 1  # the heading, 40 runs, the count of the others
    listed = [line.split(" · ")[0][4:] for line in lines[1:-1]]
    assert listed == ["seed 3", *(f"seed {i}" for i in range(61, 100))]  # failed, latest, running
    assert lines[-1] == "  … and 960 more runs (60 done, 900 waiting)"


def widget_tree(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    yield widget
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            yield part
    for child in getattr(widget, "children", ()):
        yield from widget_tree(child)


def started_widget_view(
    shell: InteractiveShell, on_cancel: Any = None
) -> tuple[WidgetSweepView, Clock, list[str]]:
    """A widget view, shown, with every trait change counted (each is a comm message)."""
    clock = Clock()
    view = WidgetSweepView("sweep · 2 runs", LABELS, on_cancel)
    view._clock = clock
    with capture_output():
        view.start()
    changes: list[str] = []
    for widget in widget_tree(view._box):
        widget.observe(lambda change: changes.append(change["name"]))
    return view, clock, changes


def test_the_widget_view_has_no_button_where_no_click_can_arrive(shell: InteractiveShell) -> None:
    view, _, _ = started_widget_view(shell)
    tree = list(widget_tree(view._box))
    assert not any(isinstance(w, widgets.Button) for w in tree)
    hints = [w.value for w in tree if isinstance(w, widgets.HTML)]
    assert any("interrupt the kernel to cancel" in hint for hint in hints)
    assert repr(view._box) == "meshimage: sweep · 2 runs (running)"
    lines = view._lines.value
    assert "openai/gpt-image-1 · seed 1 · A fox" in lines and "waiting" in lines

    cancelled: list[bool] = []
    view, _, _ = started_widget_view(shell, on_cancel=lambda: cancelled.append(True))
    (button,) = [w for w in widget_tree(view._box) if isinstance(w, widgets.Button)]
    button.click()
    assert cancelled == [True] and button.disabled


def test_a_burst_of_events_costs_a_handful_of_widget_messages(shell: InteractiveShell) -> None:
    view, clock, changes = started_widget_view(shell)
    clock.now += 5.0  # the first event may redraw; the other 99 of the burst may not
    for i in range(100):
        view.update(i % 2, PartialImage(0, b"") if i % 3 else StatusChanged("processing"))
        view.tick(0.01 * i)
    assert 1 <= len(changes) <= 3  # one redraw: lines, totals (and the bar, had one ended)
    per_second = []
    for _ in range(10):  # ten seconds of events and ticks, ten a second per run
        before = len(changes)
        for _ in range(10):
            clock.now += 0.1
            view.update(0, StatusChanged("processing"))
            view.update(1, StatusChanged("queued"))
            view.tick(clock.now - 100)
        per_second.append(len(changes) - before)
    assert max(per_second) <= 6  # at most two redraws a second, of at most three traits
    view.run_ended(0, "done")
    clock.now += 1
    view.tick(12.0)
    assert view._bar.value == 1 and "1 of 2 done" in view._totals.value


def test_finish_closes_every_widget_then_leaves_the_summary(shell: InteractiveShell) -> None:
    view, _, _ = started_widget_view(shell, on_cancel=lambda: None)
    tree = list(widget_tree(view._box))
    assert all(widget.comm is not None for widget in tree)
    with capture_output() as captured:
        view.finish("✓ 2 runs · 2 images · 2.0 s")
    assert all(widget.comm is None for widget in tree)
    (output,) = captured.outputs
    assert output.data == {"text/plain": "✓ 2 runs · 2 images · 2.0 s"}  # no widget state

    view, _, _ = started_widget_view(shell)
    with capture_output() as captured:
        view.fail("cancelled after 3.0 s")
    assert captured.outputs[0].data == {"text/plain": "✗ sweep · 2 runs · cancelled after 3.0 s"}


def test_a_view_started_in_a_placeholder_replaces_it(shell: InteractiveShell) -> None:
    from IPython.display import display

    with capture_output() as captured:
        place = display({"text/plain": "⏳ starting"}, raw=True, display_id=True)
        view = DisplayTextSweepView("sweep", LABELS)
        view.start(place)
        view.update(0, Completed([], "req_1"))
        view.run_ended(0, "done")
        view.finish("✓ done")
    ids = {output.transient["display_id"] for output in captured.outputs}  # type: ignore[attr-defined]
    assert len(ids) == 1 and len(captured.outputs) == 3
