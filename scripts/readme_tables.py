"""Write the README's option and configuration tables from the option schema.

Usage: python scripts/readme_tables.py [--check]
The tables sit between `<!-- options-table -->` / `<!-- config-table -->` markers and
their `<!-- end -->`; `--check` exits 1 when the README differs from the schema.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mesh_magics.ipython.magic import MeshImageMagics
from mesh_magics.schema import config_table, options_table

README = Path(__file__).resolve().parent.parent / "README.md"


def config_defaults() -> dict[str, object]:
    traits = MeshImageMagics.class_traits(config=True)
    return {name: trait.default_value for name, trait in traits.items()}


def render(text: str) -> str:
    for marker, table in (
        ("options-table", options_table()),
        ("config-table", config_table(config_defaults())),
    ):
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(\n<!-- end -->)", re.S)
        block = pattern.search(text)
        if block is None:
            raise SystemExit(f"README.md has no <!-- {marker} --> ... <!-- end --> block")
        head, tail = block.span()
        text = text[:head] + block.group(1) + table + block.group(2) + text[tail:]
    return text


def main() -> int:
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        return 0 if wanted == current else 1
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
