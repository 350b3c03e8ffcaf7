"""What `--edit SOURCE` and `--mask SOURCE` name in a cell.

A SOURCE is looked up in the notebook first: a variable, with attributes and indexes
(`fox`, `fox[0]`, `runs.results[2]`, `paths["sky"]`), evaluated without running any other
code. Otherwise it is a file path (`~` expanded) or a `data:` URL. Either way the text is
the name recorded with the image.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from ..errors import OptionError
from ..inputs import Source


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
        return _evaluate(tree, namespace)
    except _NotSimple:
        raise OptionError(
            f"{what}: write a variable, with .attributes and [indexes] at most (e.g. fox[0]); "
            "compute anything else into a variable first"
        ) from None
    except (AttributeError, LookupError, TypeError) as exc:
        raise OptionError(f"{what}: {type(exc).__name__}: {exc}") from None


class _NotSimple(Exception):
    pass


def _evaluate(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise _NotSimple
        return getattr(_evaluate(node.value, namespace), node.attr)
    if isinstance(node, ast.Subscript):
        return _evaluate(node.value, namespace)[_index(node.slice)]
    raise _NotSimple


def _index(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise _NotSimple from None
    if not isinstance(value, int | str):
        raise _NotSimple
    return value
