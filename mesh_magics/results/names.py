"""File names from prompts: any text in, a short, safe stem out.

Letters, digits and combining marks of every script are kept (NFC, lowercased), so
`一只狐狸在雪中` names its file `一只狐狸在雪中.png` rather than `image.png`; transliteration
would need a dependency and guesses wrong for most scripts. Everything else (spaces,
punctuation, symbols, emoji, separators, control characters) becomes one dash. The stem
is at most 60 characters and 100 bytes of UTF-8 (with `-10-v99.jpeg` it stays far below
the 255 bytes file systems allow), never starts with `.` or `-`, and never is a name
Windows reserves (`con`, `nul`, `com1`, ...). Text with nothing to keep gives `image`.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 60
MAX_BYTES = 100
FALLBACK = "image"

# Hangul fillers are letters (Lo) that render as nothing: a name of them looks empty.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_DEVICE_DIGITS = "123456789¹²³"  # Windows reserves COM¹ as it does COM1
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"{device}{digit}" for device in ("com", "lpt") for digit in _DEVICE_DIGITS]
)


def safe_stem(text: str, *, max_chars: int = MAX_CHARS, max_bytes: int = MAX_BYTES) -> str:
    """`A Fox, in snow!` -> `a-fox-in-snow`; `Лиса в снегу` -> `лиса-в-снегу`."""
    kept = "".join(_keep(char) for char in unicodedata.normalize("NFC", text).lower())
    stem = re.sub(r"-{2,}", "-", kept).strip("-")
    stem = _shorten(unicodedata.normalize("NFC", stem), max_chars, max_bytes).rstrip("-")
    if not stem:
        return FALLBACK
    return f"{stem}-{FALLBACK}" if stem in _WINDOWS_RESERVED else stem


def _keep(char: str) -> str:
    category = unicodedata.category(char)[0]
    if category in "LNM" and char not in _INVISIBLE_LETTERS:
        return char
    return "-"


def _shorten(stem: str, max_chars: int, max_bytes: int) -> str:
    """At most `max_chars` characters and `max_bytes` bytes, cut before a letter, never
    between a letter and its combining marks (which would change the letter)."""
    end = min(len(stem), max_chars)
    while end > 0 and len(stem[:end].encode("utf-8")) > max_bytes:
        end -= 1
    while 0 < end < len(stem) and unicodedata.category(stem[end])[0] == "M":
        end -= 1
    return stem[:end]


__all__ = ["safe_stem"]
