"""The `%mesh form` form: its state and fields (`state.py`), the exact cell for a
state and back (`code.py`), and the widgets (`widget.py`, imported on its own: it needs
ipywidgets)."""

from .code import from_cell, normal_prompt, prompt_problem, to_cell
from .state import (
    MAIN_FIELDS,
    MORE_FIELDS,
    FormState,
    field_choices,
    field_flag,
    field_help,
    field_problem,
    field_value,
)

__all__ = [
    "MAIN_FIELDS",
    "MORE_FIELDS",
    "FormState",
    "field_choices",
    "field_flag",
    "field_help",
    "field_problem",
    "field_value",
    "from_cell",
    "normal_prompt",
    "prompt_problem",
    "to_cell",
]
