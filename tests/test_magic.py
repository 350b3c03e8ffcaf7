"""The user's story in an IPython shell: a cell, what they see, what is bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from PIL import Image

from mesh_magics.errors import (
    ConfigError,
    GenerationCancelled,
    GenerationTimeout,
    NotFoundError,
    OptionError,
    StreamError,
)
from mesh_magics.local import LocalServer
from mesh_magics.results.result import ImageResult

from .servers import KeyRelay, png_bytes
from .support import CANCEL_BOUND_SECONDS, FAKE_KEY, interrupt_when, refused, run_cell, sent


def test_cell_binds_returns_and_shows_the_images(ip: InteractiveShell, server: LocalServer) -> None:
    run = run_cell(ip, "%%meshimage -o t_fox --size 128x96\n--quality high\nA watercolor of a fox")
    assert run.success, run.error
    fox = ip.user_ns["t_fox"]
    assert isinstance(fox, ImageResult) and run.result is fox and ip.user_ns["_"] is fox
    assert isinstance(fox[0], Image.Image) and fox[0].size == (128, 96)
    assert fox[0].info["prompt"] == "A watercolor of a fox"
    assert fox.request["quality"] == "high" and fox.model == "openai/gpt-image-1"
    assert "✓ 1 image · openai/gpt-image-1 · 128x96 png" in run.stdout
    assert "processing" in run.stdout  # the text progress followed the stream


def test_several_images_and_option_lines(ip: InteractiveShell) -> None:
    run = run_cell(
        ip,
        "%%meshimage -o t_many\n-n 3 --size 64x64\n# comment\n--format jpeg --no-stream\n\nfoxes\n",
    )
    assert run.success, run.error
    many = ip.user_ns["t_many"]
    assert len(many) == 3 and many.formats == ["jpeg"] * 3
    assert many.request["stream"] is False and many.prompt == "foxes"


def test_interpolation_from_the_namespace(ip: InteractiveShell) -> None:
    ip.user_ns["t_animal"] = "owl"
    run = run_cell(ip, "%%meshimage -o t_owl --size 64x64\nAn {t_animal} with {{braces}}")
    assert run.success, run.error
    assert ip.user_ns["t_owl"].prompt == "An owl with {braces}"


def test_line_magic(ip: InteractiveShell) -> None:
    run = run_cell(ip, "t_x = %meshimage --size 64x64 a small {{literal}} fox")
    assert run.success, run.error
    assert ip.user_ns["t_x"].prompt == "a small {literal} fox"


def test_no_display_binds_but_returns_nothing(ip: InteractiveShell) -> None:
    run = run_cell(ip, "%%meshimage -o t_quiet --no-display --size 64x64\nquiet fox")
    assert run.success and run.result is None
    assert isinstance(ip.user_ns["t_quiet"], ImageResult)


@pytest.mark.parametrize(
    ("cell", "error"),
    [
        ("%%meshimage -o t_keep --qualty high\nfox", OptionError),
        ("%%meshimage -o t_keep --size 64x64\nA {t_missing} fox", OptionError),
        ("%%meshimage -o t_keep --model nope/missing\nfox", NotFoundError),
        ('%%meshimage -o t_keep -p mesh_local=\'{"fault": "cut"}\'\nfox', StreamError),
    ],
)
def test_failures_are_short_fail_the_cell_and_keep_the_old_value(
    ip: InteractiveShell, server: LocalServer, cell: str, error: type[Exception]
) -> None:
    ip.user_ns["t_keep"] = "old value"
    run = run_cell(ip, cell)
    assert not run.success and isinstance(run.error, error)
    assert ip.user_ns["t_keep"] == "old value"
    rendered = run.error._render_traceback_()  # type: ignore[union-attr]
    assert len(rendered) == 1 and "Traceback" not in rendered[0]
    assert rendered[0].startswith(f"{error.__name__}: ")  # the name to catch it by


def test_usage_errors_happen_before_any_request(ip: InteractiveShell, server: LocalServer) -> None:
    run_cell(ip, "%%meshimage -n 11\nfox")
    assert server.requests == []


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("timeout", "-5", "greater than 0"),
        ("timeout", "float('nan')", "finite"),
        ("read_timeout", "0", "greater than 0"),
        ("quality", "'ultra'", "auto, low, medium, high, hd, standard"),
        ("n", "20", "1 to 10"),
        ("size", "'huge'", "WIDTHxHEIGHT"),
        ("max_retries", "-1", "0 to 10"),
        ("preview_max_px", "-1", "0 or more"),
        ("progress", "'fancy'", "auto, widget, text"),
        ("base_url", "'ftp://x'", "local, or an http(s) URL"),
    ],
)
def test_a_bad_setting_is_refused_when_set_and_later_cells_still_work(
    ip: InteractiveShell,
    server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    setting: str,
    value: str,
    allowed: str,
) -> None:
    magics = ip.magics_manager.registry["MeshImageMagics"]
    before = getattr(magics, setting)
    run_cell(ip, f"%config MeshImageMagics.{setting} = {value}")  # %config logs the error
    assert getattr(magics, setting) == before
    assert f"MeshImageMagics.{setting}: invalid value" in caplog.text
    assert allowed in caplog.text and "Traceback" not in caplog.text
    assert run_cell(ip, "%%meshimage -o t_after --size 64x64\nfox").success
    assert "t_after" in ip.user_ns


def test_an_explicit_option_wins_over_a_broken_default(
    ip: InteractiveShell, server: LocalServer
) -> None:
    magics = ip.magics_manager.registry["MeshImageMagics"]
    magics._trait_values["quality"] = "ultra"  # as a profile loaded before validation could
    assert run_cell(ip, "%%meshimage --quality high --size 64x64\nfox").success
    assert sent(server).body["quality"] == "high"
    run = run_cell(ip, "%%meshimage --size 64x64\nfox")
    assert isinstance(run.error, OptionError) and "MeshImageMagics.quality" in str(run.error)
    assert [r.method for r in server.requests if r.method == "POST"] == ["POST"]  # GET: models


def test_only_what_was_set_is_sent(ip: InteractiveShell, server: LocalServer) -> None:
    assert run_cell(ip, "%%meshimage\nfox").success
    assert sent(server).body.keys() == {"prompt", "model", "stream"}
    ip.run_line_magic("config", "MeshImageMagics.quality = 'low'")
    assert run_cell(ip, "%%meshimage -n 2\nfox").success
    body = sent(server).body
    assert (body["quality"], body["n"]) == ("low", 2) and "size" not in body


def test_an_option_line_inside_the_prompt_warns(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        outcome = ip.run_cell("%%meshimage -o t_w --size 64x64\nA fox\n--quality high")
    assert outcome.success
    assert "line 2" in captured.stderr and "--quality high" in captured.stderr
    assert ip.user_ns["t_w"].prompt == "A fox\n--quality high"


def test_unload_and_load_again_keeps_the_settings(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "MeshImageMagics.quality = 'low'")
    ip.run_line_magic("unload_ext", "mesh_magics")
    try:
        assert "meshimage" not in ip.magics_manager.magics["cell"]
        assert not run_cell(ip, "%mesh models").success
    finally:
        ip.run_line_magic("load_ext", "mesh_magics")
    assert run_cell(ip, "%%meshimage -o t_again --size 64x64\nfox").success
    assert ip.user_ns["t_again"].request["quality"] == "low"


def test_error_labels_follow_the_colour_scheme(ip: InteractiveShell) -> None:
    error = OptionError("bad")
    saved = ip.colors
    try:
        ip.colors = "nocolor"
        assert error._render_traceback_() == ["OptionError: bad"]
        ip.colors = "linux"
        assert "\x1b[" in error._render_traceback_()[0]
    finally:
        ip.colors = saved


def test_no_key_and_a_remote_base_url_says_how_to_set_it(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESHAPI_API_KEY")
    run = run_cell(ip, "%%meshimage --base-url https://api.meshapi.ai\nfox")
    assert isinstance(run.error, ConfigError)
    assert "MESHAPI_API_KEY" in str(run.error) and "--base-url local" in str(run.error)


def test_fallback_key_variable_is_used(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESHAPI_API_KEY")
    monkeypatch.setenv("MESH_API_KEY", "rsk_fallback")
    with KeyRelay(server) as api:  # an API that is not our own backend: it gets the key
        assert run_cell(ip, f"%%meshimage --size 64x64 --base-url {api.url}\nfox").success
    assert api.authorizations == ["Bearer rsk_fallback"]


def test_base_url_local_starts_the_embedded_backend_without_sending_the_key(
    ip: InteractiveShell,
) -> None:
    from mesh_magics.local import ensure_local_server

    run = run_cell(ip, "%%meshimage -o t_local --base-url local --size 64x64\nfox")
    assert run.success, run.error
    local = ensure_local_server()
    assert sent(local).credential == "local token"


def test_timeout_gives_up_and_binds_nothing(ip: InteractiveShell, server: LocalServer) -> None:
    server.latency = 5
    started = time.monotonic()
    run = run_cell(ip, "%%meshimage -o t_slow --timeout 0.5 --size 64x64\nslow fox")
    assert isinstance(run.error, GenerationTimeout) and "--timeout 0.5" in str(run.error)
    assert time.monotonic() - started < 3 and "t_slow" not in ip.user_ns
    assert server.wait_for_disconnect(3)


def test_interrupt_cancels_closes_the_connection_and_binds_nothing(
    ip: InteractiveShell, server: LocalServer
) -> None:
    server.latency = 10
    interrupter = interrupt_when(lambda: server.request_count > 0)  # the server has it
    run = run_cell(ip, "%%meshimage -o t_cancelled --size 64x64\nslow fox")
    returned = time.monotonic()
    sent_at = interrupter.finished()
    assert sent_at is not None, f"the cell ended before the interrupt: {run.error!r}"
    assert isinstance(run.error, GenerationCancelled) and "cancelled" in str(run.error)
    # The cell ended soon after the interrupt, not when the server answered (10 s later);
    # wide enough for a loaded 2-core machine (cancelling itself takes milliseconds).
    assert returned - sent_at < CANCEL_BOUND_SECONDS, f"{returned - sent_at:.1f} s"
    assert "t_cancelled" not in ip.user_ns
    assert server.wait_for_disconnect(5), "the server never saw the client hang up"
    assert run_cell(ip, "1 + 1").result == 2  # the shell is still usable


def test_list_models_shows_a_table_and_binds_the_list(ip: InteractiveShell) -> None:
    run = run_cell(ip, "%mesh models -o t_models")
    assert run.success
    models = ip.user_ns["t_models"]
    assert run.result is models and "openai/gpt-image-1" in models.ids
    assert "openai/gpt-image-1" in repr(models) and "<table>" in models._repr_html_()
    assert "openai/gpt-4o-mini" not in models.ids


def test_list_models_with_stray_arguments_is_an_error(ip: InteractiveShell) -> None:
    run = run_cell(ip, "%mesh models -n 2")
    assert isinstance(run.error, OptionError) and "-n" in str(run.error)


def test_key_never_appears_in_what_the_user_sees(ip: InteractiveShell) -> None:
    runs = [
        run_cell(ip, "%%meshimage -o t_k --size 64x64\nfox"),
        run_cell(ip, "%%meshimage --model nope/x\nfox"),
        run_cell(ip, "%config MeshImageMagics"),
        run_cell(ip, "t_k"),
    ]
    seen = "".join(r.stdout + repr(r.outputs) + repr(r.result) + str(r.error) for r in runs)
    assert FAKE_KEY not in seen
    assert FAKE_KEY not in repr(ip.user_ns["t_k"].request) + repr(ip.user_ns["t_k"])


def test_dry_run_shows_the_request_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer, tmp_path: Path
) -> None:
    picture = tmp_path / "in.png"
    picture.write_bytes(png_bytes() + bytes(400))  # a data URL longer than is worth showing
    run = run_cell(ip, f"%%meshimage --dry-run -o t_dry --quality high --image {picture}\nA fox")
    assert run.success and run.result is None
    (shown,) = [o["text/plain"] for o in run.outputs if "dry run" in o.get("text/plain", "")]
    assert f"POST {server.url}/v1/images/generations" in shown
    assert '"quality": "high"' in shown and '"prompt": "A fox"' in shown
    assert "characters)" in shown and len(shown) < 2000  # the data URL is shortened
    assert FAKE_KEY not in shown
    assert server.requests == [] and "t_dry" not in ip.user_ns


@pytest.mark.parametrize(
    "name",
    ["get_ipython", "print", "len", "exit", "quit", "In", "Out", "_", "__", "___", "_i", "_ii",
     "_i3", "_3", "_ih", "_oh", "_dh", "_sh", "__builtins__", "__name__", "class"],
)  # fmt: skip
def test_a_name_python_or_ipython_needs_is_refused_for_o(
    ip: InteractiveShell, server: LocalServer, name: str
) -> None:
    message = refused(ip, server, f"%%meshimage -o {name} --size 64x64\nfox", out=name)
    assert f"-o: invalid value '{name}'" in message and "Python variable name" in message
    assert run_cell(ip, "%%meshimage -o t_after --size 64x64\nfox").success  # IPython still works
