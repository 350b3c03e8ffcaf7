"""The `%meshimage --form` form: its state and fields (`state.py`), the exact cell for a
state and back (`code.py`), and the widgets (`widget.py`, imported on its own: it needs
ipywidgets)."""

import sys
import types

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


# `mm.form(...)`: once this package is imported, Python sets `mesh_magics.form` to it, so
# the package itself is callable, as `widget.form` (imported on the call: it needs ipywidgets).
class _CallableModule(types.ModuleType):
    def __call__(self, *args: object, **kwargs: object) -> object:
        from .widget import form

        return form(*args, **kwargs)  # type: ignore[arg-type]


sys.modules[__name__].__class__ = _CallableModule
