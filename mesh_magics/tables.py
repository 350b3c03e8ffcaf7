"""Sweeps from data: the runs of a table, one a row, from a list of dicts, a pandas
DataFrame or a file, checked against the schema before anything is sent.

- `.txt`: one prompt a line; blank lines and lines starting with `#` are skipped. A list
  of prompts, as a list of strings is (a cell's comma lists still make a cross product).
- `.csv` (a header row) and `.jsonl` (an object a line): a table; its columns are fields.
- A list of dicts or a DataFrame: a table too.

A table's columns are `prompt` (required) and request fields, named as the keyword
arguments are (`output_format`) or as the option without its dashes (`output-format`,
`format`). A missing value (an empty CSV cell, a JSON null, a DataFrame's NaN) leaves the
field to the cell's options or the call's keywords. A row's values are data, never
templates: its prompt is sent as written. Every mistake is one `OptionError` naming the
row, counted from 1 over the data rows: `row 3: --quality: invalid value 'ultra'; ...`.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import OptionError, TooDeep
from .schema import BY_FLAG, REQUEST_FIELDS, SWEEPABLE, Option, check, shown
from .value_kinds import loads_finite

FILE_SUFFIXES = (".txt", ".csv", ".jsonl")

Row = tuple[str, dict[str, Any]]  # a run of a table: its prompt and its own fields


def is_prompts_file(text: str) -> bool:
    """Whether `--prompts TEXT` names a file: an existing one with a suffix read here."""
    path = Path(text).expanduser()
    return path.suffix.lower() in FILE_SUFFIXES and path.is_file()


def is_table(value: Any) -> bool:
    """A DataFrame, or a non-empty list (or tuple) of mappings: one run a row."""
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_dict"):
        return True
    return isinstance(value, list | tuple) and bool(value) and isinstance(value[0], Mapping)


def read_prompts_file(path: str | os.PathLike[str]) -> list[str] | list[dict[str, Any]]:
    """The prompts of a `.txt` file, or the rows of a `.csv` or `.jsonl` one."""
    where = Path(path).expanduser()
    suffix = where.suffix.lower()
    try:
        text = where.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path}: cannot be read: {exc}") from None
    if suffix == ".txt":
        prompts = [line.strip() for line in text.splitlines()]
        prompts = [line for line in prompts if line and not line.startswith("#")]
        if not prompts:
            raise OptionError(f"{path}: no prompts: write one a line (# starts a comment)")
        return prompts
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(), restval=None)
        if not reader.fieldnames:
            raise OptionError(f"{path}: empty: the first line names the columns (prompt, ...)")
        rows: list[dict[str, Any]] = []
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise OptionError(f"row {number}: more values than columns in {path}")
            rows.append(row)
        return rows
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = loads_finite(line)
            except (TooDeep, ValueError) as exc:
                raise OptionError(f"{path} line {number}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise OptionError(f"{path} line {number}: expected a JSON object of fields")
            rows.append(row)
        return rows
    raise OptionError(f"{path}: expected a {', '.join(FILE_SUFFIXES)} file")


def rows_of(value: Any) -> list[Mapping[str, Any]]:
    """The rows of a table (`is_table`), as mappings."""
    if type(value).__name__ == "DataFrame":
        return list(value.to_dict("records"))
    rows = list(value)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise OptionError(f"row {number}: expected a dict of fields, got {shown(row)}")
    return rows


def check_rows(table: Any, *, as_flags: bool) -> list[Row]:
    """Every row of `table` (a list of dicts or a DataFrame) as a prompt and its fields,
    each checked as its option is; `as_flags` names them as a cell does (`--quality`),
    else as keywords (`quality`). Missing values are left out."""
    rows = rows_of(table)
    if not rows:
        raise OptionError("the table has no rows: give one row a run")
    checked = []
    for number, row in enumerate(rows, start=1):
        prompt: Any = None
        fields: dict[str, Any] = {}
        for column, value in row.items():
            value = _plain(value)
            if _missing(value):
                continue
            if column == "prompt":
                prompt = value
                continue
            option = _field_of(column, number)
            name = option.flags[0] if as_flags else option.dest
            fields[option.dest] = check(option, value, source=f"row {number}: {name}")
        if prompt is None:
            raise OptionError(f"row {number}: no prompt: each row needs one, in a prompt column")
        if not isinstance(prompt, str):
            raise OptionError(f"row {number}: prompt {shown(prompt)}: expected the text to draw")
        checked.append((prompt, fields))
    return checked


def columns_of(rows: list[Row]) -> list[str]:
    """The fields the rows set, sweepable ones first (`SWEEPABLE` order), then the others
    as they first appear: the table's columns, as a sweep names its swept values."""
    seen = list(dict.fromkeys(name for _, fields in rows for name in fields))
    return [n for n in SWEEPABLE if n in seen] + [n for n in seen if n not in SWEEPABLE]


def _field_of(column: Any, number: int) -> Option:
    """The request field a column names: `output_format`, or `output-format`, `format`."""
    text = str(column).strip()
    option = REQUEST_FIELDS.get(text) or BY_FLAG.get(f"--{text}")
    if option is not None and option.request_field:
        return option
    known = ["prompt", *REQUEST_FIELDS]
    close = difflib.get_close_matches(text, known, 1, 0.75)
    hint = f"did you mean {close[0]}?" if close else "columns are prompt and request fields"
    raise OptionError(f"row {number}: unknown column {shown(column)}: {hint}")


def _plain(value: Any) -> Any:
    """A numpy scalar (a DataFrame's int64, bool_) as the Python value it holds."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def _missing(value: Any) -> bool:
    """None, an empty CSV cell, or a DataFrame's NaN (or pandas.NA, whose != raises)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True
