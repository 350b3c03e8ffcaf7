"""The prompt's `{name}` fields filled from the user's namespace, like `str.format` (with
`.attr`, `[index]`, `!r` and `:spec`), `{{` and `}}` for literal braces; every failure is
an `OptionError` that names the field. Only the cell's own text is a template: the items
of a `--prompts` list are sent verbatim.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from ..errors import OptionError


class _NamespaceFormatter(string.Formatter):
    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int) or not key.isidentifier():
            raise OptionError(
                f"the prompt has a {{}} field {str(key)!r} that is not a variable name; use "
                "one such as {animal}, or write {{ and }} for literal braces"
            )
        try:
            return self.namespace[key]
        except KeyError:
            raise OptionError(
                f"the prompt uses {{{key}}}, but no variable {key!r} is defined; define it "
                f"first, or write {{{{{key}}}}} for literal braces"
            ) from None


def interpolate(prompt: str, namespace: Mapping[str, Any]) -> str:
    """Fill `{name}` fields (with `.attr`, `[index]`, `!r` and `:spec`) from `namespace`."""
    if "{" not in prompt and "}" not in prompt:
        return prompt
    try:
        return _NamespaceFormatter(namespace).vformat(prompt, (), {})
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(
            f"bad {{}} field in the prompt: {exc}; write {{{{ and }}}} for literal braces"
        ) from None
    except (AttributeError, LookupError, TypeError) as exc:
        raise OptionError(f"a {{}} field in the prompt could not be filled: {exc}") from None
    except Exception as exc:  # a user's __format__ or property raised: say which field
        raise OptionError(
            f"a {{}} field in the prompt could not be filled: {type(exc).__name__}: {exc}"
        ) from None


__all__ = ["interpolate"]
