"""What one cell asked for: `CellOptions`, the request fields and the cell's own settings
as the grammar leaves them, and which of the commands (`--jobs`, `--form`, ...) it names.
It holds data only; `grammar.py` fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError


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
    batch: bool = False
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


__all__ = ["CellOptions"]
