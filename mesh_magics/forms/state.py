"""What the `%mesh form` form holds, and what it may say about each field.

Everything here comes from `schema.OPTIONS`, so the form offers the same fields, choices,
help and error messages as a cell does. No widgets here: `widget.py` draws the form,
`code.py` turns a `FormState` into the exact cell and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError
from ..schema import REQUEST_FIELDS, Option, check
from ..value_kinds import Choice


@dataclass
class FormState:
    """What a form holds: the prompt, and a value (or None: not set) for each field it shows.

    `fields` holds only the set request fields, by schema dest (`{"size": "1024x1024"}`),
    as their kinds convert them (`"jpeg"`, not `"jpg"`); a key that is not a schema
    field is a parameter sent as is (`-p KEY=JSON` in the cell; None is JSON null there).
    The prompt is literal text: `{` is a brace, not a `{name}` field.
    """

    prompt: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    out: str | None = None  # -o NAME
    base_url: str | None = None  # --base-url


# The fields the form shows as controls, and the rest of the request fields (for a
# collapsed "more" section). `image` is left out: a file input is not a control here; so
# are the fields of edits (the form generates).
MAIN_FIELDS: tuple[str, ...] = (
    "model",
    "size",
    "quality",
    "n",
    "output_format",
    "background",
    "seed",
)
MORE_FIELDS: tuple[str, ...] = tuple(
    dest
    for dest, option in REQUEST_FIELDS.items()
    if dest not in MAIN_FIELDS and dest != "image" and option.for_generations
)


def field_option(name: str) -> Option:
    """The schema option of request field `name`; KeyError names it if there is none."""
    try:
        return REQUEST_FIELDS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a request field of the schema") from None


def is_unset(value: Any) -> bool:
    """None or blank text: the field is not set (a form's empty box)."""
    return value is None or (isinstance(value, str) and not value.strip())


def field_value(name: str, value: Any) -> Any:
    """`value` as the state holds it: converted by the field's kind (`"jpg"` -> `"jpeg"`,
    `"7"` -> `7`), or None when not set. A bad value raises the cell's `OptionError`."""
    if is_unset(value):
        return None
    option = field_option(name)
    return check(option, value, source=option.flag)


def field_problem(name: str, value: Any) -> str | None:
    """The message the option gives in a cell for this value (`--size: invalid value
    'big'; allowed: ...`), or None when it is fine. None or blank text is "not set":
    fine."""
    try:
        field_value(name, value)
    except OptionError as exc:
        return str(exc)
    return None


def field_choices(name: str) -> tuple[str, ...] | None:
    """The values of a field with a fixed set of choices (for a dropdown), else None."""
    kind = field_option(name).kind
    return tuple(kind.values) if isinstance(kind, Choice) else None


def field_help(name: str) -> str:
    """The option's help and what it allows: `image size (auto or WIDTHxHEIGHT, ...)`."""
    option = field_option(name)
    allowed = option.kind.allowed if option.kind is not None else ""
    return f"{option.help} ({allowed})" if allowed else option.help


def field_flag(name: str) -> str:
    """The option's long flag, as the cell writes it (`--size`, `-n`)."""
    return field_option(name).flag


__all__ = [
    "MAIN_FIELDS",
    "MORE_FIELDS",
    "FormState",
    "field_choices",
    "field_flag",
    "field_help",
    "field_problem",
    "field_value",
    "is_unset",
]
