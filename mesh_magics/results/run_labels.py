"""How a sweep's runs are named on screen: a label from the swept values
(`openai/gpt-image-1 · seed 1`), and a failure in one short line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import GenerationCancelled
from ..redact import one_line, redact
from ..schema import READ_BARE

_REQUEST_NOTE = re.compile(r"\s*\(request [^()\s]*\)")  # differs per run; the table has it


def label_of(params: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """`{"model": "a/b", "seed": 1}` -> `a/b · seed 1`, in the order of `names` (default:
    the params' own). Sweeps label their columns this way."""
    parts = []
    for name in names if names is not None else list(params):
        if name in params:
            value = params[name]
            text = str(value)
            parts.append(text if name in READ_BARE else f"{name.replace('_', ' ')} {text}")
    return " · ".join(parts)


def short_error(error: BaseException, limit: int = 120) -> str:
    """`RateLimitError: 429 rate_limit_exceeded: slow down`: the class users catch, and the
    message on one line, without the request id (the table has it, and it differs per
    run, so equal failures read equal)."""
    label = type(error).__name__
    if isinstance(error, GenerationCancelled):
        return label
    text = one_line(_REQUEST_NOTE.sub("", redact(str(error))), limit)
    return f"{label}: {text}" if text else label
