"""The options and settings of `%%meshimage`, declared once as data.

Each `Option` names its flags, the kind of value it takes (choices or a range), its help
text, whether it is a request field (sent in the body) or a setting of the cell, and
whether `MeshImageMagics` has a configurable default of the same name. From this one table
come the cell parser (`options.py`), the `%config` validation (`magic.py`), the magic's
docstring, the form's fields and the reference, docs/reference.md (written by
`scripts/reference.py`; `tests/test_docs.py` checks it is current), so they cannot drift
apart.

The kinds of values (value_kinds.py) convert what the user gave (the text of a cell, or a
Python value from `%config`) into the value to use, or raise `ValueError` with what is
allowed. `check()` turns that into the one message every front end shows: `SOURCE:
invalid value V; allowed: ...`.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import OptionError
from .redact import clip
from .value_kinds import (
    BaseUrl,
    Binding,
    Boolean,
    Choice,
    Factor,
    ImageSource,
    JsonObject,
    Kind,
    Number,
    Size,
    Text,
)
from .wording import plural

# The fields a sweep takes comma lists of, in the order they make columns and labels.
SWEEPABLE = ("model", "size", "quality", "seed", "output_format", "background", "moderation")
# Of those, the ones whose values read alone in a label ("openai/gpt-image-1 · 1024x1024 ·
# png"); the others read as "seed 1", "quality high".
READ_BARE = ("model", "size", "output_format")

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
_SOURCE = (
    "a variable holding a result, one of its images (fox[0]), a PIL image, bytes or a "
    "finished background run; else a file path or a data: URL"
)

OPTIONS: tuple[Option, ...] = (
    # -- request fields
    Option("model", ("--model", "-m"), Text("a model id: provider/name"),
           "model id; default openai/gpt-image-1", config=True, default="openai/gpt-image-1",
           metavar="M", endpoint="both"),
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
           JsonObject(), 'provider field, e.g. {"max_images": 3}', metavar="JSON"),
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
    Option("edit", ("--edit",), Text(_SOURCE), f"edit this image; repeatable, at most "
           f"{MAX_INPUTS}: the first is edited, the others go as references",
           request_field=False, metavar="SOURCE"),
    Option("mask", ("--mask",), Text(_SOURCE), "with --edit: an image with an alpha channel at "
           "the first image's size; its transparent pixels mark what to change",
           request_field=False, metavar="SOURCE"),
    Option("stream", ("--stream",), None, "SSE streaming (the default)", request_field=False),
    Option("stream", ("--no-stream",), None, "plain request instead of SSE streaming",
           request_field=False, flag_value=False),
    Option("param", ("-p", "--param"),
           Text("KEY=VALUE; VALUE parsed as JSON when it parses, else a string"),
           "any other request field; repeatable", request_field=False, metavar="KEY=VALUE"),
    Option("out", ("-o", "--out"), Binding(), "bind the result to this variable",
           request_field=False, metavar="NAME"),
    Option("no_display", ("--no-display",), None, "bind, show no images", request_field=False),
    Option("base_url", ("--base-url",), BaseUrl(),
           "API base URL; local = the embedded backend; default $MESHAPI_BASE_URL, "
           "else https://api.meshapi.ai", request_field=False, config=True, optional=True,
           metavar="URL"),
    Option("timeout", ("--timeout",), SECONDS, "give up after this many seconds (default: "
           "total_timeout per request)", request_field=False, config=True,
           optional=True, metavar="SECONDS"),
    Option("prompts", ("--prompts",), Text("a variable name, or a .txt, .csv or .jsonl file"),
           "sweep over the prompts (a list) or the rows (a table: a list of dicts, a "
           "DataFrame) of a variable, or of a file: .txt one prompt a line, .csv and .jsonl "
           "columns are fields; options apply to every row, a row's own value wins",
           request_field=False, metavar="NAME|FILE"),
    Option("preset", ("--preset",), Text("a preset's name"), "fields from "
           "[tool.mesh-magics.presets.NAME] in the nearest pyproject.toml, else [NAME] in "
           "~/.config/mesh-magics/presets.toml; the options given win",
           request_field=False, metavar="NAME"),
    Option("concurrency", ("--concurrency",), Number(1, 32, whole=True), "requests at a time "
           "per API host in a sweep", request_field=False, config=True, default=4,
           metavar="K"),
    Option("yes", ("--yes",), None, "allow a cell to make more than max_images_per_cell "
           "images", request_field=False),
    Option("replay", ("--replay",), None, "answer an identical earlier request from the store, "
           "with no request", request_field=False, config=True, default=False),
    Option("fresh", ("--fresh",), None, "generate anew even when replay is on",
           request_field=False),
    Option("save", ("--save",), Text("a folder path"), "save the images (with their "
           "provenance) into DIR when the cell ends", request_field=False, metavar="DIR"),
    Option("bg", ("--bg",), None, "run in the background: the cell returns at once, the "
           "images land in its output; -o NAME binds a Generation handle", request_field=False),
    Option("dry_run", ("--dry-run",), None, "show the request that would be sent; send nothing",
           request_field=False),
    Option("batch", ("--batch",), None, "send the runs through the Batch API (half price, done "
           "within 24 h): -o NAME binds a batch handle; the same cell run again attaches to it",
           request_field=False),
    # The commands moved to %mesh; these flags only say where (ipython/commands.py).
    Option("jobs", ("--jobs",), None, "moved: %mesh jobs", request_field=False),
    Option("wait", ("--wait",), None, "moved: %mesh wait", request_field=False),
    Option("history", ("--history",), None, "moved: %mesh history", request_field=False),
    Option("usage", ("--usage",), None, "moved: %mesh usage", request_field=False),
    Option("form", ("--form",), None, "moved: %mesh form", request_field=False),
    Option("list_models", ("--list-models",), None, "moved: %mesh models", request_field=False),
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
           "largest input image sent (--image, --edit, --mask), in bytes", request_field=False,
           config=True, default=20 * 1024 * 1024),
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
    Option("store_dir", (), Text("a folder path"), "the store's folder; default "
           "$MESH_MAGICS_STORE, else $XDG_CACHE_HOME/mesh-magics, else ~/.cache/mesh-magics",
           request_field=False, config=True, optional=True),
    Option("store_max_bytes", (), Number(1, whole=True), "the store's size cap; the oldest "
           "generations go first", request_field=False, config=True, default=2 * 1024**3),
    Option("embed_prompt", (), Boolean(), "write the prompt into saved files' metadata",
           request_field=False, config=True, default=True),
)  # fmt: skip

BY_FLAG: dict[str, Option] = {flag: option for option in OPTIONS for flag in option.flags}
# `-p stream=false` in a cell, `stream=False` in the function API (`--no-stream`'s value).
STREAM = Option("stream", (), Boolean(), "SSE streaming; false: one plain request",
                request_field=False)  # fmt: skip
REQUEST_FIELDS: dict[str, Option] = {o.dest: o for o in OPTIONS if o.request_field}
SETTINGS: dict[str, Option] = {o.dest: o for o in OPTIONS if o.config}


# -- values that cannot go together ---------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Two values one run cannot have together, and why: each a (dest, value) pair, where
    the value of a flag is True."""

    first: tuple[str, Any]
    second: tuple[str, Any]
    why: str


CONFLICTS: tuple[Conflict, ...] = (
    Conflict(("replay", True), ("fresh", True), "one answers from the store, the other asks "
             "anew; give one"),
    Conflict(("background", "transparent"), ("output_format", "jpeg"), "jpeg has no alpha "
             "channel, so nothing could be transparent; use png or webp"),
)  # fmt: skip


def check_conflicts(values: Mapping[str, Any], *, as_flags: bool) -> None:
    """An `OptionError` naming both values when `values` (fields and settings, by dest)
    hold a pair of `CONFLICTS`. `as_flags`: name them as a cell writes them
    (`--output-format jpeg`), else as keyword arguments (`output_format='jpeg'`)."""
    for conflict in CONFLICTS:
        if all(values.get(dest) == value for dest, value in (conflict.first, conflict.second)):
            first, second = (
                _spelled(*pair, as_flags) for pair in (conflict.first, conflict.second)
            )
            raise OptionError(f"{first} and {second} conflict: {conflict.why}")


def _spelled(dest: str, value: Any, as_flags: bool) -> str:
    if not as_flags:
        return f"{dest}={value!r}"
    flag = next(o.flags[0] for o in OPTIONS if o.dest == dest and o.flags)
    return flag if value is True else f"{flag} {value}"


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
        raise OptionError(f"{source or option.flag}: invalid value {shown(value)}; {exc}") from None


def shown(value: Any) -> str:
    """`value` as a message shows it: a short, shallow repr (a value may be megabytes long
    or nested 100,000 deep, and the message is one line)."""
    return clip(reprlib.repr(value), 80)


# -- help, derived ----------------------------------------------------------------------------


def prompt_problem(prompt: Any, operation: str | None = None) -> str | None:
    """The one prompt rule: what is wrong with `prompt` (None: nothing). Every run needs
    text to draw; an edit whose `operation` is one of `PROMPTLESS` may leave it empty."""
    if operation in PROMPTLESS and prompt in ("", None):
        return None
    if not isinstance(prompt, str) or not prompt.strip():
        if operation is not None:
            return (
                f"no prompt: an edit with operation {operation} needs one (say what to "
                f"change); {', '.join(sorted(PROMPTLESS))} do not"
            )
        return "no prompt: write what to draw"
    return None


def check_prompt(prompt: Any, operation: str | None = None, *, where: str = "") -> str:
    """`prompt`, or an `OptionError` with `prompt_problem`'s message (and `where` the user
    should write it)."""
    problem = prompt_problem(prompt, operation)
    if problem is not None:
        raise OptionError(f"{problem}{where}" if operation is None else problem)
    return prompt if isinstance(prompt, str) else ""


def check_image_count(images: int, runs: int, config: Mapping[str, Any], *, allow: bool) -> None:
    """More than `max_images_per_cell` images (`-n` times the runs: `-n 3` over two
    models is 6) is an error before anything is sent, unless `allow` (`--yes`)."""
    limit = config["max_images_per_cell"]
    if images > limit and not allow:
        runs_text = f" in {plural(runs, 'run')}" if runs != 1 else ""
        raise OptionError(
            f"this would make {plural(images, 'image')}{runs_text}, more than "
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


def allowed_text(option: Option, *, as_setting: bool = False) -> str:
    """What `option` takes, for help and docs: empty for a flag, which takes no value; as a
    setting (`%config`), a flag that is also a setting takes true or false."""
    if option.kind is None and not as_setting:
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
        "one-line form; there a word starting with `#` among the options begins a comment",
        "(`%meshimage -o fox  # note`), and `--` goes before a prompt that starts with `#`.",
        "",
    ]
    for option in OPTIONS:
        if not option.flags:
            continue
        value = f" {option.metavar}" if option.kind is not None else ""
        allowed = f" ({allowed_text(option)})" if allowed_text(option) else ""
        lines.append(f"  {', '.join(option.flags)}{value}: {option.help}{allowed}")
    lines += ["", "Configuration: %config MeshImageMagics.<name> = value"]
    settings = [o for o in OPTIONS if o.config]
    lines += [f"  {o.dest}: {o.help} ({allowed_text(o, as_setting=True)})" for o in settings]
    return "\n".join(lines)
