"""Which notebook runs this process, asked without importing one: marimo, for now.

marimo is optional: it is asked only when it is already imported (a marimo kernel has
imported it before any cell runs), so a script or a Jupyter kernel never loads it.
"""

from __future__ import annotations

import sys


def in_marimo() -> bool:
    """Whether this code runs in a cell of a marimo notebook (`marimo edit`, `marimo run`,
    `marimo export`), on the cell's own thread: marimo keeps its context per thread."""
    marimo = sys.modules.get("marimo")
    if marimo is None:
        return False
    try:
        return bool(marimo.running_in_notebook())
    except Exception:  # a marimo without it, or half imported: not a notebook we know
        return False
