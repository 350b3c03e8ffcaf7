"""`ImageSweep`: the runs of a sweep (several prompts x comma-listed values, one run per
combination), their results and errors, and how they show, tabulate, save and retry. Its
rows are written by sweep_table.py, its file names by sweep_file_names.py, its grid by
sweep_grid.py.

How a sweep shows: one HTML table, a row per prompt and a column per combination of the
swept values, with row and column headers. Each cell holds its run's images as data-URI
tiles (JPEG, PNG when transparent) at twice a 256 px display size, each image once, as
display.py does for a grid; a failed run shows its short error in its place. Beside it,
`text/plain` is the text table (the repr, its first `TEXT_RUNS` runs), which is what a
viewer that drops HTML shows. So a saved notebook carries each image once, at tile size.
A sweep of more than 48 images shows as pages of small thumbnails instead (sweep_grid.py).

Memory: a sweep's results, once the store has written them, read their images from it
when asked (`ImageResult.in_memory` is False) and keep only thumbnails they showed. With
the store off, or where writing a run failed, a result keeps its images' bytes: nothing
else holds them.

Billed images are never thrown away: a sweep with failed runs is still a sweep, and
`SweepError` (raised by whoever ran it, after showing it) carries it as `.sweep`.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from ..errors import (
    GenerationCancelled,
    MissingDependency,
    OptionError,
    SaveError,
    StillRunning,
    SweepError,
)
from ..redact import one_line
from ..wording import plural
from .result import ImageResult
from .run_labels import label_of, short_error
from .saving import write_file
from .sweep_file_names import unique_stems
from .sweep_picture import TILE_PX, grid_image
from .sweep_report import report_html
from .sweep_table import table_rows, text_table

if TYPE_CHECKING:
    import pandas
    from PIL import Image

    from ..engine.generation import Generation

_ENDED = ("failed", "cancelled")
TEXT_RUNS = 50  # runs the text fallback lists


@dataclass(eq=False, repr=False)
class SweepRun:
    """One combination of a sweep: its prompt, its swept values, and how it went."""

    prompt: str
    params: dict[str, Any]  # the swept values of this run (no prompt)
    label: str  # short, e.g. "openai/gpt-image-1 · seed 1"
    run: Generation | None = None  # while it runs; once settled, the sweep lets it go
    result: ImageResult | None = None
    error: BaseException | None = None
    span: tuple[float, float] | None = None  # when it ran (monotonic seconds), once ended
    sent: dict[str, Any] | None = None  # the body of a run that ended without a result

    @property
    def body(self) -> dict[str, Any]:
        """The request body it sent (its result's), or would send; {} before it is made."""
        if self.result is not None:
            return self.result.request
        if self.run is not None:
            return self.run.request.body
        return self.sent or {}

    @property
    def status(self) -> str:
        """`pending`, `running`, `done`, `failed` or `cancelled`."""
        self._sync()
        if self.error is not None:  # even with a result: an incomplete run's images
            return "cancelled" if isinstance(self.error, GenerationCancelled) else "failed"
        if self.result is not None:
            return "done"
        return self.run.status if self.run is not None else "pending"

    @property
    def elapsed(self) -> float | None:
        if self.result is not None:
            return self.result.elapsed
        return self.ran_for

    @property
    def ran_for(self) -> float | None:
        """Seconds this run took here (a replay's are its own, not its stored run's)."""
        if self.span is not None:
            return self.span[1] - self.span[0]
        if self.run is not None and self.run.started_at is not None:
            return self.run.elapsed
        return None

    @property
    def request_id(self) -> str | None:
        if self.result is not None:
            return self.result.request_id
        found = getattr(self.error, "request_id", None)  # an APIError's
        partial = getattr(self.error, "result", None)  # an IncompleteResultError's
        if found is None and isinstance(partial, ImageResult):
            found = partial.request_id
        return found if isinstance(found, str) else None

    def _sync(self) -> None:
        """Take the outcome from the run once it has settled, if no one has set it."""
        run = self.run
        if run is None or self.result is not None or self.error is not None or not run.done():
            return
        try:
            self.result = run.result(0)
        except BaseException as exc:  # the run's own error, kept as the run's outcome
            self.error = exc

    def rate(self, stars: int | None, *, image: int | str | None = None) -> None:
        """Rate this run's result (or one `image` of it), as `ImageResult.rate`."""
        self._finished().rate(stars, image=image)

    def tag(self, *tags: str, image: int | str | None = None) -> None:
        self._finished().tag(*tags, image=image)

    def untag(self, *tags: str, image: int | str | None = None) -> None:
        self._finished().untag(*tags, image=image)

    def _finished(self) -> ImageResult:
        self._sync()
        if self.result is None:
            raise OptionError(f"run {self.label} has no result to mark ({self.status})")
        return self.result

    def __repr__(self) -> str:
        return f"<SweepRun {one_line(self.prompt, 40)!r} · {self.label} · {self.status}>"


class Runner(Protocol):
    """What runs a sweep's runs (engine/sweeps.py's `SweepFeed`, handed in): some may not
    have started yet, so it, not the runs, knows when the sweep has ended."""

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def cancel(self) -> bool: ...


class ImageSweep(Sequence[SweepRun]):
    """The runs of a sweep, in order: a row per prompt, a column per combination of the
    `swept` values (their names, in column order); a table's sweep (`by_row`): a row per
    run, labelled by its row of the table and the fields it set (`swept`)."""

    def __init__(
        self,
        runs: list[SweepRun],
        *,
        swept: list[str],
        retry: Callable[[list[SweepRun]], ImageSweep] | None = None,
        elapsed: float | None = None,
        by_row: bool = False,
    ) -> None:
        self._runs = list(runs)
        self.swept = list(swept)
        self.by_row = by_row  # a table's sweep: a run a row, each labelled by its row
        self._retry = retry
        self._elapsed = elapsed
        self.runner: Runner | None = None  # set when its runs start

    # -- the sequence of runs --------------------------------------------------------

    def __len__(self) -> int:
        return len(self._runs)

    @overload
    def __getitem__(self, index: int) -> SweepRun: ...
    @overload
    def __getitem__(self, index: slice) -> list[SweepRun]: ...
    def __getitem__(self, index: int | slice) -> SweepRun | list[SweepRun]:
        return self._runs[index]

    def __iter__(self) -> Iterator[SweepRun]:
        return iter(self._runs)

    @property
    def runs(self) -> list[SweepRun]:
        return list(self._runs)

    @property
    def results(self) -> list[ImageResult]:
        """The results of the runs that succeeded, in order."""
        return [run.result for run in self._runs if run.status == "done" and run.result is not None]

    def rate(self, stars: int | None) -> None:
        """Give every run with a result the same stars (each run's own: `sweep[i].rate`)."""
        for result in self.results:
            result.rate(stars)

    def tag(self, *tags: str) -> None:
        """Tag every run with a result, e.g. `sweep.tag("lighting-study")`."""
        for result in self.results:
            result.tag(*tags)

    def untag(self, *tags: str) -> None:
        for result in self.results:
            result.untag(*tags)

    @property
    def failed(self) -> list[SweepRun]:
        """The runs that ended without a result: failed or cancelled."""
        return [run for run in self._runs if run.status in _ENDED]

    @property
    def elapsed(self) -> float:
        """Seconds from the first run's start to the last run's end (given, for a retry)."""
        if self._elapsed is not None:
            return self._elapsed
        spans = [run.span for run in self._runs if run.span is not None]
        spans += [
            (handle.started_at, handle.started_at + handle.elapsed)
            for handle in (run.run for run in self._runs)
            if handle is not None and handle.started_at is not None
        ]
        if spans:
            return max(end for _, end in spans) - min(start for start, _ in spans)
        return max((r.result.elapsed for r in self._runs if r.result is not None), default=0.0)

    # -- a handle, while it runs (`--bg`, `mm.start([...])`) -----------

    def done(self) -> bool:
        """Whether every run has ended."""
        if self.runner is not None:
            return self.runner.done()
        return all(run.run is None or run.run.done() for run in self._runs)

    @property
    def status(self) -> str:
        """`running` until every run has ended; then `done`, `failed` (some runs failed)
        or `cancelled` (some were cancelled, none failed)."""
        if not self.done():
            return "running"
        statuses = {run.status for run in self._runs}
        return next((s for s in ("failed", "cancelled") if s in statuses), "done")

    def cancel(self) -> bool:
        """Ask every run that is still going to stop, and those not started not to start;
        False if none was left."""
        if self.runner is not None:
            return self.runner.cancel()
        asked = [run.run.cancel() for run in self._runs if run.run is not None]
        return any(asked)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every run has ended, at most `timeout` seconds; True if they have."""
        if self.runner is not None:
            return self.runner.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in self._runs:
            if run.run is None:
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not run.run.wait(left):
                return False
        return True

    def result(self, timeout: float | None = None) -> ImageSweep:
        """This sweep, once every run has ended (waiting up to `timeout` seconds); raises
        `SweepError` when runs failed, as a blocking sweep does, and `TimeoutError` when
        runs are still going."""
        if not self.wait(timeout):
            raise TimeoutError(
                f"the sweep is still running after {timeout:g} s ({self._progress()}); "
                "wait longer, or .cancel() it"
            )
        if self.failed:
            raise sweep_error(self)
        return self

    def _progress(self) -> str:
        ended = sum(1 for run in self._runs if run.status not in ("pending", "running"))
        return f"{ended} of {plural(len(self), 'run')} ended"

    def _require_ended(self, what: str) -> None:
        if not self.done():
            raise StillRunning(
                f"{what}: this sweep is still running ({self._progress()}); wait with "
                ".wait() or .result(), or .cancel() it"
            )

    # -- a table ---------------------------------------------------------------------

    def table(self) -> list[dict[str, Any]]:
        """A dict per run, every dict with the same keys: the prompt, the swept values,
        the other fields of the request body, then status, images, elapsed, request_id,
        usage, replayed and error (short text, or None)."""
        return table_rows(self._runs, self.swept)

    def to_pandas(self) -> pandas.DataFrame:
        """`table()` as a pandas DataFrame, a row per run."""
        try:
            import pandas
        except ImportError:
            raise MissingDependency(
                "to_pandas() needs pandas, which is not installed: pip install pandas "
                "(or use .table(): the same rows, as a list of dicts)"
            ) from None
        return pandas.DataFrame(self.table())

    # -- saving ----------------------------------------------------------------------

    def save(
        self,
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        embed_prompt: bool | None = None,
    ) -> list[Path]:
        """Write the images of every run that has some (an incomplete run's too: they were
        billed) into `directory`, named by prompt and swept values
        (`a-fox-in-snow-gpt-image-1-seed-1.png`), then the labelled grid as `grid.png`
        (`grid_image()`; `grid-v2.png`... if taken); returns the paths: the images in run
        order, then the grid.

        Each file is saved by `ImageResult.save`: its provenance inside, and a line in
        `directory/manifest.jsonl` whose metadata holds the request's fields, so the run's
        swept values too. `embed_prompt=False` (default: the `MeshImageMagics.embed_prompt`
        setting) leaves the prompt out of the files, the manifest and the names."""
        self._require_ended("save()")
        if embed_prompt is None:
            from ..settings import configured

            embed_prompt = bool(configured()["embed_prompt"])
        folder = Path(directory).expanduser()
        stems = unique_stems(self._runs, self.swept, with_prompt=embed_prompt)
        written: list[Path] = []
        for run, stem in zip(self._runs, stems, strict=True):
            if run.status in ("pending", "running") or run.result is None:
                continue
            written += run.result.save(
                folder, stem=stem, overwrite=overwrite, embed_prompt=embed_prompt
            )
        grid = io.BytesIO()
        self.grid_image(with_prompt=embed_prompt).save(grid, "PNG")
        written.append(write_file(folder, "grid", ".png", grid.getvalue(), overwrite=overwrite))
        return written

    # -- what leaves the notebook ----------------------------------------------------

    def grid_image(self, *, tile: int = TILE_PX, with_prompt: bool = True) -> Image.Image:
        """The grid as a PIL image: a row per prompt, a column per combination of swept
        values, labelled; each run's images within a `tile`-pixel square; a failed or
        cancelled run as a red-marked tile with its short error. `with_prompt=False`
        labels the rows `prompt 1`, `prompt 2`..."""
        return grid_image(self, tile=tile, with_prompt=with_prompt)

    def report(
        self, path: str | os.PathLike[str], *, prices: Mapping[str, float | None] | None = None
    ) -> Path:
        """Write one self-contained HTML file: the summary, the grid (images embedded),
        the table of runs, each run's provenance and the estimated cost where `prices`
        (per image, by model, as `/v1/models` prices them) gives one, "unknown" where not. It
        refers to nothing outside itself (no script, no link, no URL). Returns its path."""
        self._require_ended("report()")
        target = Path(path).expanduser()
        try:
            target.write_text(report_html(self, prices=prices), encoding="utf-8")
        except OSError as exc:
            raise SaveError(f"cannot write the report to {target}: {exc.strerror or exc}") from exc
        return target

    def log_mlflow(
        self,
        experiment: str | None = None,
        *,
        run_name: str | None = None,
        prices: Mapping[str, float | None] | None = None,
        embed_prompt: bool | None = None,
    ) -> str:
        """Log this sweep as an MLflow run (`pip install mesh-magics[mlflow]`): its fields
        as params, seconds, runs, failed, images and (when `prices` gives it) cost as
        metrics, every image, `grid.png` and `report.html` as artifacts; returns the run
        id. It logs where MLflow is pointed (`mlflow.set_tracking_uri`)."""
        self._require_ended("log_mlflow()")
        from .sweep_mlflow import log_sweep  # MLflow is imported only when a sweep is logged

        return log_sweep(
            self, experiment=experiment, run_name=run_name, prices=prices, embed_prompt=embed_prompt
        )

    # -- running again ---------------------------------------------------------------

    def retry(self) -> ImageSweep:
        """Run the failed runs again; returns a sweep of every run: the old successes and
        the new runs, in the same places. Raises `SweepError` (with that whole sweep as
        `.sweep`) when the runner does because runs failed again."""
        self._require_ended("retry()")
        failed = self.failed
        if self._retry is None:
            raise OptionError("this sweep cannot run again: it was not made by a sweep run")
        if not failed:
            raise OptionError(f"nothing to retry: all {plural(len(self), 'run')} succeeded")
        try:
            again = self._retry(failed)
        except SweepError as exc:
            merged = self._merged(failed, exc.sweep)
            raise sweep_error(merged, exc.hint) from None
        return self._merged(failed, again)

    def _merged(self, failed: list[SweepRun], again: ImageSweep) -> ImageSweep:
        """This sweep with each failed run replaced by its new run (matched by prompt and
        params, so the runner may return new SweepRuns or the same ones re-run)."""
        waiting: dict[str, deque[SweepRun]] = {}
        for run in again:
            waiting.setdefault(_key(run), deque()).append(run)
        retried = {id(run) for run in failed}
        runs = []
        for run in self._runs:
            queue = waiting.get(_key(run))
            runs.append(queue.popleft() if id(run) in retried and queue else run)
        runs += [run for queue in waiting.values() for run in queue]  # none, normally
        return ImageSweep(
            runs,
            swept=self.swept,
            retry=self._retry,
            elapsed=self.elapsed + again.elapsed,
            by_row=self.by_row,
        )

    # -- how it reads ----------------------------------------------------------------

    def summary(self) -> str:
        """`✓ 6 runs · 12 images · 3.2 s`, or `✗ 4 of 6 runs · 2 failed · 8 images · 3.2 s`."""
        statuses = Counter(run.status for run in self._runs)
        images = sum(len(result) for result in self.results)
        done, total = statuses["done"], len(self)
        if done == total:
            head = f"✓ {plural(total, 'run')}"
        else:
            mark = "⏳" if statuses["running"] or statuses["pending"] else "✗"
            head = f"{mark} {done} of {plural(total, 'run')}"
        parts = [head]
        parts += [f"{statuses[s]} {s}" for s in ("failed", "cancelled", "running") if statuses[s]]
        if statuses["pending"]:
            parts.append(f"{statuses['pending']} waiting")
        replayed = sum(result.replayed for result in self.results)
        if replayed:
            parts.append(f"↺ {replayed} replayed")
        parts += [plural(images, "image"), f"{self.elapsed:.1f} s"]
        return " · ".join(parts)

    def __repr__(self) -> str:
        """The summary, then a line per run (the first `TEXT_RUNS`; `table()` has all)."""
        text = [f"<ImageSweep {self.summary()}>"]
        text += text_table(self._runs[:TEXT_RUNS], self.swept)
        if len(self) > TEXT_RUNS:
            text.append(f"  … and {len(self) - TEXT_RUNS:,} more runs (.table() lists every one)")
        return "\n".join(text)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from .sweep_grid import grid_html  # the renderer knows the model, not the reverse

        return {"text/plain": repr(self), "text/html": grid_html(self)}, {}


def sweep_error(sweep: ImageSweep, hint: str | None = None) -> SweepError:
    """The `SweepError` that says how many runs of `sweep` failed and why, and what to do
    next (`hint`; None: `.retry()`, worded for one run or many)."""
    failed = sweep.failed
    reasons = Counter(short_error(run.error) for run in failed if run.error is not None)
    # A count after each reason only says something when more than one run failed.
    listed = [
        f"{text} ({count})" if len(failed) > 1 else text for text, count in reasons.most_common(3)
    ]
    if len(reasons) > 3:
        listed.append(plural(len(reasons) - 3, "other error"))
    because = f": {', '.join(listed)}" if listed else ""
    said = hint if hint is not None else _retry_hint(len(failed), len(sweep))
    return SweepError(f"{_how_many_failed(len(failed), len(sweep))}{because}; {said}", sweep, hint)


def _how_many_failed(failed: int, runs: int) -> str:
    """`its one run failed`, `both runs failed`, `all 8 runs failed`, `3 of 8 runs failed`."""
    if runs == 1:
        return "its one run failed"
    if failed == runs:
        return "both runs failed" if runs == 2 else f"all {runs} runs failed"
    return f"{failed} of {plural(runs, 'run')} failed"


def _retry_hint(failed: int, runs: int) -> str:
    if failed == runs:
        again = "it again" if runs == 1 else "them again"
    else:
        again = "only the failed one" if failed == 1 else "only the failed ones"
    return f"the sweep is bound and shown; .retry() runs {again}"


# -- pieces --------------------------------------------------------------------------


def _key(run: SweepRun) -> str:
    return repr((run.prompt, sorted(run.params.items(), key=lambda item: item[0])))


__all__ = [
    "ImageSweep",
    "MissingDependency",
    "SweepError",
    "SweepRun",
    "label_of",
    "short_error",
]
