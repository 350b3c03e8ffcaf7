"""From the magic line and the cell text to a validated `ImageRequest` and the cell's settings.

The grammar (DESIGN.md): options come from the magic line and from the leading lines of
the cell that start with `-`; lines starting with `#` are comments; the first other line
starts the prompt, which runs to the end of the cell. In the line magic the prompt is the
rest of the line after the options (`--` ends the options early). An option given twice:
the last wins. Comment lines are dropped anywhere in the cell, so a prompt line cannot
begin with `#`.

Every mistake raises `OptionError` naming the option, the bad value and what is allowed,
before any network call.
"""

from __future__ import annotations

import base64
import difflib
import json
import keyword
import mimetypes
import re
import shlex
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OptionError

Converter = Callable[[str], Any]

# ---------------------------------------------------------------------------------------
# Value converters: each takes the text the user wrote and returns the JSON value to send.


def _choice(*allowed: str, aliases: Mapping[str, str] | None = None) -> Converter:
    def convert(text: str) -> str:
        value = text.strip().lower()
        value = (aliases or {}).get(value, value)
        if value not in allowed:
            raise ValueError(f"allowed: {', '.join(allowed)}")
        return value

    convert.__doc__ = " | ".join(allowed)
    return convert


def _in_range(low: float, high: float, *, whole: bool = False) -> Converter:
    """A number from `low` to `high`; `whole` asks for an integer."""
    parse: Callable[[str], float] = int if whole else float
    kind = "a whole number" if whole else "a number"
    span = f"{low:.15g} to {high:.15g}"

    def convert(text: str) -> float:
        try:
            value = parse(text.strip())
        except ValueError:
            raise ValueError(f"expected {kind} from {span}") from None
        if not low <= value <= high:
            raise ValueError(f"allowed: {span}")
        return value

    convert.__doc__ = span.replace(" to ", "..")
    return convert


_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


def _size(text: str) -> str:
    value = text.strip().lower()
    if value == "auto":
        return value
    match = _SIZE.fullmatch(value)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise ValueError("allowed: auto or WIDTHxHEIGHT, e.g. 1024x1024, 1536x1024")
    return f"{int(match[1])}x{int(match[2])}"


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text.strip()


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError("allowed: true or false")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError('expected a JSON object, e.g. {"max_images": 3}') from None
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object, e.g. {"max_images": 3}')
    return value


def _input_image(text: str) -> Any:
    """A data URL as is, a JSON list as is, or a local file read into a data URL."""
    value = text.strip()
    if value.startswith("data:"):
        return value
    if value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list of data: URLs") from None
    if value.startswith(("http://", "https://")):
        raise ValueError("remote URLs are refused by the API; give a local file or a data: URL")
    try:  # expanduser and is_file raise on unknown users, NUL bytes, over-long names
        path = Path(value).expanduser()
        data = path.read_bytes() if path.is_file() else None
    except (OSError, RuntimeError, ValueError):
        data = None
    if data is None:
        raise ValueError("expected a data: URL or the path of an existing image file")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("expected a number of seconds, e.g. 120") from None
    if value <= 0:
        raise ValueError("expected a number of seconds greater than 0")
    return value


def _identifier(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise ValueError("expected a Python variable name, e.g. -o fox")
    return text


def _base_url(text: str) -> str:
    value = text.strip()
    if value != "local" and not re.match(r"https?://[^\s/]+", value):
        raise ValueError("allowed: local, or an http(s) URL such as https://api.meshapi.ai")
    return value


# ---------------------------------------------------------------------------------------
# The option table. Request fields are sent in the body; settings steer this cell.


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]
    dest: str
    convert: Converter | None  # None: a flag that takes no value
    request_field: bool = True
    value: Any = True  # what a flag stores


_QUALITIES = ("auto", "low", "medium", "high", "hd", "standard")

OPTIONS: tuple[Option, ...] = (
    Option(("--model", "-m"), "model", _text),
    Option(("-n", "--n"), "n", _in_range(1, 10, whole=True)),
    Option(("--size", "-s"), "size", _size),
    Option(("--quality", "-q"), "quality", _choice(*_QUALITIES)),
    Option(("--response-format",), "response_format", _choice("url", "b64_json")),
    Option(
        ("--output-format", "--format", "-f"),
        "output_format",
        _choice("png", "jpeg", "webp", aliases={"jpg": "jpeg"}),
    ),
    Option(("--output-compression",), "output_compression", _in_range(0, 100, whole=True)),
    Option(("--background",), "background", _choice("transparent", "opaque", "auto")),
    Option(("--moderation",), "moderation", _choice("low", "auto")),
    Option(("--partial-images",), "partial_images", _in_range(0, 3, whole=True)),
    Option(("--seed",), "seed", _in_range(-1, 2147483647, whole=True)),
    Option(("--aspect-ratio",), "aspect_ratio", _text),
    Option(("--resolution",), "resolution", _text),
    Option(("--guidance-scale",), "guidance_scale", _in_range(1, 10)),
    Option(("--watermark",), "watermark", _boolean),
    Option(("--image",), "image", _input_image),
    Option(("--sequential-image-generation",), "sequential_image_generation", _text),
    Option(
        ("--sequential-image-generation-options",),
        "sequential_image_generation_options",
        _json_object,
    ),
    Option(("--optimize-prompt-options",), "optimize_prompt_options", _json_object),
    Option(("--stream",), "stream", None, request_field=False, value=True),
    Option(("--no-stream",), "stream", None, request_field=False, value=False),
    Option(("-p", "--param"), "param", str, request_field=False),
    Option(("-o", "--out"), "out", _identifier, request_field=False),
    Option(("--no-display",), "no_display", None, request_field=False),
    Option(("--base-url",), "base_url", _base_url, request_field=False),
    Option(("--timeout",), "timeout", _positive_seconds, request_field=False),
    Option(("--list-models",), "list_models", None, request_field=False),
)

_BY_NAME = {name: option for option in OPTIONS for name in option.names}
_FIELDS = {option.dest: option for option in OPTIONS if option.request_field}
_PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_field(name: str, text: str, *, source: str) -> Any:
    """Convert one request field's text with the same rules the options use.

    `source` names where the value came from, for the message (`--quality`,
    `-p quality=...`, `MeshImageMagics.quality`).
    """
    converter = _FIELDS[name].convert
    assert converter is not None
    try:
        return converter(text)
    except ValueError as exc:
        raise OptionError(f"{source}: invalid value {text!r}; {exc}") from None


# ---------------------------------------------------------------------------------------
# The parsed cell.


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


@dataclass(frozen=True)
class ImageRequest:
    """The JSON body of one `POST /v1/images/generations`, exactly as it is sent."""

    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def prompt(self) -> str:
        return str(self.body["prompt"])

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def n(self) -> int:
        return int(self.body.get("n", 1))

    @property
    def size(self) -> str:
        return str(self.body.get("size", "auto"))


def build_request(options: CellOptions, defaults: Mapping[str, Any]) -> ImageRequest:
    """The request body: configured defaults, overridden by what the cell set."""
    body: dict[str, Any] = {"prompt": options.prompt}
    body.update({k: v for k, v in defaults.items() if v is not None})
    body.update(options.fields)
    body["stream"] = options.stream
    return ImageRequest(body)


def parse_cell(line: str, cell: str | None, namespace: Mapping[str, Any]) -> CellOptions:
    """Parse a `%meshimage` line or a `%%meshimage` cell; interpolate the prompt."""
    options = CellOptions()
    if cell is None:
        prompt_start = _apply(options, line, stop_at_prompt=True)
        options.prompt = line[prompt_start:].strip() if prompt_start is not None else ""
    else:
        _apply(options, line, stop_at_prompt=False)
        body = cell.splitlines()
        lines = [text for text in body if not text.lstrip().startswith("#")]
        first_prompt_line = 0
        for text in lines:
            if text.strip() and not text.lstrip().startswith("-"):
                break
            _apply(options, text, stop_at_prompt=False)
            first_prompt_line += 1
        options.prompt = "\n".join(lines[first_prompt_line:]).strip("\n").rstrip()
        options.prompt = _strip_blank_edges(options.prompt)
    if options.list_models:
        return options
    if not options.prompt:
        where = "after the options" if cell is None else "below the option lines"
        raise OptionError(f"no prompt: write what to draw {where}")
    options.prompt = interpolate(options.prompt, namespace)
    return options


def _strip_blank_edges(text: str) -> str:
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


_WORD = re.compile(r"""(?:[^\s'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+""")


def _words(text: str) -> Iterator[tuple[str, int]]:
    """Shell-style words of `text` with the offset each starts at."""
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        match = _WORD.match(text, pos)
        if not match or match.end() == pos:
            raise OptionError(f"unterminated quote in {text.strip()!r}")
        raw = match.group()
        if match.end() < len(text) and not text[match.end()].isspace():
            raise OptionError(f"unterminated quote in {text.strip()!r}")
        try:
            parts = shlex.split(raw)
        except ValueError:
            raise OptionError(f"unterminated quote in {text.strip()!r}") from None
        yield (parts[0] if parts else ""), pos
        pos = match.end()


def _apply(options: CellOptions, text: str, *, stop_at_prompt: bool) -> int | None:
    """Apply the option words of `text`; return where the prompt starts (line magic only).

    Words are read lazily so that the prompt after the options may hold any quotes.
    """
    words = _words(text)
    for word, start in words:
        if word == "--" and stop_at_prompt:
            rest = text[start + 2 :]
            return start + 2 + (len(rest) - len(rest.lstrip())) if rest.strip() else None
        if not word.startswith("-") or word == "-":
            if stop_at_prompt:
                return start
            raise OptionError(
                f"unexpected {word!r} in an option line; options look like --name value "
                "(the prompt starts at the first line that does not begin with '-')"
            )
        name, value = _split_inline(word)
        option = _BY_NAME.get(name)
        if option is None:
            raise OptionError(_unknown_option_message(name))
        if option.convert is None:
            if value is not None:
                raise OptionError(f"{name} takes no value (got {value!r})")
            setattr(options, option.dest, option.value)
            continue
        if value is None:
            following = next(words, None)
            if following is None:
                raise OptionError(f"{name} needs a value{_allowed_hint(option)}")
            value = following[0]
        _store(options, option, name, value)
    return None


def _split_inline(word: str) -> tuple[str, str | None]:
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        return name, (value if eq else None)
    if len(word) > 2 and word[:2] in _BY_NAME:  # -n3, -ofox
        return word[:2], word[2:].removeprefix("=")
    return word, None


def _store(options: CellOptions, option: Option, name: str, text: str) -> None:
    if option.dest == "param":
        key, eq, raw = text.partition("=")
        if not eq or not _PARAM_KEY.fullmatch(key):
            raise OptionError(f"{name} {text!r}: expected KEY=VALUE, e.g. -p guidance_scale=4")
        _store_param(options, key, raw, source=f"{name} {key}")
        return
    assert option.convert is not None
    try:
        value = option.convert(text)
    except ValueError as exc:
        raise OptionError(f"{name}: invalid value {text!r}; {exc}") from None
    if option.request_field:
        options.fields[option.dest] = value
    else:
        setattr(options, option.dest, value)


def _store_param(options: CellOptions, key: str, raw: str, *, source: str) -> None:
    if key == "prompt":
        raise OptionError(f"{source}: the prompt is the cell text, not a parameter")
    if key == "stream":
        options.stream = _boolean_or_error(raw, source)
        return
    if key in _FIELDS:
        options.fields[key] = validate_field(key, raw, source=source)
        return
    try:
        options.fields[key] = json.loads(raw)
    except ValueError:
        options.fields[key] = raw


def _boolean_or_error(raw: str, source: str) -> bool:
    try:
        return _boolean(raw)
    except ValueError as exc:
        raise OptionError(f"{source}: invalid value {raw!r}; {exc}") from None


def _allowed_hint(option: Option) -> str:
    doc = option.convert.__doc__ if option.convert else None
    return f" ({doc})" if doc and "\n" not in doc else ""


def _unknown_option_message(name: str) -> str:
    known = sorted(_BY_NAME)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; see %meshimage? for the options"
    return f"unknown option {name}{hint}"


# ---------------------------------------------------------------------------------------
# Prompt interpolation: str.format fields from the user namespace, {{ }} for braces.


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
