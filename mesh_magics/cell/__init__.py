"""The cell grammar, no IPython: `parse_cell` reads a `%meshimage` line or a `%%meshimage`
cell into a `CellOptions`, and `interpolate` fills a prompt's `{name}` fields.

- `grammar.py`: the lines of a cell (options, comments, the prompt, `---` between the
  prompts of a sweep) and what each command takes.
- `option_words.py`: an option line's words into `CellOptions` fields, each value checked.
- `interpolation.py`: `{name}` fields from the user's namespace.
- `options.py`: `CellOptions`, what the cell asked for.
"""

from __future__ import annotations

from .grammar import parse_cell
from .interpolation import interpolate
from .options import CellOptions

__all__ = ["CellOptions", "interpolate", "parse_cell"]
