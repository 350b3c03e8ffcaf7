"""The cell grammar: options on the line and at the top of the cell, comments, prompt,
interpolation, and a clear usage error for every kind of bad input."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics.cell import CellOptions, interpolate, parse_cell
from mesh_magics.errors import OptionError
from mesh_magics.local import LocalServer
from mesh_magics.request import ImageRequest, build_request

from .servers import png_bytes
from .support import refused

PNG_URL = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
DEFAULTS = {"model": "openai/gpt-image-1", "size": "auto", "quality": "auto", "n": 1}


def request_of(options: CellOptions) -> ImageRequest:
    return build_request(options.prompt, options.fields, DEFAULTS, stream=options.stream)


def body(line: str, cell: str | None = None, **namespace: object) -> dict[str, object]:
    return request_of(parse_cell(line, cell, namespace)).body


def usage_error(line: str, cell: str | None = None, **namespace: object) -> str:
    with pytest.raises(OptionError) as caught:
        request_of(parse_cell(line, cell, namespace))
    return str(caught.value)


def test_line_and_option_lines_make_one_request() -> None:
    cell = "--quality high\n# a comment\n\nA watercolor of a fox\nin a snowy forest\n\n"
    sent = body("-o fox --size 1024x1024", cell)
    assert sent == {
        "prompt": "A watercolor of a fox\nin a snowy forest",
        "model": "openai/gpt-image-1",
        "size": "1024x1024",
        "quality": "high",
        "n": 1,
        "stream": True,
    }


def test_cell_settings_are_not_sent() -> None:
    options = parse_cell(
        "-o fox --no-display --timeout 30 --base-url local --no-stream", "a fox", {}
    )
    assert (options.out, options.no_display, options.timeout, options.base_url) == (
        "fox",
        True,
        30.0,
        "local",
    )
    sent = request_of(options).body
    assert sent["stream"] is False
    assert not {"out", "no_display", "timeout", "base_url"} & set(sent)


def test_last_option_wins() -> None:
    assert body("-n 2 --quality low", "-n 3\n--quality=high\nfox")["n"] == 3
    assert body("-n 2 --quality low", "-n 3\n--quality=high\nfox")["quality"] == "high"


@pytest.mark.parametrize(
    ("option", "field", "value"),
    [
        ("--model vertex/imagen-3", "model", "vertex/imagen-3"),
        ("-n 10", "n", 10),
        ("-n3", "n", 3),
        ("--size AUTO", "size", "auto"),
        ("--quality hd", "quality", "hd"),
        ("--format jpg", "output_format", "jpeg"),
        ("--output-format webp", "output_format", "webp"),
        ("--response-format b64_json", "response_format", "b64_json"),
        ("--output-compression 0", "output_compression", 0),
        ("--background transparent", "background", "transparent"),
        ("--moderation low", "moderation", "low"),
        ("--partial-images 3", "partial_images", 3),
        ("--seed -1", "seed", -1),
        ("--seed 2147483647", "seed", 2147483647),
        ("--aspect-ratio 16:9", "aspect_ratio", "16:9"),
        ("--resolution 2K", "resolution", "2K"),
        ("--guidance-scale 7.5", "guidance_scale", 7.5),
        ("--watermark false", "watermark", False),
        ("--sequential-image-generation auto", "sequential_image_generation", "auto"),
        (
            "--sequential-image-generation-options '{\"max_images\": 3}'",
            "sequential_image_generation_options",
            {"max_images": 3},
        ),
        (
            '--optimize-prompt-options \'{"mode": "fast"}\'',
            "optimize_prompt_options",
            {"mode": "fast"},
        ),
        (f"--image {PNG_URL}", "image", PNG_URL),
    ],
)
def test_every_request_field_has_an_option(option: str, field: str, value: object) -> None:
    assert body(option, "a fox")[field] == value


def test_image_option_reads_a_local_file_as_what_its_bytes_are(tmp_path: Path) -> None:
    picture = tmp_path / "named-as-jpeg.jpg"
    picture.write_bytes(png_bytes())
    assert body(f"--image {picture}", "edit")["image"] == PNG_URL


def test_image_option_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    message = usage_error(f"--image {notes}", "edit")
    assert "--image" in message and "notes.txt is not an image" in message
    assert "not an image" in usage_error("--image data:text/plain;base64,aGVsbG8=", "edit")
    assert "base64" in usage_error("--image data:image/png,rawtext", "edit")


def test_an_oversized_input_image_is_refused_before_sending(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + b"\0" * 300_000)
    options = parse_cell(f"--image {big}", "edit", {})
    with pytest.raises(OptionError) as caught:
        build_request(options.prompt, options.fields, {}, max_input_image_bytes=200_000)
    message = str(caught.value)
    size = big.stat().st_size
    assert f"big.png is {size:,} bytes" in message and "200,000 bytes limit" in message
    assert "max_input_image_bytes" in message


def test_param_passes_any_field_parsed_as_json() -> None:
    sent = body("-p style=vivid -p steps=30 -p extra='{\"a\": [1, 2]}' --param flag=true", "x")
    assert (sent["style"], sent["steps"], sent["extra"], sent["flag"]) == (
        "vivid",
        30,
        {"a": [1, 2]},
        True,
    )


def test_param_for_a_known_field_is_validated_like_its_option() -> None:
    assert body("-p quality=HIGH", "x")["quality"] == "high"
    message = usage_error("-p n=11", "x")
    assert "-p n" in message and "11" in message and "1 to 10" in message


@pytest.mark.parametrize(
    ("line", "named", "allowed"),
    [
        ("-n 0", "-n", "1 to 10"),
        ("-n eleven", "-n", "1 to 10"),
        ("--size 1024", "--size", "WIDTHxHEIGHT"),
        ("--size 0x512", "--size", "WIDTHxHEIGHT"),
        ("--quality ultra", "--quality", "auto, low, medium, high, hd, standard"),
        ("--format gif", "--format", "png, jpeg, webp"),
        ("--response-format png", "--response-format", "url, b64_json"),
        ("--output-compression 101", "--output-compression", "0 to 100"),
        ("--background clear", "--background", "transparent, opaque, auto"),
        ("--moderation high", "--moderation", "low, auto"),
        ("--partial-images 4", "--partial-images", "0 to 3"),
        ("--seed -2", "--seed", "-1 to 2147483647"),
        ("--seed 2147483648", "--seed", "-1 to 2147483647"),
        ("--guidance-scale 11", "--guidance-scale", "1 to 10"),
        ("--watermark maybe", "--watermark", "true or false"),
        ("--optimize-prompt-options [1]", "--optimize-prompt-options", "JSON object"),
        ("--image /no/such/file.png", "--image", "existing image file"),
        ("--image https://x.test/a.png", "--image", "remote URLs are refused"),
        ("-o 2fox", "-o", "Python variable name"),
        ("-o class", "-o", "Python variable name"),
        ("--timeout 0", "--timeout", "greater than 0"),
        ("--timeout soon", "--timeout", "seconds"),
        ("--base-url ftp://x", "--base-url", "local, or an http(s) URL"),
        ("-p nokey", "-p", "KEY=VALUE"),
        ("-p prompt=x", "-p prompt", "cell text"),
    ],
)
def test_bad_values_name_the_option_the_value_and_what_is_allowed(
    line: str, named: str, allowed: str
) -> None:
    message = usage_error(line, "a fox")
    assert named in message
    assert allowed in message
    assert len(message) < 200


def test_misspelt_option_suggests_the_right_one() -> None:
    assert "did you mean --quality?" in usage_error("--qualty high", "fox")
    assert "did you mean --no-stream?" in usage_error("", "--no-stram\nfox")
    assert "unknown option --frobnicate" in usage_error("--frobnicate", "fox")


def test_structural_mistakes() -> None:
    assert "needs a value" in usage_error("--size", "fox")
    assert "takes no value" in usage_error("--no-stream=yes", "fox")
    assert "unterminated quote" in usage_error("-p 'style=x", "fox")
    assert "no prompt" in usage_error("-n 2", "--quality high\n# only options\n")
    assert "unexpected 'high'" in usage_error("", "--size 512x512 high\nfox")


def test_line_magic_prompt_is_the_rest_of_the_line() -> None:
    options = parse_cell('-n 2 --size 512x512 a fox\'s "den" -n 3', None, {})
    assert options.prompt == 'a fox\'s "den" -n 3'
    assert options.fields["n"] == 2
    assert parse_cell("-n 2 -- --dashes in the prompt", None, {}).prompt == "--dashes in the prompt"


def test_list_models_needs_no_prompt() -> None:
    assert parse_cell("--list-models", None, {}).list_models


def test_interpolation_uses_format_fields_from_the_namespace() -> None:
    class Animal:
        name = "fox"

    namespace = {"animal": Animal(), "colors": ["red", "blue"], "x": 3.14159, "m": {"k": "v"}}
    text = "{animal.name} in {colors[1]} at {x:.2f} {m[k]} with {{literal braces}} {x!r}"
    assert interpolate(text, namespace) == "fox in blue at 3.14 v with {literal braces} 3.14159"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a {animal} here", "no variable 'animal' is defined"),
        ("a {} here", "variable name"),
        ("a {0} here", "variable name"),
        ("a { broken", "literal braces"),
        ("a } broken", "literal braces"),
        ("a {x.nope}", "could not be filled"),
        ("a {x:%%}", "literal braces"),
    ],
)
def test_interpolation_errors_are_usage_errors(prompt: str, expected: str) -> None:
    assert expected in usage_error("", prompt, x=1)


def test_prompt_braces_without_fields_are_untouched() -> None:
    assert body("", "just {{ kept }}")["prompt"] == "just { kept }"
    assert body("", "no fields at all")["prompt"] == "no fields at all"


# -- fuzzing: any text gives a request or our usage error, never another exception -------

_OPTION_WORDS = st.sampled_from(
    ["-n", "-o", "-p", "--size", "--quality", "--seed", "--image", "--format", "--no-stream",
     "--timeout", "--base-url", "--", "-", "--list-models", "--guidance-scale", "x=1", "{x}",
     "{", "}}", "'", '"', "#", "\\", "=", "-n3", "--size=1x1", "--watermark"]
)  # fmt: skip
_WORDS = st.lists(st.one_of(_OPTION_WORDS, st.text(max_size=12)), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    line=_WORDS.map(" ".join),
    cell=st.one_of(st.none(), st.lists(_WORDS.map(" ".join), max_size=6).map("\n".join)),
)
def test_any_line_and_cell_give_a_request_or_a_usage_error(line: str, cell: str | None) -> None:
    try:
        options = parse_cell(line, cell, {"x": 1})
        request = request_of(options)
    except OptionError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    else:
        assert options.list_models or request.prompt.strip()


@settings(max_examples=300, deadline=None)
@given(line=st.text(max_size=60), cell=st.one_of(st.none(), st.text(max_size=200)))
def test_arbitrary_text_never_crashes_the_parser(line: str, cell: str | None) -> None:
    with contextlib.suppress(OptionError):
        request_of(parse_cell(line, cell, {}))


# -- rough edges a new user hit ----------------------------------------------------------


def test_a_line_of_two_dashes_ends_the_option_lines() -> None:
    sent = body("", "--quality high\n--\n- a bullet that starts the prompt\n--seed 3 too")
    assert sent["quality"] == "high"
    assert sent["prompt"] == "- a bullet that starts the prompt\n--seed 3 too"
    assert "seed" not in sent


def test_an_inline_comment_ends_an_option_line() -> None:
    sent = body("-n 2  # two of them", "--quality high  # best\n-p style=vivid #x\nA fox")
    assert (sent["n"], sent["quality"], sent["style"], sent["prompt"]) == (
        2,
        "high",
        "vivid",
        "A fox",
    )
    assert "needs a value" in usage_error("", "--quality # forgot it\nA fox")


def test_an_option_line_inside_the_prompt_is_text_with_a_warning() -> None:
    options = parse_cell("", "A fox\nin the snow\n--quality high\n- not an option", {})
    assert options.prompt.endswith("--quality high\n- not an option")
    assert "quality" not in options.fields
    (warning,) = options.warnings
    assert "line 3" in warning and "--quality high" in warning and "above the prompt" in warning


def test_unquoted_json_in_a_param_is_kept_intact() -> None:
    assert body("", '-p extra={"a":1}\nA fox')["extra"] == {"a": 1}
    assert body('-p extra={"a":[1,2]}', "A fox")["extra"] == {"a": [1, 2]}
    message = usage_error("", "-p extra={a:1}\nA fox")
    assert "-p extra" in message and "not valid JSON" in message and "quote" in message


def test_non_finite_numbers_are_refused_everywhere() -> None:
    for line in ("--timeout nan", "--timeout inf", "--guidance-scale nan", "-p guidance_scale=NaN"):
        assert "finite" in usage_error(line, "A fox") or "allowed" in usage_error(line, "A fox")
    assert "not valid JSON" in usage_error("-p extra=[NaN]", "A fox")
    assert "not valid JSON" in usage_error("-p extra=[1e999]", "A fox")
    assert "finite" in usage_error("-p guidance_scale=1e999", "A fox")
    assert body("-p steps=NaN", "A fox")["steps"] == "NaN"  # not JSON: sent as the text


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("-size", "--size"), ("-quality", "--quality"), ("--Size", "--size"), ("--qual", "--quality")],
)
def test_suggestions_are_sane(typed: str, suggested: str) -> None:
    assert f"did you mean {suggested}?" in usage_error(f"{typed} 512x512", "A fox")


def test_no_suggestion_for_an_option_that_resembles_nothing() -> None:
    message = usage_error("--bogus 1", "A fox")
    assert "did you mean" not in message and "%meshimage?" in message


def test_a_prompt_on_the_cell_magic_line_points_to_the_line_magic() -> None:
    message = usage_error("a fox", "")
    assert "%meshimage (one %)" in message and "next line" in message


@pytest.mark.parametrize("empty", ["", "   ", "\n\t"])
def test_a_prompt_that_is_empty_once_filled_is_no_prompt(empty: str) -> None:
    assert "no prompt" in usage_error("", "{e}", e=empty)
    assert "no prompt" in usage_error("{e}", None, e=empty)


def test_list_models_refuses_stray_arguments() -> None:
    assert parse_cell("--list-models -o t_models --base-url local", None, {}).out == "t_models"
    message = usage_error("--list-models --quality high", None)
    assert "--list-models takes only" in message and "--quality" in message
    assert "the prompt 'a fox'" in usage_error("--list-models", "a fox")
    assert "--jobs takes only -o; remove -n" in usage_error("--jobs -n 2", None)
    assert "one of --list-models and --wait" in usage_error("--list-models --wait", None)


# -- sweeps ----------------------------------------------------------------------------------


def test_prompts_separated_by_three_dashes_and_comma_lists_make_a_sweep() -> None:
    options = parse_cell(
        "--model openai/gpt-image-1,vertex/imagen-3 --seed 1,2",
        "A fox\n---\nAn {bird}",
        {"bird": "owl"},
    )
    assert options.is_sweep and options.prompt_list == ["A fox", "An owl"]
    assert options.sweep == {"model": ["openai/gpt-image-1", "vertex/imagen-3"], "seed": [1, 2]}
    assert "model" not in options.fields and "seed" not in options.fields


def test_the_last_value_given_wins_over_a_list() -> None:
    options = parse_cell("--seed 1,2", "--seed 3\nA fox", {})
    assert not options.is_sweep and options.fields["seed"] == 3


def test_each_listed_value_is_checked_like_the_option() -> None:
    assert "--quality: invalid value 'ultra'" in usage_error("--quality high,ultra", "A fox")
    assert "prompt 2 of 3 is empty" in usage_error("", "A fox\n---\n\n---\nAn owl")


def test_prompts_from_a_variable() -> None:
    options = parse_cell("--prompts ideas", None, {"ideas": ["A fox", "An {x}"], "x": "owl"})
    assert options.prompt_list == ["A fox", "An {x}"]  # a list's items are text, not templates
    assert "non-empty list of strings" in usage_error("--prompts ideas", None, ideas="A fox")
    assert "no variable 'nope'" in usage_error("--prompts nope", None)
    assert "leave the cell text out" in usage_error("--prompts ideas", "A fox", ideas=["x"])


# -- malformed input: one line, nothing sent, nothing bound ---------------------------------


def test_json_nested_100000_deep_is_a_one_line_error(
    ip: InteractiveShell, server: LocalServer
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    message = refused(ip, server, f"%%meshimage -o t_out -p x={deep}\nA fox")
    assert "-p x" in message and "nested deeper" in message
    message = refused(ip, server, f"%%meshimage -o t_out --optimize-prompt-options {deep}\nA fox")
    assert "--optimize-prompt-options" in message
    assert body(f"-p x={'[' * 30}{']' * 30}", "A fox")["x"]  # reasonable nesting still goes


@pytest.mark.parametrize(
    ("cell", "named"),
    [
        ("%%meshimage -o t_out --replay --fresh\nA fox", ("--replay", "--fresh")),
        ("%%meshimage -o t_out --fresh\n--replay\nA fox", ("--replay", "--fresh")),
        (
            "%%meshimage -o t_out --background transparent --format jpg\nA fox",
            ("--background transparent", "--output-format jpeg"),
        ),
        (
            "%%meshimage -o t_out -p background=transparent\n--output-format jpeg\nA fox",
            ("--background transparent", "--output-format jpeg"),
        ),
        (  # one run of the sweep would be transparent jpeg: none is sent
            "%%meshimage -o t_out --background opaque,transparent --format jpeg\nA fox",
            ("--background transparent", "--output-format jpeg"),
        ),
    ],
)
def test_conflicting_options_are_refused_naming_both(
    ip: InteractiveShell, server: LocalServer, cell: str, named: tuple[str, str]
) -> None:
    message = refused(ip, server, cell)
    assert f"{named[0]} and {named[1]} conflict" in message, message


def test_a_comment_in_the_line_magic_is_no_prompt(
    ip: InteractiveShell, server: LocalServer
) -> None:
    message = refused(ip, server, "%meshimage -o t_out --size 64x64 # note to self")
    assert "no prompt" in message
    assert "needs a value" in refused(ip, server, "%meshimage -o t_out --size # forgot it")
    assert "no prompt" in usage_error("-n 2  # two of them", None)
    assert parse_cell("-n 2 a fox #1 in the snow", None, {}).prompt == "a fox #1 in the snow"
    assert parse_cell("-n 2 -- #1 fox", None, {}).prompt == "#1 fox"
    assert parse_cell("--list-models  # the image models", None, {}).list_models
