"""The form's controls, one per request field: a Combobox for the model (filled from
`/v1/models`) and the size (common sizes; free text allowed), a BoundedIntText for n, a
Dropdown for a field with choices, a Text for the rest; the seed has a dice button.
Every control shows its option's help as a tooltip and has a problem line beside it."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from ..value_kinds import SIZE_PRESETS
from .state import field_choices, field_help

UNSET = ""  # an empty box, an unset Dropdown: the field is not sent
LABEL_WIDTH = "140px"


def shown(value: Any) -> str:
    """A field's value as its control shows it."""
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def field_row(
    name: str, value: Any, config: Mapping[str, Any]
) -> tuple[widgets.ValueWidget, widgets.HTML, widgets.HBox]:
    """The control of field `name` showing `value`, its problem line, and both in a row."""
    control = make_control(name, value, config)
    control.tooltip = field_help(name)
    control.style.description_width = LABEL_WIDTH
    problem = widgets.HTML()
    parts: list[widgets.Widget] = [control]
    if name == "seed":
        dice = widgets.Button(description="🎲", tooltip="a random seed",
                              layout=widgets.Layout(width="40px"))  # fmt: skip
        dice.on_click(lambda _b: setattr(control, "value", str(random.randrange(2**31))))
        parts.append(dice)
    return control, problem, widgets.HBox([*parts, problem])


def make_control(name: str, value: Any, config: Mapping[str, Any]) -> widgets.ValueWidget:
    label = name.replace("_", " ")
    if name in ("model", "size"):
        sizes = list(SIZE_PRESETS) if name == "size" else []
        return widgets.Combobox(value=shown(value), options=sizes, description=label,
                                placeholder=str(config.get(name) or ""),
                                ensure_option=False)  # fmt: skip
    if name == "n":
        start = int(config.get("n") or 1) if value is None else int(value)
        return widgets.BoundedIntText(value=start, min=1, max=10, description=label)
    choices = field_choices(name)
    if choices:
        options = [("(default)", UNSET), *((str(c), str(c)) for c in choices)]
        text = shown(value)
        if text and text not in dict(options).values():
            options.append((text, text))
        return widgets.Dropdown(options=options, value=text, description=label)
    return widgets.Text(value=shown(value), description=label)
