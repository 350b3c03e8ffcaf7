"""Rows of results, and the table they make (plain text for the terminal, markdown for
`bench/results.md`). A ratio is only ever between two numbers measured in the same run."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """`ratio <= limit` (or `>= limit` when `at_least`)."""

    limit: float
    at_least: bool = False

    def met(self, ratio: float) -> bool:
        return ratio >= self.limit if self.at_least else ratio <= self.limit

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}x"


@dataclass(frozen=True)
class Row:
    number: str  # the benchmark of the issue: "1", "2", ...
    measurement: str
    ours: str
    reference: str
    ratio: float
    goal: Goal | None = None  # None: shown for information

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return "info"
        return "yes" if self.goal.met(self.ratio) else "NO"


HEADER = ("#", "measurement", "ours", "reference", "ratio", "goal", "met")


def cells(row: Row) -> tuple[str, ...]:
    goal = str(row.goal) if row.goal else ""
    return (row.number, row.measurement, row.ours, row.reference, f"{row.ratio:.2f}x", goal)


def text_table(rows: Sequence[Row]) -> str:
    table = [HEADER, *((*cells(row), row.verdict) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        verdict = {"yes": "✅", "NO": "❌", "info": ""}[row.verdict]
        lines.append("| " + " | ".join((*cells(row), verdict)).replace("~", "\\~") + " |")
    return "\n".join(lines)


def machine() -> str:
    """What ran the benchmarks: they are only comparable within one run on one machine."""
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {load}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
