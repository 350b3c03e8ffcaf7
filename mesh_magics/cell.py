"""The cell grammar: from the magic line and the cell text to a `CellOptions`.

- Options come from the magic line and from the leading lines of the cell that start with
  `-`. Blank lines among them are skipped; a line `--` alone ends them, so the prompt that
  follows may start with `-`.
- Lines starting with `#` are comments anywhere in the cell, and a word starting with `#`
  ends an option line (`--quality high  # best`).
- The first other line starts the prompt, which runs to the end of the cell. A later line
  that looks like an option is prompt text, with a warning naming it.
- In the line magic the prompt is the rest of the line after the options (`--` ends the
  options early). There too a word starting with `#` where an option could be begins a
  comment (`%meshimage -o fox  # note` has no prompt; a `#` inside the prompt is text).
  An option given twice: the last wins.
- `{name}` fields of the cell's own text are filled from the namespace. The items of a
  `--prompts NAME` list are data, not templates: they are sent verbatim (a dataset row
  `{os.environ[...]}` must not read a secret, nor `{0:>999999999}` fill the memory).
- `--prompts` also names a file (`.txt`, `.csv`, `.jsonl`), and a variable may hold a
  table (a list of dicts, a DataFrame): one run a row (`tables.py`), the cell's options
  under every row's own values.

The options themselves (flags, kinds, allowed values) are `schema.OPTIONS`. Every mistake
raises `OptionError` naming the option, the bad value and what is allowed, before any
network call.
"""

from __future__ import annotations

import difflib
import re
import shlex
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import OptionError
from .schema import (
    BY_FLAG,
    REQUEST_FIELDS,
    STREAM,
    SWEEPABLE,
    Option,
    TooDeep,
    check,
    check_conflicts,
    check_prompt,
    loads_finite,
)
from .tables import check_rows, is_prompts_file, is_table, read_prompts_file

# -- the parsed cell ------------------------------------------------------------------------


@dataclass
class CellOptions:
    """Everything one cell asked for: the request fields and the cell's own settings."""

    prompt: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    out: str | None = None
    no_display: bool = False
    base_url: str | None = None
    timeout: float | None = None
    list_models: bool = False
    bg: bool = False
    dry_run: bool = False
    jobs: bool = False
    wait: bool = False
    history: bool = False
    usage: bool = False
    form: bool = False
    prompts: str | None = None  # a variable or file holding the prompts of a sweep
    rows: list[tuple[str, dict[str, Any]]] | None = None  # a table's runs (--prompts FILE)
    preset: str | None = None  # --preset NAME: fields the options given win over
    concurrency: int | None = None
    yes: bool = False
    replay: bool = False
    fresh: bool = False
    save: str | None = None
    edit: list[str] = field(default_factory=list)  # SOURCEs of an edit, as written
    mask: str | None = None
    prompt_list: list[str] = field(default_factory=list)  # every prompt (one, or a sweep's)
    sweep: dict[str, list[Any]] = field(default_factory=dict)  # comma-listed fields

    @property
    def is_sweep(self) -> bool:
        return len(self.prompt_list) > 1 or bool(self.sweep) or self.rows is not None

    given: list[str] = field(default_factory=list)  # each option used, by its first flag
    warnings: list[str] = field(default_factory=list)

    @property
    def command(self) -> str | None:
        """`--list-models`, `--jobs` or `--wait` when the cell asks for one, else None."""
        asked = [c for c, on in (("--list-models", self.list_models), ("--jobs", self.jobs),
                 ("--wait", self.wait), ("--history", self.history), ("--usage", self.usage),
                 ("--form", self.form)) if on]  # fmt: skip
        if len(asked) > 1:
            raise OptionError(f"use one of {' and '.join(asked)} at a time")
        return asked[0] if asked else None


# Fields that take comma-separated values; every combination is one run of a sweep.

# Commands do something other than generate; each takes only these options.
_COMMANDS_TAKE = {
    "--list-models": {"-o", "--base-url", "--timeout"},
    "--jobs": {"-o"},
    "--wait": {"--timeout"},
    "--history": {"-o"},  # the rest of the line is a filter
    "--usage": set(),
    "--form": set(),  # takes every other option, and a prompt: they fill the form
}


def parse_cell(line: str, cell: str | None, namespace: Mapping[str, Any]) -> CellOptions:
    """Parse a `%meshimage` line or a `%%meshimage` cell; interpolate the prompt."""
    options = CellOptions()
    if cell is None:
        prompt_start = _apply(options, line, line_magic=True)
        options.prompt = line[prompt_start:].strip() if prompt_start is not None else ""
    else:
        _apply(options, line, magic_line=True)
        _read_body(options, cell)
    check_conflicts({**options.fields, "replay": options.replay, "fresh": options.fresh},
                    as_flags=True)  # fmt: skip
    if options.command is not None:
        _check_command(options)
        return options
    texts = _prompt_texts(options, namespace, cell is None)
    if options.rows is not None and options.sweep:
        listed = ", ".join(_flag(dest) for dest in options.sweep)
        raise OptionError(
            f"{listed}: --prompts {options.prompts} is a table, one run a row, so an option "
            "takes one value; put the values in its rows"
        )
    if options.prompts is None:  # the cell's own text is a template; a list's items are text
        texts = [_filled(text, namespace, i, len(texts)) for i, text in enumerate(texts)]
    options.prompt_list = texts
    options.prompt = options.prompt_list[0]
    return options


def _prompt_texts(
    options: CellOptions, namespace: Mapping[str, Any], line_magic: bool
) -> list[str]:
    """The prompts of the cell: its text, split at lines `---`; or `--prompts NAME`."""
    if options.prompts is not None:
        if options.prompt:
            raise OptionError(
                "--prompts takes the prompts from a variable: leave the cell text out"
            )
        return _prompts_variable(options, options.prompts, namespace)
    if not options.prompt:
        operation = str(options.fields.get("operation", "edit")) if options.edit else None
        where = " after the options" if line_magic else " below the option lines"
        return [check_prompt(options.prompt, operation, where=where)]
    parts = re.split(r"^---[ \t]*$", options.prompt, flags=re.M)
    texts = [_strip_blank_edges(part) for part in parts]
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            raise OptionError(
                f"prompt {number} of {len(texts)} is empty: write one between the --- lines"
            )
    return texts


def _prompts_variable(options: CellOptions, name: str, namespace: Mapping[str, Any]) -> list[str]:
    if is_prompts_file(name):
        value: Any = read_prompts_file(name)
    elif name.isidentifier() and name in namespace:
        value = namespace[name]
    elif name.isidentifier():
        raise OptionError(f"--prompts {name}: no variable {name!r} is defined")
    else:
        raise OptionError(
            f"--prompts {name}: no such file; expected a variable name, or a .txt, .csv or "
            ".jsonl file"
        )
    if is_table(value):
        options.rows = check_rows(value, as_flags=True)
        return [prompt for prompt, _ in options.rows]
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise OptionError(
            f"--prompts {name}: expected a non-empty list of strings, a list of dicts or a "
            "DataFrame"
        )
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise OptionError(f"--prompts {name}: item {index} is not a non-empty string")
    return [str(item) for item in value]


def _filled(text: str, namespace: Mapping[str, Any], index: int, count: int) -> str:
    if not text:
        return text  # an edit that needs no prompt
    filled = interpolate(text, namespace)
    if not filled.strip():
        which = f"prompt {index + 1} of {count}" if count > 1 else "the prompt"
        raise OptionError(
            f"no prompt: {which} is empty once its {{}} fields are filled in; check the "
            "variables it uses"
        )
    return filled


def _flag(dest: str) -> str:
    return REQUEST_FIELDS[dest].flags[0]


def _read_body(options: CellOptions, cell: str) -> None:
    lines = cell.splitlines()
    prompt: list[str] = []
    in_options = True
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if stripped.startswith("#"):
            continue  # a comment, wherever it is
        if in_options:
            if not stripped:
                continue
            if stripped == "--":
                in_options = False
                continue
            if stripped.startswith("-"):
                _apply(options, text)
                continue
            in_options = False
        elif prompt and _looks_like_option(stripped):
            options.warnings.append(
                f"line {number} {_clip(stripped)!r} looks like an option, but the prompt "
                "had already begun, so it is sent as prompt text; move it above the prompt"
            )
        prompt.append(text)
    options.prompt = "\n".join(prompt).strip("\n")
    options.prompt = _strip_blank_edges(options.prompt)


def _looks_like_option(text: str) -> bool:
    first = text.split(maxsplit=1)[0] if text else ""
    return first.partition("=")[0] in BY_FLAG


def _check_command(options: CellOptions) -> None:
    command = options.command
    if command == "--form":
        if options.sweep:
            raise OptionError("the form (%mesh form) makes one run at a time: one value an option")
        held = {o.flags[0] for o in REQUEST_FIELDS.values() if o.for_generations}
        held |= {"-o", "--base-url", "-p"}
        stray = [flag for flag in dict.fromkeys(options.given) if flag not in held | {command}]
        if stray:
            raise OptionError(
                "the form (%mesh form) holds the request's options, -o and --base-url; "
                f"remove {', '.join(stray)}"
            )
        return
    takes = _COMMANDS_TAKE[str(command)]
    stray = [flag for flag in dict.fromkeys(options.given) if flag not in takes | {command}]
    if options.prompt and command != "--history":
        stray.append(f"the prompt {_clip(options.prompt)!r}")
    if stray:
        allowed = f"only {', '.join(sorted(takes))}" if takes else "no other options"
        raise OptionError(f"{command} takes {allowed}; remove {', '.join(stray)}")


def _strip_blank_edges(text: str) -> str:
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- words and options ----------------------------------------------------------------------

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
            raise OptionError(f"unterminated quote in {_clip(text.strip(), 60)!r}")
        raw = match.group()
        if match.end() < len(text) and not text[match.end()].isspace():
            raise OptionError(f"unterminated quote in {_clip(text.strip(), 60)!r}")
        try:
            parts = shlex.split(raw)
        except ValueError:
            raise OptionError(f"unterminated quote in {_clip(text.strip(), 60)!r}") from None
        yield _Word(parts[0] if parts else "", raw, pos)
        pos = match.end()


def _apply(
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
            f"{source}: {_clip(value)!r} is not valid JSON; quote the whole parameter, "
            f"e.g. -p '{key}={{\"a\": 1}}'"
        )
    return value


def _not_an_option_message(word: str, magic_line: bool) -> str:
    if magic_line:
        return (
            f"the %%meshimage line takes options only, and {_clip(word)!r} is not one: put "
            "the prompt on the next line of the cell, or use %meshimage (one %) to write "
            "it on the same line"
        )
    return (
        f"unexpected {_clip(word)!r} in an option line; options look like --name value "
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


# -- prompt interpolation: str.format fields from the user namespace, {{ }} for braces ------


class _NamespaceFormatter(string.Formatter):
    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int) or not key.isidentifier():
            raise OptionError(
                f"the prompt has a {{}} field {str(key)!r} that is not a variable name; use "
                "one such as {animal}, or write {{ and }} for literal braces"
            )
        try:
            return self.namespace[key]
        except KeyError:
            raise OptionError(
                f"the prompt uses {{{key}}}, but no variable {key!r} is defined; define it "
                f"first, or write {{{{{key}}}}} for literal braces"
            ) from None


def interpolate(prompt: str, namespace: Mapping[str, Any]) -> str:
    """Fill `{name}` fields (with `.attr`, `[index]`, `!r` and `:spec`) from `namespace`."""
    if "{" not in prompt and "}" not in prompt:
        return prompt
    try:
        return _NamespaceFormatter(namespace).vformat(prompt, (), {})
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(
            f"bad {{}} field in the prompt: {exc}; write {{{{ and }}}} for literal braces"
        ) from None
    except (AttributeError, LookupError, TypeError) as exc:
        raise OptionError(f"a {{}} field in the prompt could not be filled: {exc}") from None
    except Exception as exc:  # a user's __format__ or property raised: say which field
        raise OptionError(
            f"a {{}} field in the prompt could not be filled: {type(exc).__name__}: {exc}"
        ) from None
