"""The cell grammar: from the magic line and the cell text to a `CellOptions`; which lines
are options, comments and the prompt, the prompts of a sweep, and what a command takes.

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

The options themselves (flags, kinds, allowed values) are `schema.OPTIONS`; an option
line's words are read by `option_words.py`, `{name}` fields filled by `interpolation.py`.
Every mistake raises `OptionError` naming the option, the bad value and what is allowed,
before any network call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import OptionError
from ..schema import BY_FLAG, REQUEST_FIELDS, check_conflicts, check_prompt
from ..tables import check_rows, is_prompts_file, is_table, read_prompts_file
from .interpolation import interpolate
from .option_words import apply_options, clip
from .options import CellOptions

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
        prompt_start = apply_options(options, line, line_magic=True)
        options.prompt = line[prompt_start:].strip() if prompt_start is not None else ""
    else:
        apply_options(options, line, magic_line=True)
        _read_body(options, cell)
    check_conflicts({**options.fields, "replay": options.replay, "fresh": options.fresh},
                    as_flags=True)  # fmt: skip
    if options.command is not None:
        _check_command(options)
        return options
    texts = _prompt_texts(options, namespace, cell is None)
    if options.rows is not None and options.sweep:
        listed = ", ".join(REQUEST_FIELDS[dest].flags[0] for dest in options.sweep)
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
    """The prompts of `--prompts NAME|FILE`; a table's rows go to `options.rows`."""
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
                apply_options(options, text)
                continue
            in_options = False
        elif prompt and _looks_like_option(stripped):
            options.warnings.append(
                f"line {number} {clip(stripped)!r} looks like an option, but the prompt "
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
        stray.append(f"the prompt {clip(options.prompt)!r}")
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


__all__ = ["parse_cell"]
