"""The options and settings of `%%meshimage`, declared once as data.

Each `Option` names its flags, the kind of value it takes (choices or a range), its help
text, whether it is a request field (sent in the body) or a setting of the cell, and
whether `MeshImageMagics` has a configurable default of the same name. From this one table
come the cell parser (`options.py`), the `%config` validation (`magic.py`), the magic's
docstring and the README's tables (`tests/test_schema.py` checks they are the same), so
they cannot drift apart.

A kind converts what the user gave (the text of a cell, or a Python value from `%config`)
into the value to use, or raises `ValueError` with what is allowed. `check()` turns that
into the one message every front end shows: `SOURCE: invalid value V; allowed: ...`.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import OptionError

# -- kinds of values ------------------------------------------------------------------------


class Kind:
    """What values an option takes. `allowed` is the short text for help and errors."""

    allowed = ""

    def convert(self, value: Any) -> Any:
        raise NotImplementedError


class Text(Kind):
    allowed = "text"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a non-empty value")
        return value.strip()


class Choice(Kind):
    def __init__(self, *values: str, aliases: Mapping[str, str] | None = None) -> None:
        self.values = values
        self.aliases = dict(aliases or {})
        self.allowed = ", ".join(values)

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


class Size(Kind):
    allowed = "auto or WIDTHxHEIGHT, e.g. 1024x1024, 1536x1024"

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
    allowed = 'a JSON object, e.g. {"max_images": 3}'

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
    allowed = "a Python variable name, e.g. -o fox"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
            raise ValueError(f"expected {self.allowed}")
        return value


class BaseUrl(Kind):
    allowed = "local, or an http(s) URL such as https://api.meshapi.ai"

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


def loads_finite(text: str) -> Any:
    """`json.loads` that refuses NaN and Infinity (they are not JSON, and no API takes them)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a finite number")

    def finite(literal: str) -> float:
        value = float(literal)
        return value if math.isfinite(value) else refuse(literal)  # 1e999 overflows to inf

    return json.loads(text, parse_constant=refuse, parse_float=finite)


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of the magic, or one setting of `MeshImageMagics`, or both."""

    dest: str  # the request field or setting it fills
    flags: tuple[str, ...]  # the long form first; () for a configuration-only setting
    kind: Kind | None  # None: a flag that takes no value
    help: str
    request_field: bool = True  # sent in the request body
    config: bool = False  # MeshImageMagics.<dest> is its configurable default
    flag_value: Any = True  # what a flag stores
    optional: bool = False  # None is a valid configured value ("not set")
    metavar: str = "VALUE"  # how help writes the value
    default: Any = None  # a setting's value until configured (None: not set)
    endpoint: str = "generations"  # a request field of: generations, edits, or both

    @property
    def for_edits(self) -> bool:
        """Sent to `/v1/images/edits` (the body the SDK's `ImageEditParams` declares)."""
        return self.endpoint in ("edits", "both")

    @property
    def for_generations(self) -> bool:
        return self.endpoint in ("generations", "both")

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else f"MeshImageMagics.{self.dest}"


QUALITIES = ("auto", "low", "medium", "high", "hd", "standard")
OPERATIONS = ("edit", "inpaint", "outpaint", "mix", "reframe", "upscale", "remove_background")
MAX_INPUTS = 16  # images in one edit: the first, and up to 15 references
PROMPTLESS = frozenset({"inpaint", "reframe", "upscale", "remove_background"})  # need no prompt
SECONDS = Number(0, above=True, unit="seconds")

OPTIONS: tuple[Option, ...] = (
    # -- request fields
    Option("model", ("--model", "-m"), Text(), "model id; default openai/gpt-image-1",
           config=True, default="openai/gpt-image-1", metavar="M", endpoint="both"),
    Option("n", ("-n", "--n"), Number(1, 10, whole=True), "number of images", config=True,
           optional=True, metavar="N", endpoint="both"),
    Option("size", ("--size", "-s"), Size(), "image size", config=True, optional=True,
           metavar="S", endpoint="both"),
    Option("quality", ("--quality", "-q"), Choice(*QUALITIES), "quality", config=True,
           optional=True, metavar="Q"),
    Option("output_format", ("--output-format", "--format", "-f"),
           Choice("png", "jpeg", "webp", aliases={"jpg": "jpeg"}), "file format (jpg = jpeg)",
           metavar="F"),
    Option("output_compression", ("--output-compression",), Number(0, 100, whole=True),
           "jpeg/webp compression", metavar="C"),
    Option("response_format", ("--response-format",), Choice("url", "b64_json"),
           "how images come back", metavar="R", endpoint="both"),
    Option("background", ("--background",), Choice("transparent", "opaque", "auto"),
           "background", metavar="B", endpoint="both"),
    Option("moderation", ("--moderation",), Choice("low", "auto"), "moderation level", metavar="M"),
    Option("partial_images", ("--partial-images",), Number(0, 3, whole=True),
           "streamed previews", metavar="K"),
    Option("seed", ("--seed",), Number(-1, 2147483647, whole=True), "seed (some providers)",
           metavar="S"),
    Option("aspect_ratio", ("--aspect-ratio",), Text(), "provider field, e.g. 16:9",
           metavar="R", endpoint="both"),
    Option("resolution", ("--resolution",), Text(), "provider field, e.g. 2K", metavar="R",
           endpoint="both"),
    Option("guidance_scale", ("--guidance-scale",), Number(1, 10), "provider field", metavar="G"),
    Option("watermark", ("--watermark",), Boolean(), "provider field", metavar="B"),
    Option("image", ("--image",), ImageSource(),
           "input image, sent as a data: URL; at most max_input_image_bytes", metavar="FILE"),
    Option("sequential_image_generation", ("--sequential-image-generation",), Text(),
           "provider field", metavar="V"),
    Option("sequential_image_generation_options", ("--sequential-image-generation-options",),
           JsonObject(), "provider field", metavar="JSON"),
    Option("optimize_prompt_options", ("--optimize-prompt-options",), JsonObject(),
           "provider field", metavar="JSON"),
    # -- edits: /v1/images/edits
    Option("operation", ("--operation",), Choice(*OPERATIONS), "what an edit does (default "
           "edit)", metavar="OP", endpoint="edits"),
    Option("upscale_factor", ("--upscale-factor",), Factor(1, 8), "how much upscale enlarges",
           metavar="X", endpoint="edits"),
    Option("expand_factor", ("--expand-factor",), Number(1, 4), "how much outpaint enlarges "
           "the canvas", metavar="X", endpoint="edits"),
    Option("mask_feather", ("--mask-feather",), Number(0, 256, whole=True), "soften the "
           "mask's edge by this many pixels", metavar="PX", endpoint="edits"),
    Option("quality_tier", ("--quality-tier",), Text(), "provider field of edits",
           metavar="T", endpoint="edits"),
    # -- settings of the cell
    Option("edit", ("--edit",), Text(), f"edit this image: a result (all its images), one "
           f"image, PIL image, bytes, a path or a data: URL; repeatable, at most {MAX_INPUTS}",
           request_field=False, metavar="SOURCE"),
    Option("mask", ("--mask",), Text(), "with --edit: a PNG with an alpha channel at the first "
           "image's size; transparent pixels mark what to change", request_field=False,
           metavar="SOURCE"),
    Option("stream", ("--stream",), None, "SSE streaming (the default)", request_field=False),
    Option("stream", ("--no-stream",), None, "plain request instead of SSE streaming",
           request_field=False, flag_value=False),
    Option("param", ("-p", "--param"), Text(),
           "KEY=VALUE: any other request field; VALUE parsed as JSON when it parses, "
           "else a string; repeatable", request_field=False, metavar="KEY=VALUE"),
    Option("out", ("-o", "--out"), Identifier(), "bind the result to this variable",
           request_field=False, metavar="NAME"),
    Option("no_display", ("--no-display",), None, "bind, show no images", request_field=False),
    Option("base_url", ("--base-url",), BaseUrl(),
           "API base URL; local = the embedded backend; default $MESHAPI_BASE_URL, "
           "else https://api.meshapi.ai", request_field=False, config=True, optional=True,
           metavar="URL"),
    Option("timeout", ("--timeout",), SECONDS, "give up after this many seconds (default: "
           "total_timeout per request)", request_field=False, config=True,
           optional=True, metavar="SECONDS"),
    Option("prompts", ("--prompts",), Identifier(), "sweep over a list of prompts from a "
           "variable", request_field=False, metavar="NAME"),
    Option("concurrency", ("--concurrency",), Number(1, 32, whole=True), "requests at a time "
           "per API host in a sweep", request_field=False, config=True, default=4,
           metavar="K"),
    Option("yes", ("--yes",), None, "allow a cell to make more than max_images_per_cell "
           "images", request_field=False),
    Option("replay", ("--replay",), None, "answer an identical earlier request from the store, "
           "with no request", request_field=False, config=True, default=False),
    Option("fresh", ("--fresh",), None, "generate anew even when replay is on",
           request_field=False),
    Option("save", ("--save",), Text(), "save the images (with their provenance) into DIR "
           "when the cell ends", request_field=False, metavar="DIR"),
    Option("bg", ("--bg",), None, "run in the background: the cell returns at once, the "
           "images land in its output; -o NAME binds a Generation handle", request_field=False),
    Option("dry_run", ("--dry-run",), None, "show the request that would be sent; send nothing",
           request_field=False),
    Option("jobs", ("--jobs",), None, "list running and recent background runs",
           request_field=False),
    Option("wait", ("--wait",), None, "wait for every background run (an interrupt stops the "
           "wait, not the runs)", request_field=False),
    Option("history", ("--history",), None, "show the latest stored generations (the rest "
           "of the line filters them)", request_field=False),
    Option("usage", ("--usage",), None, "this session's requests, images, replays, usage and "
           "estimated cost", request_field=False),
    Option("form", ("--form",), None, "an interactive form that writes the cell for you",
           request_field=False),
    Option("list_models", ("--list-models",), None,
           "list the image models (with -o NAME: bind the list)", request_field=False),
    # -- configuration only
    Option("read_timeout", (), SECONDS, "fail when a stream sends nothing, not even a ping, "
           "this long", request_field=False, config=True, default=120.0),
    Option("max_retries", (), Number(0, 10, whole=True),
           "retries of connections that failed before sending, of 429, and of 503 with "
           "Retry-After", request_field=False,
           config=True, default=2),
    Option("max_retry_wait", (), Number(0, unit="seconds"), "longest wait between retries, even if "
           "Retry-After asks more", request_field=False, config=True, default=60.0),
    Option("retry_backoff", (), Number(0, unit="seconds"), "the first retry's wait when the "
           "server names none; each later one doubles it (with jitter)", request_field=False,
           config=True, default=0.5),
    Option("max_image_bytes", (), Number(1, whole=True),
           "largest image fetched from a remote URL, in bytes", request_field=False,
           config=True, default=64 * 1024 * 1024),
    Option("max_response_mb", (), Number(0, above=True, unit="MB"),
           "cap on one response (and on a fetched image), in MB; not set: derived from the "
           "request (n x size, previews) with a generous margin", request_field=False,
           config=True, optional=True),
    Option("idle_timeout", (), SECONDS, "fail when a stream completes no event (a ping "
           "counts) for this long", request_field=False, config=True, default=60.0),
    Option("total_timeout", (), SECONDS, "fail when one request takes longer than this, "
           "from sending it to its last byte", request_field=False, config=True,
           default=600.0),
    Option("max_input_image_bytes", (), Number(1, whole=True),
           "largest --image file sent, in bytes", request_field=False, config=True,
           default=20 * 1024 * 1024),
    Option("preview_max_px", (), Number(0, whole=True),
           "long side of inline previews; 0 = full size (grid tiles stay at most 640 px)",
           request_field=False, config=True, default=1024),
    Option("progress", (), Choice("auto", "widget", "text", "none"), "progress display",
           request_field=False, config=True, default="auto"),
    Option("allow_insecure_http", (), Boolean(), "allow http:// to a non-loopback host "
           "(sends the key unencrypted)", request_field=False, config=True, default=False),
    Option("max_images_per_cell", (), Number(1, whole=True), "a cell that would make more "
           "images fails before sending anything, unless --yes", request_field=False,
           config=True, default=40),
    Option("store", (), Boolean(), "keep every finished generation in the local store",
           request_field=False, config=True, default=True),
    Option("store_dir", (), Text(), "the store's folder; default $MESH_MAGICS_STORE, else "
           "$XDG_CACHE_HOME/mesh-magics, else ~/.cache/mesh-magics", request_field=False,
           config=True, optional=True),
    Option("store_max_bytes", (), Number(1, whole=True), "the store's size cap; the oldest "
           "generations go first", request_field=False, config=True, default=2 * 1024**3),
    Option("embed_prompt", (), Boolean(), "write the prompt into saved files' metadata",
           request_field=False, config=True, default=True),
)  # fmt: skip

BY_FLAG: dict[str, Option] = {flag: option for option in OPTIONS for flag in option.flags}
REQUEST_FIELDS: dict[str, Option] = {o.dest: o for o in OPTIONS if o.request_field}
SETTINGS: dict[str, Option] = {o.dest: o for o in OPTIONS if o.config}


def check(option: Option, value: Any, *, source: str | None = None) -> Any:
    """`value` converted by `option`'s kind, or an `OptionError` that says, in one line,
    where it came from (`source`, default the option's flag), the value and what is
    allowed."""
    if value is None and option.optional:
        return None
    kind = setting_kind(option)
    try:
        return kind.convert(value)
    except ValueError as exc:
        raise OptionError(f"{source or option.flag}: invalid value {value!r}; {exc}") from None


# -- help, derived ----------------------------------------------------------------------------


def check_image_count(images: int, runs: int, config: Mapping[str, Any], *, allow: bool) -> None:
    """More than `max_images_per_cell` images (`-n` times the runs: `-n 3` over two
    models is 6) is an error before anything is sent, unless `allow` (`--yes`)."""
    limit = config["max_images_per_cell"]
    if images > limit and not allow:
        runs_text = f" in {runs} runs" if runs != 1 else ""
        raise OptionError(
            f"this would make {images} images{runs_text}, more than "
            f"MeshImageMagics.max_images_per_cell ({limit}); add --yes to go ahead"
        )


def setting_kind(option: Option) -> Kind:
    """The kind of value `option` takes; a flag that is also a setting takes true/false."""
    if option.kind is not None:
        return option.kind
    if option.config:
        return _BOOLEAN
    raise AssertionError(f"{option.flag} takes no value")


_BOOLEAN = Boolean()


def _allowed(option: Option) -> str:
    if option.kind is None and not option.config:
        return ""
    return setting_kind(option).allowed


def magic_help() -> str:
    """The body of `%meshimage?`: every option, from the table."""
    lines = [
        "Generate images: `%%meshimage [options]`, then option lines, then the prompt.",
        "",
        "Options go on the magic line, or on lines starting with `-` at the top of the cell;",
        "a line `--` ends them. `# ...` is a comment. `{name}` in the prompt is filled from",
        "your variables; `{{` and `}}` are braces. `%meshimage [options] PROMPT` is the",
        "one-line form.",
        "",
    ]
    for option in OPTIONS:
        if not option.flags:
            continue
        value = f" {option.metavar}" if option.kind is not None else ""
        allowed = f" ({_allowed(option)})" if option.kind and option.kind.allowed else ""
        lines.append(f"  {', '.join(option.flags)}{value}: {option.help}{allowed}")
    lines += ["", "Configuration: %config MeshImageMagics.<name> = value"]
    lines += [f"  {o.dest}: {o.help} ({_allowed(o)})" for o in OPTIONS if o.config]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table() -> str:
    """The README's table of options, in Markdown."""
    rows = ["| option | meaning | allowed |", "|---|---|---|"]
    for option in OPTIONS:
        if not option.flags:
            continue
        value = f" {option.metavar}" if option.kind is not None else ""
        flags = ", ".join(
            f"`{flag}{value if i == 0 else ''}`" for i, flag in enumerate(option.flags)
        )
        meaning = option.help + (f" (`{option.dest}`)" if option.request_field else "")
        rows.append(f"| {flags} | {_cell(meaning)} | {_cell(_allowed(option))} |")
    return "\n".join(rows)


def config_table(defaults: Mapping[str, Any]) -> str:
    """The README's table of `MeshImageMagics` settings, in Markdown."""
    rows = ["| setting | default | meaning | allowed |", "|---|---|---|---|"]
    for option in OPTIONS:
        if option.config:
            default = "not set" if defaults.get(option.dest) is None else defaults[option.dest]
            rows.append(
                f"| `{option.dest}` | `{default}` | {_cell(option.help)} | "
                f"{_cell(_allowed(option))} |"
            )
    return "\n".join(rows)
