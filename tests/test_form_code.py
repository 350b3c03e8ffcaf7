"""The form's state and its cell: `to_cell` writes the exact `%%meshimage` cell, and
`from_cell` reads it back through `parse_cell`, over the whole schema (property tests), and
the edges of the cell grammar (unit tests).

What a cell cannot hold (`to_cell` refuses it, and the strategies leave it out): an empty
or whitespace-only prompt, a prompt line whose first non-blank character is `#` (always a
comment), a prompt line `---` (a sweep's divider), and a line break inside a value. What a
cell normalises (the strategies generate normalised prompts, as `normal_prompt` does):
every line break becomes `\\n`, blank lines at the prompt's edges go. NUL and every other
character are fine.
"""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mesh_magics.cell import CellOptions, parse_cell
from mesh_magics.errors import OptionError
from mesh_magics.forms import (
    MAIN_FIELDS,
    MORE_FIELDS,
    FormState,
    field_choices,
    field_help,
    field_problem,
    field_value,
    from_cell,
    normal_prompt,
    prompt_problem,
    to_cell,
)
from mesh_magics.forms.code import LINE_BREAKS
from mesh_magics.schema import BY_FLAG, REQUEST_FIELDS, SWEEPABLE, Option, check, check_conflicts
from mesh_magics.value_kinds import (
    Boolean,
    Choice,
    ImageSource,
    JsonObject,
    Number,
    Size,
    Text,
    shadowed,
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------

# Characters a cell treats specially, mixed into the text strategies.
SPECIAL = st.sampled_from(list(" \t'\"\\-#{}=,;$&|*?~`!()[]<>%\x00\xa0é漢🦊"))
TEXT = st.text(st.one_of(SPECIAL, st.characters()), max_size=24)


def one_line(text: str) -> bool:
    return not LINE_BREAKS.intersection(text)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=4,
)


def typed(kind: Any) -> st.SearchStrategy[Any]:
    """Values a user may give for `kind` (text as typed, or Python values), all valid."""
    if isinstance(kind, Choice):
        names = st.sampled_from([*kind.values, *kind.aliases])
        return names.flatmap(lambda v: st.sampled_from([v, v.upper(), f" {v.title()} "]))
    if isinstance(kind, Number):
        if kind.whole:
            high = int(min(kind.high, 2**40))
            low = int(kind.low) + (1 if kind.above else 0)
            numbers: st.SearchStrategy[Any] = st.integers(low, high)
        else:
            high_f = min(kind.high, 1e12)
            numbers = st.floats(
                kind.low, high_f, allow_nan=False, allow_infinity=False, exclude_min=kind.above
            )
        return numbers | numbers.map(str)
    if isinstance(kind, Size):
        sizes = st.builds("{}x{}".format, st.integers(1, 99999), st.integers(1, 99999))
        padded = st.builds("0{}X{}".format, st.integers(1, 9999), st.integers(1, 99999))
        return st.just("auto") | st.just(" AUTO") | sizes | padded
    if isinstance(kind, Boolean):
        return st.booleans() | st.sampled_from(["yes", "Off", " 1", "TRUE"])
    if isinstance(kind, JsonObject):
        return st.dictionaries(TEXT, JSON_VALUES, max_size=3)
    if isinstance(kind, ImageSource):
        paths = TEXT.filter(
            lambda t: one_line(t) and t.strip() and not t.strip().startswith(("[", "http"))
        )
        urls = st.lists(st.just("data:image/png;base64,iVBORw0KGgo="), min_size=1, max_size=2)
        return paths | urls.map(json.dumps)
    if isinstance(kind, Text):
        return TEXT.filter(lambda t: one_line(t) and bool(t.strip()))
    raise AssertionError(f"no strategy for {kind!r}")


def converted(option: Option) -> st.SearchStrategy[Any]:
    return typed(option.kind).map(lambda value: check(option, value))


SHOWN = (*MAIN_FIELDS, *MORE_FIELDS, "image")
PARAM_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: k not in REQUEST_FIELDS and k not in ("prompt", "stream")
)
PARAMS = st.dictionaries(PARAM_KEYS, JSON_VALUES, max_size=2)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: shadowed(n) is None  # -o refuses the others
)
BASE_URLS = st.just("local") | st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9.:-]{1,20}", fullmatch=True),
    TEXT.filter(one_line),
).map(str.strip)
PROMPTS = (
    st.one_of(TEXT, st.lists(TEXT, max_size=4).map("\n".join), st.text())
    .map(normal_prompt)
    .filter(lambda p: prompt_problem(p) is None)
)


@st.composite
def states(draw: st.DrawFn) -> FormState:
    names = draw(st.lists(st.sampled_from(SHOWN), unique=True, max_size=7))
    fields = {name: draw(converted(REQUEST_FIELDS[name])) for name in names}
    fields.update(draw(PARAMS))
    assume(not conflicting(fields))  # a cell refuses these (schema.CONFLICTS)
    return FormState(
        prompt=draw(PROMPTS),
        fields=fields,
        out=draw(st.none() | NAMES),
        base_url=draw(st.none() | BASE_URLS),
    )


def conflicting(fields: dict[str, Any]) -> bool:
    try:
        check_conflicts(fields, as_flags=True)
    except OptionError:
        return True
    return False


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@st.composite
def option_words(draw: st.DrawFn, dest: str, value: Any) -> str:
    """`value` for `dest` written as a user might: any flag, `--flag=V`, `-nV`, quoted.
    Only the value is quoted: a line starting with a quote is not an option line."""
    option = REQUEST_FIELDS.get(dest)
    if option is None:
        text = value if isinstance(value, str) and _plain(value) else json.dumps(value)
        return f"{draw(st.sampled_from(['-p', '--param']))} {shlex.quote(f'{dest}={text}')}"
    text = value_text(value)
    if dest in SWEEPABLE and "," in text:
        return f"-p {shlex.quote(f'{dest}={text}')}"
    flag = draw(st.sampled_from(option.flags))
    style = draw(st.sampled_from(["space", "equals", "attached"]))
    if style == "equals" and flag.startswith("--"):
        return f"{flag}={shlex.quote(text)}"
    attached = f"{flag}{text}"
    if (
        style == "attached"
        and len(flag) == 2
        and not text.startswith("=")
        and f"-{attached.partition('=')[0]}" not in BY_FLAG
    ):
        return f"{flag}{shlex.quote(text)}"
    return f"{flag} {shlex.quote(text)}"


def _plain(value: str) -> bool:
    if not value or value.lstrip()[:1] in "{[" or not one_line(value):
        return False
    try:
        json.loads(value)
    except ValueError:
        return True
    return False


COMMENTS = st.sampled_from(["# a comment", "   # indented", "#", "# --size 9x9"])


@st.composite
def cells(draw: st.DrawFn) -> str:
    """Valid cells for a state, written every way the grammar allows: options on the magic
    line or on option lines (several to a line), aliases, `--flag=V`, `-n3`, inline and
    whole-line comments, blank lines, earlier values the last one overrides, `--` lines,
    comment lines inside the prompt."""
    state = draw(states())
    items: list[str] = []
    for dest, value in state.fields.items():
        option = REQUEST_FIELDS.get(dest)
        if option is not None and draw(st.booleans()):  # an earlier value, overridden
            items.append(draw(option_words(dest, draw(converted(option)))))
        items.append(draw(option_words(dest, value)))
    if state.out is not None:
        items.append(draw(st.sampled_from([f"-o {state.out}", f"--out={state.out}"])))
    if state.base_url is not None:
        items.append(f"--base-url {shlex.quote(state.base_url)}")
    on_magic = draw(st.integers(0, len(items)))
    magic = " ".join(["%%meshimage", *items[:on_magic]])
    if draw(st.booleans()):
        magic += "  # the magic line"
    lines = [magic]
    rest = items[on_magic:]
    while rest:
        take = draw(st.integers(1, len(rest)))
        line = " ".join(rest[:take])
        rest = rest[take:]
        if draw(st.booleans()):
            line += "  # why"
        lines += draw(st.lists(COMMENTS | st.just(""), max_size=2))
        lines.append(draw(st.sampled_from(["", "  "])) + line)
    prompt_lines = state.prompt.replace("{", "{{").replace("}", "}}").split("\n")
    if prompt_lines[0].strip().startswith("-") or draw(st.booleans()):
        lines += draw(st.lists(COMMENTS | st.just(""), max_size=2))
        lines.append("--")
    for line in prompt_lines:
        lines += draw(st.lists(COMMENTS, max_size=1))
        lines.append(line)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n# the end\n"]))


def parsed(cell: str) -> CellOptions:
    line, _, body = cell.removeprefix("%%meshimage").partition("\n")
    return parse_cell(line, body, {})


def same_request(a: CellOptions, b: CellOptions) -> None:
    assert (a.prompt, a.fields, a.out, a.base_url) == (b.prompt, b.fields, b.out, b.base_url)
    assert not a.is_sweep and not b.is_sweep


# -- properties -----------------------------------------------------------------------------


@PROPERTY
@given(states())
def test_any_state_reads_back_from_its_cell_and_the_cell_is_stable(state: FormState) -> None:
    cell = to_cell(state)
    assert from_cell(cell) == state
    assert parsed(cell).prompt == state.prompt
    assert to_cell(from_cell(cell)) == cell


@PROPERTY
@given(cells())
def test_any_cell_written_back_is_the_same_request(cell: str) -> None:
    written = to_cell(from_cell(cell))
    same_request(parsed(written), parsed(cell))
    assert to_cell(from_cell(written)) == written  # stable from any cell, too


@st.composite
def field_texts(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(SHOWN))
    option = REQUEST_FIELDS[name]
    anything = TEXT | typed(option.kind).map(value_text)
    text = draw(anything.filter(lambda t: one_line(t) and bool(t.strip())))
    if name in SWEEPABLE:
        text = text.replace(",", "")  # a comma makes a sweep in a cell
    return name, text


@PROPERTY
@given(field_texts())
def test_field_problem_is_the_cells_message(name_text: tuple[str, str]) -> None:
    name, text = name_text
    if not text.strip():
        return
    flag = REQUEST_FIELDS[name].flag
    try:
        parse_cell("", f"{flag} {shlex.quote(text)}\na fox", {})
    except OptionError as exc:
        message: str | None = str(exc)
    else:
        message = None
    assert field_problem(name, text) == message


# -- the interface --------------------------------------------------------------------------


def test_the_fields_cover_the_request_fields_in_schema_order() -> None:
    assert MAIN_FIELDS == ("model", "size", "quality", "n", "output_format", "background", "seed")
    edits_only = {name for name, option in REQUEST_FIELDS.items() if not option.for_generations}
    assert edits_only == {
        "operation",
        "upscale_factor",
        "expand_factor",
        "mask_feather",
        "quality_tier",
    }
    assert set(MAIN_FIELDS) | set(MORE_FIELDS) | {"image"} | edits_only == set(REQUEST_FIELDS)
    order = list(REQUEST_FIELDS)
    assert list(MORE_FIELDS) == sorted(MORE_FIELDS, key=order.index)
    assert "image" not in MORE_FIELDS


def test_choices_help_and_values() -> None:
    assert field_choices("quality") == ("auto", "low", "medium", "high", "hd", "standard")
    assert field_choices("output_format") == ("png", "jpeg", "webp")
    assert field_choices("size") is None and field_choices("model") is None
    assert field_help("size").startswith("image size (auto or WIDTHxHEIGHT")
    assert field_help("n") == "number of images (a whole number 1 to 10)"
    assert field_value("output_format", "JPG") == "jpeg"
    assert field_value("n", "3") == 3 and field_value("n", "  ") is None
    with pytest.raises(KeyError, match="nope"):
        field_help("nope")


def test_field_problems() -> None:
    assert field_problem("size", None) is None and field_problem("size", "") is None
    assert field_problem("size", "1024x1024") is None
    assert field_problem("size", "big") == (
        "--size: invalid value 'big'; allowed: auto or WIDTHxHEIGHT, e.g. 1024x1024, 1536x1024"
    )
    # a number widget's value: the same message, with the value as given
    assert field_problem("n", 11) == "-n: invalid value 11; allowed: 1 to 10"
    assert field_problem("seed", 1.5) == (
        "--seed: invalid value 1.5; expected a whole number -1 to 2147483647"
    )
    assert field_problem("guidance_scale", math.nan) is not None


# -- writing cells --------------------------------------------------------------------------


def test_a_cell_as_written() -> None:
    state = FormState(
        prompt="-a fox {in} 'the' \"snow\"\n\n  indented",
        fields={
            "seed": 7,
            "size": "1024x1024",
            "model": "openai/gpt-image-1",
            "guidance_scale": 4,
            "style": "vivid",
            "extra": {"a": 1},
        },
        out="fox",
        base_url="local",
    )
    assert to_cell(state) == (
        "%%meshimage -o fox --base-url local\n"
        "--model openai/gpt-image-1\n"
        "--size 1024x1024\n"
        "--seed 7\n"
        "--guidance-scale 4.0\n"
        "-p style=vivid\n"
        "-p 'extra={\"a\": 1}'\n"
        "--\n"
        "-a fox {{in}} 'the' \"snow\"\n\n  indented"
    )


def test_values_are_quoted_and_normalised() -> None:
    state = FormState(
        "a fox",
        {
            "model": "my model, 'v2' # best",
            "aspect_ratio": "-16:9",
            "output_format": "JPG",
            "watermark": "no",
            "resolution": "#2K",
        },
    )
    cell = to_cell(state)
    assert "-p 'model=my model, '\"'\"'v2'\"'\"' # best'" in cell  # a comma: not a sweep
    assert "--aspect-ratio -16:9" in cell and "--resolution '#2K'" in cell
    assert "--output-format jpeg" in cell and "--watermark false" in cell
    back = from_cell(cell)
    assert back.fields["model"] == "my model, 'v2' # best"
    assert back.fields["output_format"] == "jpeg" and back.fields["watermark"] is False
    assert back.fields["resolution"] == "#2K"


def test_string_parameters_that_look_like_json_stay_strings() -> None:
    state = FormState("a fox", {"a": "1", "b": "true", "c": "{x", "d": " x ", "e": "", "f": "a\nb"})
    assert from_cell(to_cell(state)) == state


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "no prompt"),
        (" \n\t\n", "no prompt"),
        ("# title\na fox", "prompt line 1 starts with '#'"),
        ("a fox\n   #2 in the snow", "prompt line 2 starts with '#'"),
        ("a fox\n---\na cat", "prompt line 2 is '---'"),
        ("a fox\n--- \t", "prompt line 2 is '--- \\t'"),
    ],
)
def test_prompts_a_cell_cannot_hold(prompt: str, message: str) -> None:
    assert message in str(prompt_problem(prompt))
    with pytest.raises(OptionError, match=message.replace("'", ".").replace("\\", ".")):
        to_cell(FormState(prompt))


@pytest.mark.parametrize(
    "prompt", ["a #1 fox", "a fox\n---- not a divider", "a fox\n -- x", "--", "{{}}", "\x00"]
)
def test_prompts_a_cell_holds(prompt: str) -> None:
    assert prompt_problem(prompt) is None
    assert from_cell(to_cell(FormState(prompt))).prompt == prompt


def test_prompt_line_breaks_and_edges_are_normalised() -> None:
    text = "\n  \r\na\r\nb\rc\u2028d\x0be  \n\n"
    assert normal_prompt(text) == "a\nb\nc\nd\ne  "
    assert from_cell(to_cell(FormState(text))).prompt == "a\nb\nc\nd\ne  "


@pytest.mark.parametrize("prompt", ["-a fox", "  -a fox", "--", "--size 9x9\nreally"])
def test_a_prompt_starting_with_a_dash_gets_a_double_dash_line(prompt: str) -> None:
    cell = to_cell(FormState(prompt, {"n": 2}))
    assert cell.split("\n")[2] == "--"
    assert from_cell(cell) == FormState(prompt, {"n": 2})


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (FormState("x", {"model": "a\nb"}), "--model: a value cannot hold a line break"),
        (FormState("x", {"model": "a\u2028b"}), "--model: a value cannot hold a line break"),
        (FormState("x", {"size": "huge"}), "--size: invalid value 'huge'"),
        (FormState("x", {"n": 0}), "-n: invalid value 0"),
        (FormState("x", out="not a name"), "-o: invalid value 'not a name'"),
        (FormState("x", base_url="ftp://x"), "--base-url: invalid value 'ftp://x'"),
        (FormState("x", base_url="http://x\ny"), "--base-url: a value cannot hold a line break"),
        (FormState("x", {"bad-key": 1}), "a parameter name"),
        (FormState("x", {"prompt": "y"}), "does not hold 'prompt'"),
        (FormState("x", {"stream": False}), "does not hold 'stream'"),
        (FormState("x", {"k": math.nan}), "not a JSON value"),
        (FormState("x", {"k": (1, 2)}), "not a JSON value"),
        (FormState("x", {"k": {1: 2}}), "not a JSON value"),
        (FormState("x", {"k": {1, 2}}), "not a JSON value"),
        (FormState("x", {"image": "[not json"}), "--image"),
    ],
)
def test_states_a_cell_cannot_hold(state: FormState, message: str) -> None:
    with pytest.raises(OptionError) as caught:
        to_cell(state)
    assert message in str(caught.value)


def test_unset_values_are_left_out() -> None:
    cell = to_cell(FormState("a fox", {"size": None, "model": "  ", "k": None}, out=""))
    assert cell == "%%meshimage\n-p k=null\na fox"  # a parameter's None is JSON null


# -- reading cells --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "%%meshimage -s 512x512 -n3 --format jpg  # small\n# note\n--quality=high\n\nA fox",
        "%%meshimage\n--size 1x1 -s 2x2\n-s 512x512\n--\n-- a fox --\n# dropped\n  indented",
        '-m my/model -p guidance_scale=4 -p \'extra={"a": [1, 2]}\' -p extra2={"b":1}\na {{x}}',
        "%%meshimage --out=fox --base-url https://api.meshapi.ai\n\n\na fox\n\n--size 9x9\n",
        "%%meshimage --no-stream --stream -p stream=true\na fox",
        "%meshimage -n 2 --size=auto -- -a fox 'quoted' {{x}}",
        "%%meshimage -p model=a,b\na fox",
        "   %%meshimage -f webp\na\n\n\nb",
    ],
)
def test_hand_written_cells_round_trip(cell: str) -> None:
    state = from_cell(cell)
    written = to_cell(state)
    if cell.startswith("%meshimage"):
        expected = parse_cell(cell.removeprefix("%meshimage").strip(), None, {})
    else:
        line, _, body = cell.strip(" ").removeprefix("%%meshimage").partition("\n")
        if not cell.strip(" ").startswith("%%"):
            line, body = "", cell
        expected = parse_cell(line, body, {})
    same_request(parsed(written), expected)
    assert from_cell(written) == state


def test_reading_fills_fields_from_the_namespace() -> None:
    state = from_cell("%%meshimage\na {animal} in {{snow}}", {"animal": "fox"})
    assert state.prompt == "a fox in {snow}"
    assert to_cell(state) == "%%meshimage\na fox in {{snow}}"
    with pytest.raises(OptionError, match="no variable 'animal'"):
        from_cell("%%meshimage\na {animal}")


def test_reading_aliases_and_last_wins() -> None:
    state = from_cell("%%meshimage -s 1x1 -n3 --format JPG -q HIGH\n--size 512x512\na fox")
    assert state == FormState(
        "a fox", {"size": "512x512", "n": 3, "output_format": "jpeg", "quality": "high"}
    )


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%meshimage -s 1x1,2x2\na fox", r"this cell is a sweep \(--size lists 2 values\)"),
        ("%%meshimage\na fox\n---\na cat", r"this cell is a sweep \(2 prompts\)"),
        ("%%meshimage --prompts ps", "--prompts"),
        ("%%meshimage --list-models", "--list-models is a command"),
        ("%%meshimage --usage", "--usage is a command"),
        (
            "%%meshimage --timeout 30 --save out --bg\na fox",
            "does not hold --timeout, --bg, --save",
        ),
        ("%%meshimage --no-stream\na fox", "does not hold --no-stream"),
        ("%%meshimage -p stream=false\na fox", "does not hold --no-stream"),
        ("%%meshimage --dry-run --yes\na fox", "does not hold --dry-run, --yes"),
        ("%%meshimage a fox", "takes options only"),
        ("%%meshimage\n", "no prompt"),
        ("%meshimage a fox\nmore", "is one line"),
    ],
)
def test_cells_the_form_does_not_hold(cell: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        from_cell(cell, {"ps": ["a fox"]})


def test_crlf_cells_and_numbers_written_as_they_read_back() -> None:
    state = from_cell("%%meshimage -n 2\r\n--size 1x1\r\n\r\na fox\r\nb\r\n")
    assert state == FormState("a fox\nb", {"n": 2, "size": "1x1"})
    cell = to_cell(FormState("a fox", {"guidance_scale": 4, "seed": 7.0}))
    assert cell == "%%meshimage\n--seed 7\n--guidance-scale 4.0\na fox"
    assert to_cell(from_cell(cell)) == cell
