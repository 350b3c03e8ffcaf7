"""A sweep's file names: a readable stem per run, from the prompt's start (unless it is
left out) and the run's swept values (`a-fox-in-snow-gpt-image-1-seed-1`), within what
`names.safe_stem` keeps, and unique within the sweep (`-r2`, `-r3`...). `ImageSweep.save`
names its files with them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..schema import READ_BARE
from .names import MAX_BYTES, MAX_CHARS, safe_stem

if TYPE_CHECKING:
    from .image_sweep import SweepRun


def unique_stems(runs: Sequence[SweepRun], swept: list[str], *, with_prompt: bool) -> list[str]:
    """A readable file stem per run: the prompt's start (unless left out), then its swept
    values, within what `safe_stem` keeps; a run whose stem an earlier run has gets `-r2`,
    `-r3`..."""
    stems: list[str] = []
    seen: Counter[str] = Counter()
    for run in runs:
        values = "-".join(
            safe_stem(_value_word(name, run.params[name]), max_chars=30)
            for name in swept
            if name in run.params
        )
        prompt = run.prompt if with_prompt else "" if values else "image"
        stem = _fit_stem(prompt, values)
        seen[stem] += 1
        if seen[stem] > 1:
            stem = _fit_stem(prompt, f"{values}-r{seen[stem]}".lstrip("-"))
        stems.append(stem)
    return stems


def _value_word(name: str, value: Any) -> str:
    text = str(value)
    if name == "model":
        return text.rpartition("/")[2] or text  # the provider is in the manifest
    return text if name in READ_BARE else f"{name} {text}"


def _fit_stem(prompt: str, tail: str) -> str:
    """`prompt`'s stem, cut so that `-tail` fits within safe_stem's limits."""
    if not prompt:
        return safe_stem(tail)
    room_chars = max(12, MAX_CHARS - 1 - len(tail))
    room_bytes = max(24, MAX_BYTES - 1 - len(tail.encode("utf-8")))
    head = safe_stem(prompt, max_chars=room_chars, max_bytes=room_bytes)
    return safe_stem(f"{head}-{tail}" if tail else head)


__all__ = ["unique_stems"]
