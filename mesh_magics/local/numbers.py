"""Checks of the backend's numeric settings, shared by the constructor, the CLI and requests.

Each check raises ValueError saying what was given and what is allowed, so every caller
(argparse, an environment variable, a ``mesh_local`` field) can show it as one line.
"""

from __future__ import annotations

import math
from typing import Any


def seconds(value: Any, what: str) -> float:
    """VALUE as a finite number of seconds >= 0; NaN, infinities and negatives are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of seconds >= 0, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


def seconds_text(text: str, what: str) -> float:
    """A number of seconds written as text (a flag, an environment variable)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, e.g. 0.5, not {text!r}")
    return value


def count(value: Any, what: str, *, lo: int = 0, hi: int | None = None) -> int:
    """VALUE as a whole number in [LO, HI]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{what} must be a whole number >= {lo}, not {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{what} must be a whole number between {lo} and {hi}, not {value!r}")
    return value


def port(value: Any, what: str = "port") -> int:
    """A TCP port, 0 meaning any free one."""
    return count(value, what, lo=0, hi=65535)
