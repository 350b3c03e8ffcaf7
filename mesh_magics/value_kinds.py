"""The kinds of values an option takes, each a `Kind`: it converts what the user gave (the
text of a cell, or a Python value from `%config`) into the value to use, or raises
`ValueError` with what is allowed, and `allowed` says that in a few words for help and
errors. Text, Choice, Number (a range), Size, Boolean, JsonObject (JSON that is finite and
at most `MAX_JSON_DEPTH` deep: `loads_finite`), Identifier and Binding (a variable name
that does not shadow IPython's), BaseUrl, Factor and ImageSource. Which option takes which
kind is the table in schema.py.
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import TooDeep


class Kind:
    """What values an option takes. `allowed` is the short text for help and errors;
    `suggested`, the values worth offering (the form's lists, Tab completion)."""

    allowed = ""
    suggested: tuple[str, ...] = ()

    def convert(self, value: Any) -> Any:
        raise NotImplementedError


class Text(Kind):
    """Any non-empty text; `allowed` says what the text names (a model id, a folder)."""

    def __init__(self, allowed: str = "text") -> None:
        self.allowed = allowed

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a non-empty value")
        return value.strip()


class Choice(Kind):
    def __init__(self, *values: str, aliases: Mapping[str, str] | None = None) -> None:
        self.values = values
        self.aliases = dict(aliases or {})
        self.allowed = ", ".join(values)
        self.suggested = values

    def convert(self, value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        text = self.aliases.get(text, text) if isinstance(text, str) else text
        if text not in self.values:
            raise ValueError(f"allowed: {self.allowed}")
        return str(text)


class Number(Kind):
    """A finite number from `low` to `high`; `whole` asks for an integer. `above` makes
    `low` itself excluded (a timeout of 0 s is not a timeout)."""

    def __init__(
        self,
        low: float,
        high: float = math.inf,
        *,
        whole: bool = False,
        above: bool = False,
        unit: str = "",
    ) -> None:
        self.low, self.high, self.whole, self.above = low, high, whole, above
        kind = "a whole number" if whole else "a number"
        kind += f" of {unit}" if unit else ""
        if high == math.inf:
            span = f"greater than {low:.15g}" if above else f"{low:.15g} or more"
        else:
            span = f"{low:.15g} to {high:.15g}"
        self.allowed = f"{kind} {span}"
        self._range = span

    def convert(self, value: Any) -> int | float:
        if isinstance(value, str):
            try:
                number: int | float = int(value.strip()) if self.whole else float(value)
            except ValueError:
                raise ValueError(f"expected {self.allowed}") from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected {self.allowed}")
        elif self.whole and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected {self.allowed}")
            number = int(value)
        else:
            number = value
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, {self._range}")
        too_low = number <= self.low if self.above else number < self.low
        if too_low or number > self.high:
            raise ValueError(f"allowed: {self._range}")
        return number


_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
SIZE_PRESETS = ("auto", "1024x1024", "1536x1024", "1024x1536", "512x512", "256x256", "1792x1024")


class Size(Kind):
    allowed = "auto or WIDTHxHEIGHT, e.g. 1024x1024, 1536x1024"
    suggested = SIZE_PRESETS

    def convert(self, value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        if text == "auto":
            return text
        match = _SIZE.fullmatch(text)
        if not match or 0 in (int(match[1]), int(match[2])):
            raise ValueError(f"allowed: {self.allowed}")
        return f"{int(match[1])}x{int(match[2])}"


class Boolean(Kind):
    allowed = "true or false"
    suggested = ("true", "false")

    def convert(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = value.strip().lower() if isinstance(value, str) else None
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"allowed: {self.allowed}")


class JsonObject(Kind):
    allowed = "a JSON object"

    def convert(self, value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = loads_finite(value)
            except ValueError:
                raise ValueError(f"expected {self.allowed}") from None
        if not isinstance(value, dict):
            raise ValueError(f"expected {self.allowed}")
        return value


class Identifier(Kind):
    allowed = "a Python variable name"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
            raise ValueError(f"expected {self.allowed}")
        return value


class Binding(Identifier):
    """A variable name a result may be bound to: one that shadows nothing Python or
    IPython needs (`-o get_ipython` would break every later magic cell)."""

    allowed = "a Python variable name that is not a builtin or a name IPython keeps, e.g. -o fox"

    def convert(self, value: Any) -> str:
        name = super().convert(value)
        reason = shadowed(name)
        if reason is not None:
            raise ValueError(f"binding {name} would shadow {reason}; expected {self.allowed}")
        return name


# Names IPython keeps in the user namespace (its history, output cache and own functions).
_IPYTHON_NAMES = frozenset(
    {"get_ipython", "exit", "quit", "In", "Out", "_", "__", "___", "_i", "_ii", "_iii",
     "_ih", "_oh", "_dh", "_sh", "_exit_code"}
)  # fmt: skip
_IPYTHON_NUMBERED = re.compile(r"_i?[0-9]+")  # _5 is Out[5], _i5 is In[5]


def shadowed(name: str) -> str | None:
    """What binding `name` in a notebook would shadow (a keyword, a dunder, a builtin, a
    name IPython keeps), or None when it is free to use. The one rule for every binding."""
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name.startswith("__") and name.endswith("__"):
        return "a name Python reserves (__dunder__)"
    if name in _IPYTHON_NAMES or _IPYTHON_NUMBERED.fullmatch(name):
        return "a name IPython keeps"
    if hasattr(builtins, name):
        return f"Python's builtin {name}"
    return None


class BaseUrl(Kind):
    allowed = "local, or an http(s) URL such as https://api.meshapi.ai"
    suggested = ("local",)

    def convert(self, value: Any) -> str:
        text = value.strip() if isinstance(value, str) else ""
        if text != "local" and not re.match(r"https?://[^\s/]+", text):
            raise ValueError(f"allowed: {self.allowed}")
        return text


class Factor(Kind):
    """A scale such as `2`, `2x` or `1.5x`, sent as text (`"2x"`), as the edits endpoint
    declares it."""

    def __init__(self, low: float, high: float) -> None:
        self.number = Number(low, high)
        self.allowed = f"a factor from {low:g}x to {high:g}x, e.g. 2x"

    def convert(self, value: Any) -> str:
        text = value.strip().lower().removesuffix("x") if isinstance(value, str) else value
        try:
            number = self.number.convert(text)
        except ValueError:
            raise ValueError(f"allowed: {self.allowed}") from None
        return f"{number:g}x"


class ImageSource(Kind):
    """A local image file or a `data:` URL (or a JSON list of them). The file is read and
    checked when the request is built (`request.py`), against the size limit in force."""

    allowed = "a local image file or a data: URL"

    def convert(self, value: Any) -> Any:
        text = value.strip() if isinstance(value, str) else ""
        if text.startswith(("http://", "https://")):
            raise ValueError("remote URLs are refused by the API; give a local file or a data: URL")
        if text.startswith("["):
            try:
                items = loads_finite(text)
            except ValueError:
                raise ValueError("expected a JSON list of data: URLs") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError("expected a JSON list of data: URLs")
            return items
        if not text:
            raise ValueError(f"expected {self.allowed}")
        return text


MAX_JSON_DEPTH = 32  # no request field nests deeper; deeper would recurse later (dumps, store)


def loads_finite(text: str) -> Any:
    """`json.loads` that refuses NaN and Infinity (they are not JSON, and no API takes them),
    and JSON nested deeper than `MAX_JSON_DEPTH` (`TooDeep`)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a finite number")

    def finite(literal: str) -> float:
        value = float(literal)
        return value if math.isfinite(value) else refuse(literal)  # 1e999 overflows to inf

    try:
        value = json.loads(text, parse_constant=refuse, parse_float=finite)
    except RecursionError:  # the parser recurses per level: 100,000 [ overflow its stack
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    return not_too_deep(value)


def not_too_deep(value: Any) -> Any:
    """`value`, once it is known to nest lists and objects at most `MAX_JSON_DEPTH` deep."""
    if _depth(value) > MAX_JSON_DEPTH:
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """How deep lists and objects nest in `value`, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:  # past the limit the answer is known
                stack.extend((child, level + 1) for child in _children(item))
    return deepest


def _children(item: dict[str, Any] | list[Any] | tuple[Any, ...]) -> list[Any]:
    return list(item.values()) if isinstance(item, dict) else list(item)
