"""What `--edit SOURCE` and `--mask SOURCE` name in a cell.

A SOURCE is looked up in the notebook first: a variable, with attributes and indexes
(`fox`, `fox[0]`, `runs.results[2]`, `paths["sky"]`), evaluated without running any other
code. Otherwise it is a file path (`~` expanded) or a `data:` URL. `img.png` names the file
when the variable `img` has no attribute `png` and the file exists. Either way the text
is the name recorded with the image. A property or index of the user's object that
raises is a one-line error naming the source.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..inputs import Source, users_code


def edit_sources(
    edits: list[str], mask: str | None, namespace: Mapping[str, Any]
) -> tuple[list[Source], Source | None]:
    """The cell's `--edit` and `--mask` sources, looked up."""
    images = [_source(text, "--edit", namespace) for text in edits]
    return images, None if mask is None else _source(mask, "--mask", namespace)


_MISSING = object()


def _source(text: str, flag: str, namespace: Mapping[str, Any]) -> Source:
    what = f"{flag} {text}"
    found = lookup(text, namespace, what)
    if found is not _MISSING:
        return Source(found, what, text)
    if text.startswith("data:"):
        return Source(text, what, None)  # a data: URL is no name to record
    return Source(text, what, text)  # a file path; reading it says if there is none


def lookup(text: str, namespace: Mapping[str, Any], what: str) -> Any:
    """The value `text` names in `namespace`, or `_MISSING` when it names no variable."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return _MISSING
    root = tree
    while isinstance(root, ast.Attribute | ast.Subscript):
        root = root.value
    if not isinstance(root, ast.Name) or root.id not in namespace:
        return _MISSING
    try:
        return _evaluate(tree, namespace, what)
    except _NotSimple:
        raise OptionError(
            f"{what}: write a variable, with .attributes and [indexes] at most (e.g. fox[0]); "
            "compute anything else into a variable first"
        ) from None
    except AttributeError as exc:
        if _is_file(text):  # `img.png` with a variable `img` that has no `.png`: the file
            return _MISSING
        raise OptionError(f"{what}: {type(exc).__name__}: {exc}") from None
    except (LookupError, TypeError) as exc:
        raise OptionError(f"{what}: {type(exc).__name__}: {exc}") from None


def _is_file(text: str) -> bool:
    try:  # expanduser raises for an unknown ~user; is_file for NUL bytes, long names
        return Path(text.strip()).expanduser().is_file()
    except (OSError, RuntimeError, ValueError):
        return False


class _NotSimple(Exception):
    pass


def _evaluate(node: ast.expr, namespace: Mapping[str, Any], what: str) -> Any:
    """The value of a name with attributes and indexes. Reading them runs the user's own
    code (properties, `__getitem__`): whatever else it raises is a one-line error."""
    if isinstance(node, ast.Name):
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise _NotSimple
        base, name = _evaluate(node.value, namespace, what), node.attr
        return users_code(what, ast.unparse(node), lambda: getattr(base, name), passes=_NOT_THERE)
    if isinstance(node, ast.Subscript):
        base, index = _evaluate(node.value, namespace, what), _index(node.slice)
        return users_code(what, ast.unparse(node), lambda: base[index], passes=_NOT_THERE)
    raise _NotSimple


_NOT_THERE = (AttributeError, LookupError, TypeError)  # no such attribute or index


def _index(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise _NotSimple from None
    if not isinstance(value, int | str):
        raise _NotSimple
    return value
