"""The option schema is the one source: the parser, the settings and the magic's help all
come from it and agree (docs/reference.md too: tests/test_docs.py)."""

from __future__ import annotations

import math

import pytest

from mesh_magics.cell import parse_cell
from mesh_magics.errors import OptionError
from mesh_magics.ipython.magic import MeshImageMagics
from mesh_magics.schema import OPTIONS, SETTINGS, check
from mesh_magics.value_kinds import Number


def test_the_magic_help_names_every_flag_and_setting() -> None:
    help_text = MeshImageMagics.meshimage.__doc__ or ""
    for option in OPTIONS:
        for flag in option.flags:
            assert f"{flag}" in help_text, flag
        if option.config:
            assert f"  {option.dest}:" in help_text, option.dest


def test_every_configurable_trait_is_in_the_schema_and_back() -> None:
    assert set(MeshImageMagics.class_trait_names(config=True)) == set(SETTINGS)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "1e999"])
def test_numbers_must_be_finite(value: object) -> None:
    with pytest.raises(OptionError, match="finite"):
        check(SETTINGS["timeout"], value)


def test_config_values_and_cell_text_get_the_same_message() -> None:
    with pytest.raises(OptionError) as from_cell:
        parse_cell("--quality ultra", "x", {})
    with pytest.raises(OptionError) as from_config:
        check(SETTINGS["quality"], "ultra", source="MeshImageMagics.quality")
    assert str(from_cell.value).removeprefix("--quality") == str(from_config.value).removeprefix(
        "MeshImageMagics.quality"
    )


def test_whole_numbers_refuse_fractions_and_booleans() -> None:
    whole = Number(1, 10, whole=True)
    assert whole.convert(3.0) == 3 and whole.convert("7") == 7
    for bad in (2.5, True, "2.5", None):
        with pytest.raises(ValueError):
            whole.convert(bad)
