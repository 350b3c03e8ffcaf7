"""An option line's words into `CellOptions`: shell-style words with quotes, `--name
value`, `--name=value`, `-n3`, `-p KEY=VALUE` (JSON or text), and the messages for a word
that is not an option. Each value is checked against `schema.OPTIONS`; a comma list of a
sweepable field becomes a sweep. Where the options end and the prompt begins, and what a
line of the cell is, is `grammar.py`'s.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError, TooDeep
from ..schema import BY_FLAG, REQUEST_FIELDS, STREAM, SWEEPABLE, Option, check
from ..value_kinds import loads_finite
from .options import CellOptions

_WORD = re.compile(r"""(?:[^\s'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+""")


@dataclass(frozen=True)
class _Word:
    text: str  # with shell quoting removed
    raw: str  # as typed
    start: int


def _words(text: str) -> Iterator[_Word]:
    """Shell-style words of `text`, each with its typed form and where it starts."""
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        match = _WORD.match(text, pos)
        if not match or match.end() == pos:
            raise OptionError(f"unterminated quote in {clip(text.strip(), 60)!r}")
        raw = match.group()
        if match.end() < len(text) and not text[match.end()].isspace():
            raise OptionError(f"unterminated quote in {clip(text.strip(), 60)!r}")
        try:
            parts = shlex.split(raw)
        except ValueError:
            raise OptionError(f"unterminated quote in {clip(text.strip(), 60)!r}") from None
        yield _Word(parts[0] if parts else "", raw, pos)
        pos = match.end()


def apply_options(
    options: CellOptions, text: str, *, line_magic: bool = False, magic_line: bool = False
) -> int | None:
    """Apply the option words of `text`; return where the prompt starts (line magic only).

    Words are read lazily so that the prompt after the options may hold any quotes.
    """
    words = _words(text)
    for word in words:
        if line_magic and word.raw == "--":
            rest = text[word.start + 2 :]
            return word.start + 2 + (len(rest) - len(rest.lstrip())) if rest.strip() else None
        if word.raw.startswith("#"):
            return None  # a comment to the end of the line, in the line magic too
        if not word.text.startswith("-") or word.text == "-":
            if line_magic:
                return word.start
            raise OptionError(_not_an_option_message(word.text, magic_line))
        flag, value, raw_value = _split_inline(word)
        option = BY_FLAG.get(flag)
        if option is None:
            raise OptionError(_unknown_option_message(flag))
        options.given.append(option.flags[0])
        if option.kind is None:
            if value is not None:
                raise OptionError(f"{flag} takes no value (got {value!r})")
            setattr(options, option.dest, option.flag_value)
            continue
        if value is None:
            following = next(words, None)
            if following is None or following.raw.startswith("#"):
                raise OptionError(f"{flag} needs a value ({option.kind.allowed})")
            value, raw_value = following.text, following.raw
        _store(options, option, flag, value, raw_value)
    return None


def _split_inline(word: _Word) -> tuple[str, str | None, str | None]:
    """(flag, value, value as typed) of `--name=value`, `-n3`, `-ofox`, or a bare flag."""
    text = word.text
    if text.startswith("--"):
        flag, eq, value = text.partition("=")
        raw = word.raw.partition("=")[2] if eq else None
        return flag, (value if eq else None), raw
    if len(text) > 2 and text[:2] in BY_FLAG and f"-{text.partition('=')[0]}" not in BY_FLAG:
        value = text[2:].removeprefix("=")
        return text[:2], value, value
    return text, None, None


def _store(options: CellOptions, option: Option, flag: str, value: str, raw: str | None) -> None:
    if option.dest == "param":
        _store_param(options, flag, value, raw)
        return
    if option.dest == "edit":
        options.edit.append(check(option, value, source=flag))
        return
    if option.dest in SWEEPABLE and "," in value:  # a sweep over these values
        values = [check(option, part, source=flag) for part in value.split(",")]
        options.sweep[option.dest] = list(dict.fromkeys(values))
        options.fields.pop(option.dest, None)
        return
    converted = check(option, value, source=flag)
    if option.request_field:
        options.fields[option.dest] = converted
        options.sweep.pop(option.dest, None)  # the last given wins
    else:
        setattr(options, option.dest, converted)


_PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _store_param(options: CellOptions, flag: str, text: str, raw: str | None) -> None:
    key, eq, value = text.partition("=")
    if not eq or not _PARAM_KEY.fullmatch(key):
        raise OptionError(f"{flag} {text!r}: expected KEY=VALUE, e.g. -p guidance_scale=4")
    source = f"{flag} {key}"
    if key == "prompt":
        raise OptionError(f"{source}: the prompt is the cell text, not a parameter")
    if key == "stream":
        options.stream = check(STREAM, value, source=source)
        return
    if key in REQUEST_FIELDS:
        options.fields[key] = check(REQUEST_FIELDS[key], value, source=source)
        return
    options.fields[key] = _json_or_text(source, key, value, raw)


def _json_or_text(source: str, key: str, value: str, raw: str | None) -> Any:
    """VALUE parsed as JSON when it parses, else the string. The JSON is read from the
    text as typed when the shell quoting would break it (`-p extra={"a":1}`)."""
    typed = raw.partition("=")[2] if raw and raw.partition("=")[0] == key else None
    for candidate in (value, typed):
        if candidate is None:
            continue
        try:
            return loads_finite(candidate)
        except TooDeep as exc:
            raise OptionError(f"{source}: {exc}") from None
        except ValueError:
            continue
    if value.lstrip()[:1] in ("{", "["):
        raise OptionError(
            f"{source}: {clip(value)!r} is not valid JSON; quote the whole parameter, "
            f"e.g. -p '{key}={{\"a\": 1}}'"
        )
    return value


def _not_an_option_message(word: str, magic_line: bool) -> str:
    if magic_line:
        return (
            f"the %%meshimage line takes options only, and {clip(word)!r} is not one: put "
            "the prompt on the next line of the cell, or use %meshimage (one %) to write "
            "it on the same line"
        )
    return (
        f"unexpected {clip(word)!r} in an option line; options look like --name value "
        "(the prompt starts at the first line that does not begin with '-')"
    )


def _unknown_option_message(name: str) -> str:
    bare = name.lstrip("-").lower()
    if name.startswith("-") and not name.startswith("--") and f"--{bare}" in BY_FLAG:
        return f"unknown option {name}; did you mean --{bare}? (long options take two dashes)"
    longs = sorted({f.lstrip("-") for f in BY_FLAG if f.startswith("--")})
    by_prefix = [n for n in longs if bare and n.startswith(bare)]
    shortest = min(by_prefix, key=len, default="")
    if by_prefix and all(n.startswith(shortest) for n in by_prefix):
        by_prefix = [shortest]  # --qual: --quality, not --quality-tier
    close = by_prefix if len(by_prefix) == 1 else difflib.get_close_matches(bare, longs, 1, 0.75)
    if close:
        return f"unknown option {name}; did you mean --{close[0]}?"
    return f"unknown option {name}; see %meshimage? for the options"


def clip(text: str, limit: int = 40) -> str:
    """The user's `text` cut to `limit` characters, to quote it in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["apply_options", "clip"]
