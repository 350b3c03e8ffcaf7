"""Named presets: request fields kept under a name, shared by every notebook of a project
or of a user (`--preset NAME`, `preset="NAME"`).

Where they are read, first found wins:

1. the nearest `pyproject.toml` (this directory, then each parent), its
   `[tool.mesh-magics.presets.NAME]` tables;
2. `$XDG_CONFIG_HOME/mesh-magics/presets.toml` (default `~/.config/...`), its top-level
   `[NAME]` tables (the file holds nothing but presets).

A preset's keys are request fields, named as the keyword arguments are (`output_format`)
or as the option without its dashes (`output-format`), and each value is checked as its
option is. The options and keywords given win over the preset, and the preset over the
configured defaults. The files are read when a preset is asked for, so an edit shows at
the next run.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, OptionError
from .schema import BY_FLAG, REQUEST_FIELDS, check, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def with_preset(
    name: str | None, fields: Mapping[str, Any], *, as_flags: bool, beside: Any = ()
) -> dict[str, Any]:
    """`fields` over the preset `name`'s (None: `fields` as they are). Fields named in
    `beside` (a cell's comma-listed ones) win too."""
    if name is None:
        return dict(fields)
    given = set(fields) | set(beside)
    chosen = preset(name, as_flags=as_flags)
    return {**{k: v for k, v in chosen.items() if k not in given}, **fields}


def preset(name: str, *, as_flags: bool) -> dict[str, Any]:
    """The fields of preset `name`, checked; an `OptionError` with a did-you-mean when
    there is no such preset. `as_flags`: name the fields as a cell does (`--quality`)."""
    found = presets()
    where = "--preset" if as_flags else "preset"
    if name not in found:
        if not found:
            raise OptionError(
                f"{where} {name}: no presets are defined; add [tool.mesh-magics.presets."
                f"{name}] to pyproject.toml, or [{name}] to {user_file()}"
            )
        close = difflib.get_close_matches(name, found, 1, 0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise OptionError(
            f"{where} {name}: no preset {name!r}; {hint}presets: {', '.join(sorted(found))}"
        )
    path, values = found[name]
    checked = {}
    for key, value in values.items():
        option = REQUEST_FIELDS.get(key) or BY_FLAG.get(f"--{key}")
        if option is None or not option.request_field:
            close = difflib.get_close_matches(key, REQUEST_FIELDS, 1, 0.75)
            hint = f"did you mean {close[0]}?" if close else "a preset holds request fields"
            raise OptionError(f"preset {name!r} ({path}): unknown field {shown(key)}: {hint}")
        field = option.flags[0] if as_flags else option.dest
        checked[option.dest] = check(option, value, source=f"preset {name!r}: {field}")
    return checked


def presets() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every preset by name, with the file it comes from: the nearest pyproject.toml's
    over the user's file."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    user = user_file()
    if user.is_file():
        found.update(_tables(user, _read(user)))
    project = nearest_pyproject()
    if project is not None:
        tool = _read(project).get("tool", {})
        section = tool.get("mesh-magics", {}) if isinstance(tool, dict) else {}
        chosen = section.get("presets", {}) if isinstance(section, dict) else {}
        found.update(_tables(project, chosen if isinstance(chosen, dict) else {}))
    return found


def nearest_pyproject(start: Path | None = None) -> Path | None:
    """The `pyproject.toml` of `start` (default: the current directory) or its nearest
    parent that has one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def user_file() -> Path:
    """`$XDG_CONFIG_HOME/mesh-magics/presets.toml`, else `~/.config/mesh-magics/...`."""
    config = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
    return base / "mesh-magics" / "presets.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read its presets: {exc}") from None


def _tables(path: Path, tables: Mapping[str, Any]) -> dict[str, tuple[Path, dict[str, Any]]]:
    return {name: (path, dict(value)) for name, value in tables.items() if isinstance(value, dict)}
