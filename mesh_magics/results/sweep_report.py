"""A sweep as one self-contained HTML file (`ImageSweep.report(path)`): its summary, the
grid the notebook shows (data-URI previews, sweep_grid.py), the table of runs
(`table()`), each run's provenance (request body, request id, model, created, elapsed,
usage) and an estimated cost where a per-image price is known.

Self-contained means it works offline and leaks nothing: no script, no stylesheet link,
no `http://` or `https://` anywhere (a URL in a prompt or an error is written so that it
is text, not a reference), every user text escaped. The API key is never in a result,
so never in here.

A result carries the usage the API reported, not a price: prices come from `/v1/models`
(by model; `%mesh usage` shows them), handed in as `prices`; without one, the cost says
"unknown".
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .run_labels import short_error
from .sweep_grid import grid_html
from .sweep_table import cell_value

if TYPE_CHECKING:
    from .image_sweep import ImageSweep, SweepRun

Prices = Mapping[str, "float | None"]  # per image, by model

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#212121}
table.runs{border-collapse:collapse;font-size:0.85em}
table.runs th,table.runs td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;
text-align:left}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:6px;margin:4px 0}
.failed{color:#c62828}
details{margin:6px 0}
"""


def sweep_cost(sweep: ImageSweep, prices: Prices | None) -> float | None:
    """The estimated cost of the images the sweep made (an incomplete run's too), or None
    where any model that made some has no price."""
    total = 0.0
    for run in sweep.runs:
        if run.result is None or not len(run.result):
            continue
        price = (prices or {}).get(run.result.model)
        if price is None:
            return None
        total += price * len(run.result)
    return total


def report_html(sweep: ImageSweep, *, prices: Prices | None = None) -> str:
    """The whole report, as one HTML document."""
    cost = sweep_cost(sweep, prices)
    cost_text = "unknown (no per-image price)" if cost is None else f"~${cost:.3f} (estimated)"
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    summary = [
        ("summary", sweep.summary()),
        ("runs", str(len(sweep))),
        ("failed", str(len(sweep.failed))),
        ("images", str(sum(len(r) for r in sweep.results))),
        ("swept", ", ".join(sweep.swept) or "nothing"),
        ("seconds", f"{sweep.elapsed:.1f}"),
        ("estimated cost", cost_text),
        ("written", f"{made} by mesh-magics {__version__}"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_text(_title_of(sweep))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_text(_title_of(sweep))}</h1>",
        _pairs(summary),
        "<h2>Grid</h2>",
        grid_html(sweep),
        "<h2>Runs</h2>",
        _runs_table(sweep.table()),
        "<h2>Provenance</h2>",
        *(_provenance(run, i, prices) for i, run in enumerate(sweep.runs)),
        "</body></html>",
    ]
    # A URL in a prompt, a revised prompt or an error stays text: `:&#47;&#47;` reads the
    # same, and no viewer or scanner takes it for a reference to fetch.
    return "\n".join(parts).replace("://", ":&#47;&#47;")


def _title_of(sweep: ImageSweep) -> str:
    prompts = list(dict.fromkeys(run.prompt for run in sweep.runs))
    head = prompts[0] if prompts else "an empty sweep"
    more = f" (+{len(prompts) - 1} more prompts)" if len(prompts) > 1 else ""
    return f"Sweep: {head[:80]}{'...' if len(head) > 80 else ''}{more}"


def _pairs(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in pairs)
    return f'<table class="runs">{rows}</table>'


def _runs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>no runs</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{_text(key)}</th>" for key in ["#", *keys])
    body = []
    for i, row in enumerate(rows, 1):
        marked = ' class="failed"' if row.get("status") in ("failed", "cancelled") else ""
        cells = "".join(f"<td>{_text(_shown(row[key]))}</td>" for key in keys)
        body.append(f"<tr{marked}><td>{i}</td>{cells}</tr>")
    rows_html = "".join(body)
    return f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'


def _provenance(run: SweepRun, index: int, prices: Prices | None) -> str:
    status = run.status
    result = run.result
    body = run.body
    fields = [
        ("status", status),
        ("request id", run.request_id or "none"),
        ("model", result.model if result is not None else str(body.get("model", "unknown"))),
        ("created", _created(result.created) if result is not None else "not made"),
        ("elapsed", "unknown" if run.elapsed is None else f"{run.elapsed:.2f} s"),
        ("images", str(len(result)) if result is not None else "0"),
        ("usage", _shown(result.usage) if result is not None and result.usage else "none"),
        ("estimated cost", _run_cost(run, prices)),
    ]
    if run.error is not None:
        fields.append(("error", short_error(run.error, 2000)))
    named = {key: cell_value(value) for key, value in body.items()}  # a data URL, named
    request = json.dumps(named, indent=2, ensure_ascii=False, default=str)
    marked = ' class="failed"' if status in ("failed", "cancelled") else ""
    return (
        f"<details{marked}><summary>run {index + 1}: {_text(run.label or 'the run')} · "
        f"{_text(status)}</summary>{_pairs(fields)}"
        f"<p>request body</p><pre>{_text(request)}</pre></details>"
    )


def _run_cost(run: SweepRun, prices: Prices | None) -> str:
    if run.result is None or not len(run.result):
        return "none (no images)"
    price = (prices or {}).get(run.result.model)
    return "unknown" if price is None else f"~${price * len(run.result):.3f}"


def _created(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _text(value: str) -> str:
    return html.escape(value, quote=True)


__all__ = ["report_html", "sweep_cost"]
