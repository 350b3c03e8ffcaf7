"""Checks of the backend's numeric settings, shared by the constructor, the CLI and requests.

Each check raises ValueError saying what was given and what is allowed, so every caller
(argparse, an environment variable, a ``mesh_local`` field) can show it as one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .catalogue import image_model_ids


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


def model_seconds(value: Any, what: str) -> dict[str, float]:
    """VALUE as a mapping of image model id to seconds, e.g. ``{"openai/dall-e-3": 2.0}``."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{what} must map image model ids to seconds, e.g. "
            f'{{"openai/dall-e-3": 2}}, not {value!r}'
        )
    known = image_model_ids()
    checked: dict[str, float] = {}
    for model, latency in value.items():
        if model not in known:
            allowed = ", ".join(sorted(known))
            raise ValueError(f"{what}: {model!r} is not an image model; known: {allowed}")
        checked[model] = seconds(latency, f"{what}[{model!r}]")
    return checked


def model_seconds_text(text: str, what: str) -> dict[str, float]:
    """Per-model seconds written as a JSON object (a flag, an environment variable)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"{what} must be a JSON object of image model id to seconds, e.g. "
            f'{{"openai/dall-e-3": 2}}, not {text!r}'
        )
    return model_seconds(value, what)
