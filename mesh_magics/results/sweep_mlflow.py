"""A sweep logged as one MLflow run (`ImageSweep.log_mlflow()`, the extra
`mesh-magics[mlflow]`): the sweep's fields as params (a swept field as the comma list of
its values, a field every run shares as its value), its seconds, runs, failures, images
and, when a price is known, estimated cost as metrics, and as artifacts every image
(`ImageSweep.save`, with `manifest.jsonl`), `grid.png` and `report.html`.

MLflow is imported only here, when a sweep is logged; it logs wherever MLflow is told to
(`mlflow.set_tracking_uri`, `MLFLOW_TRACKING_URI`), into the active run when there is one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependency
from .sweep_report import Prices, report_html, sweep_cost

if TYPE_CHECKING:
    from .image_sweep import ImageSweep

PARAM_CHARS = 6000  # what MLflow keeps of a param's value (older versions: 500)
_OUTCOME = ("status", "images", "elapsed", "request_id", "usage", "replayed", "error")


def sweep_params(sweep: ImageSweep, *, with_prompt: bool = True) -> dict[str, str]:
    """The sweep's fields as MLflow params: each swept field's values as a comma list, each
    field every run shares as its value; the prompts joined by `---` lines."""
    rows = sweep.table()
    params: dict[str, str] = {}
    if with_prompt:
        prompts = list(dict.fromkeys(run.prompt for run in sweep.runs))
        params["prompt" if len(prompts) == 1 else "prompts"] = "\n---\n".join(prompts)
    params["swept"] = ",".join(sweep.swept)
    for name in rows[0] if rows else ():
        if name == "prompt" or name in _OUTCOME:
            continue
        values = list(dict.fromkeys(_param_text(row[name]) for row in rows))
        if name in sweep.swept or len(values) > 1:
            params[name] = ",".join(values)
        elif values[0]:
            params[name] = values[0]
    return {key: value[:PARAM_CHARS] for key, value in params.items()}


def sweep_metrics(sweep: ImageSweep, prices: Prices | None) -> dict[str, float]:
    metrics = {
        "seconds": float(sweep.elapsed),
        "runs": float(len(sweep)),
        "failed": float(len(sweep.failed)),
        "images": float(sum(len(result) for result in sweep.results)),
    }
    cost = sweep_cost(sweep, prices)
    if cost is not None:
        metrics["cost_usd"] = cost
    return metrics


def log_sweep(
    sweep: ImageSweep,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    prices: Prices | None = None,
    embed_prompt: bool | None = None,
) -> str:
    """Log `sweep` as an MLflow run (in `experiment`, made if missing; None: the active
    or default experiment); returns the run's id."""
    try:
        import mlflow
    except ImportError:
        raise MissingDependency(
            "log_mlflow() needs MLflow, which is not installed: pip install mesh-magics[mlflow]"
        ) from None
    if embed_prompt is None:
        from ..settings import configured

        embed_prompt = bool(configured()["embed_prompt"])
    if experiment is not None:
        mlflow.set_experiment(experiment)
    nested = mlflow.active_run() is not None
    with (
        tempfile.TemporaryDirectory(prefix="mesh-sweep-") as scratch,
        mlflow.start_run(run_name=run_name, nested=nested) as run,
    ):
        folder = Path(scratch)
        sweep.save(folder / "images", embed_prompt=embed_prompt)  # grid.png among them
        (folder / "report.html").write_text(report_html(sweep, prices=prices), "utf-8")
        mlflow.log_params(sweep_params(sweep, with_prompt=embed_prompt))
        mlflow.log_metrics(sweep_metrics(sweep, prices))
        mlflow.set_tag("mesh_magics.summary", sweep.summary())
        mlflow.log_artifacts(str(folder / "images"), artifact_path="images")
        mlflow.log_artifact(str(folder / "images" / "grid.png"))
        mlflow.log_artifact(str(folder / "report.html"))
        return str(run.info.run_id)


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


__all__ = ["log_sweep", "sweep_metrics", "sweep_params"]
