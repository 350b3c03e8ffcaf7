"""A sweep as a table: a dict per run with the same keys for every run (`table()`,
`to_pandas()`: the prompt, the swept values, the rest of the request body, then how the
run went), and the text table of prompt, swept values and outcome that its repr shows.
An input image's data URL is named in a cell, never copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..redact import one_line
from ..wording import plural
from .run_labels import short_error

if TYPE_CHECKING:
    from .image_sweep import SweepRun


def table_rows(runs: Sequence[SweepRun], swept: list[str]) -> list[dict[str, Any]]:
    """`ImageSweep.table()`: a dict per run, with the same keys for every run."""
    rows = [_row(run) for run in runs]
    fields = dict.fromkeys(["prompt", *swept])
    for row in rows:
        fields.update(dict.fromkeys(row))
    return [{key: row.get(key) for key in fields} for row in rows]


def _row(run: SweepRun) -> dict[str, Any]:
    status = run.status  # first: it takes the outcome from a settled run
    body = run.body
    row: dict[str, Any] = {"prompt": run.prompt}
    row.update({k: cell_value(v) for k, v in body.items() if k not in ("prompt", "stream")})
    row.update(run.params)
    row.update(
        status=status,
        images=len(run.result) if run.result is not None else 0,
        elapsed=run.elapsed,
        request_id=run.request_id,
        usage=run.result.usage if run.result is not None else None,
        replayed=run.result.replayed if run.result is not None else False,
        error=short_error(run.error) if run.error is not None else None,
    )
    return row


def text_table(runs: Sequence[SweepRun], swept: list[str]) -> list[str]:
    """The lines of the text table: a header, then a row per run (prompt, the `swept`
    values, the outcome), in columns."""
    header = ["prompt", *swept, "outcome"]
    lines = [
        [one_line(run.prompt, 40)]
        + [one_line(str(run.params.get(name, "")), 40) for name in swept]
        + [_outcome(run)]
        for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header) - 1)]
    text = []
    for row in [header, *lines]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        text.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return text


def cell_value(value: Any) -> Any:
    """A body value for a table: an input image's data URL is named, not copied."""
    if isinstance(value, str) and value.startswith("data:"):
        return f"{value.partition(',')[0]},… ({len(value)} chars)"
    if isinstance(value, list):
        return [cell_value(item) for item in value]
    return value


def _outcome(run: SweepRun) -> str:
    status = run.status
    if status == "done" and run.result is not None:
        return f"{plural(len(run.result), 'image')} · {run.result.elapsed:.1f} s"
    if run.error is not None:
        return f"✗ {short_error(run.error, 80)}"
    return status


__all__ = ["cell_value", "table_rows", "text_table"]
