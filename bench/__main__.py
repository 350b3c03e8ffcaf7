"""`python -m bench`: run the benchmarks, print the table, write it to bench/results.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .plan import Plan
from .report import Row, machine, markdown_table, text_table
from .suite import BENCHMARKS, run_suite

RESULTS = Path(__file__).resolve().parent / "results.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one run each (what the tests run)"
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--reps", type=int, help="timed repetitions (default: 5)")
    parser.add_argument(
        "--out", type=Path, help=f"markdown file to write (default: {RESULTS}; none with --smoke)"
    )
    args = parser.parse_args(argv)
    plan = Plan.smoke() if args.smoke else Plan()
    if args.reps:
        plan = replace(plan, reps=args.reps)
    rows = run_suite(plan, args.only or tuple(BENCHMARKS))
    print(text_table(rows))
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.write_text(document(rows, plan, argv if argv is not None else sys.argv[1:]))
        print(f"\nwritten to {out}")
    return 0


def document(rows: Sequence[Row], plan: Plan, argv: Sequence[str]) -> str:
    goals = [row for row in rows if row.goal is not None]
    met = sum(row.verdict == "yes" for row in goals)
    command = " ".join([".venv/bin/python -m bench", *argv])
    warm_up = ", after one warm-up run" if plan.warm_up else ""
    return (
        f"# Benchmark results\n\n`{command}` on {machine()}.\n\nMedians of {plan.reps} runs "
        f"(official SDK: {plan.sdk_reps}; cells: {plan.e2e_reps}; background cells: "
        f"{plan.bg_reps}; memory and sweep memory: {plan.memory_reps} "
        f"subprocesses; load: {plan.load_reps} processes each; sweeps at zero latency: "
        f"{plan.sweep_reps}; at {plan.latency_seconds:g} s: {plan.latency_reps}; store on/off: "
        f"{plan.store_reps}; through the SDKs: {plan.sdks_reps})"
        f"{warm_up}. "
        f"Goals met: {met} of {len(goals)}. What each row compares: `bench/README.md`.\n\n"
        f"{markdown_table(rows)}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
