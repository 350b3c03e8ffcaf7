"""The form in marimo (`mm.form()` there): marimo has no ipywidgets, so the form is
marimo's own, a `mo.ui.form` of a prompt and the main fields. Its value, once submitted,
is the `%%meshimage` cell it stands for (`code.to_cell`, as the Jupyter form writes it),
and a cell below runs it, the marimo way:

    form = mm.form("A fox")
    form
    ---
    mm.cell(form.value) if form.value else None   # reruns on each submit

A bad value is refused in the form with the option's own message, and nothing runs.
marimo is imported only here, and only in marimo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import OptionError
from ..value_kinds import SIZE_PRESETS
from .code import prompt_problem, to_cell
from .controls import UNSET, shown
from .state import FormState, field_choices, field_value

FIELDS = ("model", "size", "quality", "n")  # the form's controls; the cell takes the rest


def marimo_form(
    prompt: str,
    fields: Mapping[str, Any],
    *,
    out: str | None,
    base_url: str | None,
    config: Mapping[str, Any],
) -> Any:
    """A `mo.ui.form` prefilled with `prompt` and `fields`, whose value is its cell."""
    import marimo as mo

    def choice(name: str, options: list[str]) -> Any:
        value = shown(fields.get(name))
        named = {"(default)": UNSET, **{o: o for o in options}}
        if value and value not in named:
            named[value] = value
        chosen = next(label for label, v in named.items() if v == value)
        return mo.ui.dropdown(named, value=chosen, label=name)

    controls = {
        "prompt": mo.ui.text_area(value=prompt, label="prompt", full_width=True),
        "model": mo.ui.text(
            value=shown(fields.get("model")),
            placeholder=str(config.get("model") or ""),
            label="model",
        ),
        "size": choice("size", list(SIZE_PRESETS)),
        "quality": choice("quality", list(field_choices("quality") or ())),
        "n": mo.ui.number(
            start=1, stop=10, value=int(fields.get("n") or config.get("n") or 1), label="n"
        ),
    }
    extra = {k: v for k, v in fields.items() if k not in FIELDS}  # given, not shown: kept

    def cell_of(values: Mapping[str, Any]) -> str:
        chosen = {name: field_value(name, values.get(name)) for name in FIELDS}
        state = FormState(str(values.get("prompt") or ""), {**extra, **chosen}, out, base_url)
        state.fields = {k: v for k, v in state.fields.items() if v is not None}
        return to_cell(state)

    def problem(values: Mapping[str, Any]) -> str | None:
        said = prompt_problem(str(values.get("prompt") or ""))
        if said:
            return said
        try:
            cell_of(values)
        except OptionError as exc:
            return str(exc)
        return None

    class CellForm(mo.ui.form):
        """A `mo.ui.form` whose value is the cell its fields stand for."""

        def _convert_value(self, value: Any) -> str | None:
            values = super()._convert_value(value)
            return None if values is None else cell_of(values)

    layout = "{prompt}\n\n{model} {size} {quality} {n}"  # the prompt, then a row of fields
    element = mo.md(layout).batch(**controls)
    return CellForm(
        element,
        submit_button_label="Generate",
        validate=lambda raw: None if raw is None else problem(_values(element, raw)),
    )


def _values(element: Any, raw: Any) -> Mapping[str, Any]:
    """The form's values as Python ones, from what the browser sent."""
    return dict(element._clone()._convert_value(raw))
