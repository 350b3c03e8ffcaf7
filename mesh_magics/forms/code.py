"""A form's state as the exact `%%meshimage` cell, and a cell back as a form's state.

`to_cell` writes the cell that `parse_cell` reads back as the same request: the magic line
(`-o`, `--base-url`), one option line per set field in schema order, a `--` line when the
prompt starts with `-`, then the prompt with its braces doubled (the magic fills `{name}`
fields; the form's prompt is literal text). `from_cell` reads a cell through `parse_cell`
itself, so the form and the magic cannot disagree about what a cell means.

What a cell cannot hold, so `to_cell` refuses it with an `OptionError` saying why:

- a prompt that is empty or only whitespace ("no prompt", as the magic says);
- a prompt line whose first non-blank character is `#`: the cell grammar reads such a
  line as a comment wherever it is, even after `--`, and has no escape for it;
- a prompt line that is `---` (with trailing spaces or tabs): it separates the prompts of a
  sweep;
- a line break inside a value: an option line is one line (a parameter's string is then
  written as JSON, whose escapes hold it);
- an `--image` path starting with `[` (read as a JSON list of data URLs), and any other
  value its option would read back as something else;
- a parameter named `prompt` or `stream`, or not a name, or whose value is not JSON (NaN,
  a set, a tuple, a key that is not a string).

A model id with a comma is written `-p model=a,b` (`--model a,b` would be a sweep), a real
number as a float (`--guidance-scale 4.0`), and a parameter's None as JSON null.

And what the cell changes, as its kinds do (`jpg` -> `jpeg`): `normal_prompt` turns every
line break `str.splitlines` knows (`\\r\\n`, `\\r`, `\\x0b`, `\\x0c`, `\\x1c`-`\\x1e`, `\\x85`,
`\\u2028`, `\\u2029`) into `\\n`, and drops blank lines at the start and end of the prompt.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from ..cell import CellOptions, parse_cell
from ..errors import OptionError
from ..schema import BY_FLAG, OPTIONS, REQUEST_FIELDS, SWEEPABLE, Option, check
from ..schema import prompt_problem as schema_prompt_problem
from ..value_kinds import Number, loads_finite
from ..wording import plural
from .state import FormState, is_unset

MAGIC = "%%meshimage"

# Every character `str.splitlines` breaks a line at (the cell's option lines and prompt
# lines are read with it).
LINE_BREAKS = frozenset(c for c in map(chr, range(0x2030)) if len(f"a{c}b".splitlines()) > 1)

_PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SWEEP_DIVIDER = re.compile(r"---[ \t]*")


# -- the prompt -----------------------------------------------------------------------------


def normal_prompt(text: str) -> str:
    """`text` as a cell gives it back: every line break a `\\n`, no blank lines at its
    start or end."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def prompt_problem(text: str) -> str | None:
    """Why a cell cannot hold `text` as its prompt, or None when it can."""
    prompt = normal_prompt(text)
    if (problem := schema_prompt_problem(prompt)) is not None:
        return problem
    for number, line in enumerate(prompt.split("\n"), start=1):
        if line.strip().startswith("#"):
            return (
                f"prompt line {number} starts with '#', and a cell reads such a line as a "
                "comment; begin the line with another character"
            )
        if _SWEEP_DIVIDER.fullmatch(line):
            return (
                f"prompt line {number} is {line!r}, and a cell reads a line --- as the "
                "divider between the prompts of a sweep; the form holds one prompt"
            )
    return None


# -- state -> cell --------------------------------------------------------------------------


def to_cell(state: FormState) -> str:
    """The exact `%%meshimage` cell for `state`; an `OptionError` says what a cell cannot
    hold (see the module's docstring)."""
    problem = prompt_problem(state.prompt)
    if problem:
        raise OptionError(problem)
    prompt = normal_prompt(state.prompt)
    magic = [MAGIC]
    if not is_unset(state.out):
        magic.append(_option_words(BY_FLAG["-o"], state.out))
    if not is_unset(state.base_url):
        magic.append(_option_words(BY_FLAG["--base-url"], state.base_url))
    lines = [" ".join(magic)]
    for dest, option in REQUEST_FIELDS.items():
        if dest in state.fields and not is_unset(state.fields[dest]):
            lines.append(_option_words(option, state.fields[dest]))
    lines += [
        _param_words(key, value) for key, value in state.fields.items() if key not in REQUEST_FIELDS
    ]
    if prompt.lstrip().startswith("-"):
        lines.append("--")
    lines.append(prompt.replace("{", "{{").replace("}", "}}"))
    cell = "\n".join(lines)
    _verify(cell, state)
    return cell


def _option_words(option: Option, value: Any) -> str:
    """`--flag VALUE` with VALUE quoted so the cell reads back exactly `value` converted."""
    flag = option.flag
    converted = _convert(option, value)
    if isinstance(option.kind, Number) and not option.kind.whole:
        converted = float(converted)  # 4 reads back as 4.0: write 4.0
    text = _text(converted)
    _one_line(flag, text)
    if check(option, text, source=flag) != converted:
        raise OptionError(f"{flag}: {value!r} cannot be written in a cell as itself")
    if option.dest in SWEEPABLE and "," in text:  # `--model a,b` would be a sweep
        return f"-p {_quote(f'{option.dest}={text}')}"
    return f"{flag} {_quote(text)}"


def _param_words(key: str, value: Any) -> str:
    """`-p KEY=VALUE`: VALUE as JSON, or the bare text when it cannot be read as JSON."""
    source = f"-p {key}"
    if not isinstance(key, str) or not _PARAM_KEY.fullmatch(key):
        raise OptionError(f"-p {key!r}: a parameter name is a letter or _, then letters, "
                          "digits or _")  # fmt: skip
    if key in ("prompt", "stream"):
        raise OptionError(f"{source}: the form does not hold {key!r} as a field")
    plain = isinstance(value, str) and _is_plain_text(value)
    text = value if plain else _json(source, value)
    _one_line(source, text)
    return f"-p {_quote(f'{key}={text}')}"


def _is_plain_text(value: str) -> bool:
    """A string `-p` keeps as a string: it is not JSON and does not look like it."""
    if not value or value.lstrip()[:1] in ("{", "[") or LINE_BREAKS.intersection(value):
        return False
    try:
        loads_finite(value)
    except ValueError:
        return True
    return False


def _json(source: str, value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        same = loads_finite(text) == value
    except (TypeError, ValueError):
        same = False
    if not same:
        raise OptionError(f"{source}: {value!r} is not a JSON value, so a cell cannot hold it")
    if LINE_BREAKS.intersection(text):
        text = json.dumps(value, allow_nan=False)  # \u2028 and the like, escaped
    return text


def _convert(option: Option, value: Any) -> Any:
    """`value` converted by `option`'s kind; a list (`--image`'s data URLs) as its JSON
    text, as a cell gives it."""
    flag = option.flag
    if isinstance(value, list):
        converted = check(option, _json(flag, value), source=flag)
        if converted != value:
            raise OptionError(f"{flag}: {value!r} cannot be written in a cell as itself")
        return converted
    return check(option, value, source=flag)


def _text(value: Any) -> str:
    """A converted value as the text its option reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return _json("", value)
    return str(value)


def _one_line(source: str, text: str) -> None:
    if LINE_BREAKS.intersection(text):
        raise OptionError(f"{source}: a value cannot hold a line break in a cell")


def _quote(text: str) -> str:
    return shlex.quote(text)


def _expected(state: FormState) -> FormState:
    """`state` with its values as the cell reads them back."""
    fields = {
        key: _convert(REQUEST_FIELDS[key], value) if key in REQUEST_FIELDS else value
        for key, value in state.fields.items()
        if key not in REQUEST_FIELDS or not is_unset(value)
    }
    return FormState(
        prompt=normal_prompt(state.prompt),
        fields=fields,
        out=None if is_unset(state.out) else state.out,
        base_url=None if is_unset(state.base_url) else check(BY_FLAG["--base-url"], state.base_url),
    )


def _verify(cell: str, state: FormState) -> None:
    """The written cell must read back as `state`: a last guard against any case of the
    grammar the writing above missed."""
    try:
        back = from_cell(cell)
    except OptionError as exc:
        raise OptionError(f"the form cannot be written as a cell: {exc}") from None
    if back != _expected(state):
        raise OptionError("the form cannot be written as a cell that reads back the same")


# -- cell -> state --------------------------------------------------------------------------

_CELL_MAGIC = re.compile(r"[ \t]*%%meshimage(?=\s|$)")
_LINE_MAGIC = re.compile(r"[ \t]*%meshimage(?=\s|$)")

# What the form holds of a parsed cell; any other setting of the cell is refused.
_HELD = {"prompt", "fields", "out", "base_url", "prompt_list", "sweep", "given", "warnings",
         "form"}  # fmt: skip
_DEFAULTS = CellOptions()


def from_cell(text: str, namespace: Mapping[str, Any] | None = None) -> FormState:
    """The form's state for a `%%meshimage` cell (its first line `%%meshimage ...`, or just
    its body) or a `%meshimage ...` line, read by `parse_cell` (so `{name}` fields are
    filled from `namespace`). A sweep, a command or a setting the form does not show is an
    `OptionError`: the form holds one generation."""
    options = _parse(text, dict(namespace or {}))
    if options.command is not None:
        raise OptionError(
            f"{options.command} is a command, not a generation; the form holds one generation"
        )
    if options.is_sweep:
        what = [
            f"{_flag_of(dest)} lists {plural(len(v), 'value')}" for dest, v in options.sweep.items()
        ]
        if len(options.prompt_list) > 1:
            what.append(f"{len(options.prompt_list)} prompts")
        raise OptionError(
            f"the form holds one generation, and this cell is a sweep ({', '.join(what)})"
        )
    stray = [
        _flag_of(f.name, getattr(options, f.name))
        for f in dataclasses.fields(CellOptions)
        if f.name not in _HELD and getattr(options, f.name) != getattr(_DEFAULTS, f.name)
    ]
    if stray:
        raise OptionError(
            f"the form does not hold {', '.join(stray)}; it holds one generation: the prompt, "
            "the request fields, -o and --base-url. Remove them to open the cell in the form"
        )
    return FormState(
        prompt=options.prompt,
        fields=dict(options.fields),
        out=options.out,
        base_url=options.base_url,
    )


def _parse(text: str, namespace: Mapping[str, Any]) -> CellOptions:
    if match := _CELL_MAGIC.match(text):
        line, _, body = text[match.end() :].partition("\n")
        return parse_cell(line, body, namespace)
    if match := _LINE_MAGIC.match(text):
        line, _, rest = text[match.end() :].partition("\n")
        if rest.strip():
            raise OptionError(
                "a %meshimage line is one line; write %%meshimage for a cell of several"
            )
        return parse_cell(line.strip(), None, namespace)
    return parse_cell("", text, namespace)


def _flag_of(dest: str, value: Any = None) -> str:
    """The flag that sets `dest` (to `value`, for a flag without a value)."""
    for option in OPTIONS:
        takes = option.kind is not None or option.flag_value == value
        if option.dest == dest and option.flags and takes:
            return option.flags[0]
    return dest
