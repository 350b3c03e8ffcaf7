"""How counts read in every line the package writes: `1 image`, `3 runs`."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """`1 image`, `3 images`, `10,000 runs`: a count and its noun, as every line says it."""
    return f"{n} {word}" if n == 1 else f"{n:,} {word}s"
