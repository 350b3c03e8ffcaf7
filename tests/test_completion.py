"""Tab in `%%meshimage`, `%meshimage` and `%mesh`: option names, the values of options
with known values, `%mesh`'s commands, and the model ids of the last `/v1/models` list,
never waiting on the network for more than a moment.

The logic on plain text first (`completions`), then IPython's completer with the
extension loaded and unloaded, then a real kernel answering `complete_request` as
JupyterLab sends it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics.http import listed
from mesh_magics.ipython.completion import WAIT_SECONDS, ListedModels, completions
from mesh_magics.local import LocalServer
from mesh_magics.schema import QUALITIES
from mesh_magics.value_kinds import SIZE_PRESETS

from .kernel import Frontend, frontend
from .servers import ScriptedServer, send_json
from .support import FAKE_KEY, run_cell, wait_for

MODELS = ("openai/gpt-image-1", "openai/dall-e-3", "vertex/imagen-3")


@pytest.fixture(autouse=True)
def _no_kept_lists() -> Iterator[None]:
    listed.forget()
    yield
    listed.forget()


def tab(text: str, models: tuple[str, ...] = MODELS) -> list[str] | None:
    """What Tab offers with the cursor at the end of `text` (None: not ours)."""
    lines = text.split("\n")
    found = completions(text, len(lines) - 1, len(lines[-1]), lambda _url: models)
    return None if found is None else found.matches


# -- the logic ------------------------------------------------------------------------------


def test_option_names_complete_on_the_magic_line_and_the_option_lines() -> None:
    assert tab("%%meshimage --si") == ["--size"]
    assert tab("%%meshimage -o fox --qu") == ["--quality", "--quality-tier"]
    option_lines = "%%meshimage\n-n 2\n# a comment\n\n--out"
    assert tab(option_lines) == ["--output-format", "--output-compression", "--out"]
    assert tab("%meshimage --no-") == ["--no-stream", "--no-display"]
    assert tab("fox = %meshimage --dry") == ["--dry-run"]


def test_moved_commands_are_not_offered_as_options() -> None:
    offered = tab("%%meshimage --") or []
    assert "--list-models" not in offered and "--form" not in offered
    assert "--bg" in offered and "--model" in offered


def test_values_of_choices_sizes_and_formats() -> None:
    assert tab("%%meshimage --quality ") == list(QUALITIES)
    assert tab("%%meshimage -q h") == ["high", "hd"]
    assert tab("%%meshimage --size ") == list(SIZE_PRESETS)
    assert tab("%%meshimage --size 15") == ["1536x1024"]
    assert tab("%%meshimage --format j") == ["jpeg"]
    assert tab("%%meshimage --quality=me") == ["--quality=medium"]
    assert tab("%%meshimage --watermark ") == ["true", "false"]
    assert tab("%%meshimage\n--background t") == ["transparent"]


def test_model_ids_and_a_sweeps_comma_list() -> None:
    assert tab("%%meshimage --model ") == list(MODELS)
    assert tab("%%meshimage -m openai/d") == ["openai/dall-e-3"]
    swept = tab("%%meshimage --model openai/gpt-image-1,ver")
    assert swept == ["openai/gpt-image-1,vertex/imagen-3"]
    assert tab("%%meshimage --quality low,h") == ["low,high", "low,hd"]


def test_the_models_of_the_base_url_the_line_names() -> None:
    asked: list[str | None] = []

    def models(url: str | None) -> tuple[str, ...]:
        asked.append(url)
        return MODELS

    completions("%%meshimage --base-url local --model ", 0, 37, models)
    completions("%%meshimage --model ", 0, 20, models)
    assert asked == ["local", None]


def test_mesh_commands_and_their_flags() -> None:
    assert tab("%mesh ") == [
        "models",
        "history",
        "usage",
        "jobs",
        "wait",
        "form",
        "batches",
        "from",
    ]
    assert tab("%mesh from x.png --") == ["--help", "--out"]
    assert tab("%mesh h") == ["history"]
    assert tab("%mesh models --") == ["--help", "--base-url", "--out"]
    assert tab("%mesh models --base-url ") == ["local"]
    assert tab("%mesh wait --t") == ["--timeout"]
    assert tab("%mesh form --si") == ["--size"]
    assert tab("%%mesh form\n--quality ") == list(QUALITIES)


def test_nothing_outside_the_options() -> None:
    assert tab("%%meshimage\nA fox in the snow --si") is None  # the prompt has begun
    assert tab("%%meshimage\n--\n--si") is None  # `--` ended the options
    assert tab("print(1)\n--si") is None
    assert tab("%meshimagery --si") is None
    assert tab("%%meshimage -o ") == []  # a name to make up: nothing to offer
    assert tab("%mesh nosuch --") is None  # no such command: nothing known


# -- the model ids: kept as they pass, else asked without blocking --------------------------------


def test_listing_the_models_keeps_them_for_tab(ip: InteractiveShell, server: LocalServer) -> None:
    run = run_cell(ip, "%mesh models")
    assert run.success, run.error
    asked = sum(r.path.startswith("/v1/models") for r in server.requests)
    offered = _ipython_tab(ip, "%%meshimage --model ")
    assert "openai/gpt-image-1" in offered
    assert sum(r.path.startswith("/v1/models") for r in server.requests) == asked  # no new ask


def test_a_slow_api_holds_tab_up_a_moment_at_most() -> None:
    answer = threading.Event()
    body = {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}

    def slow_models(handler: BaseHTTPRequestHandler) -> None:
        answer.wait(30)
        send_json(body)(handler)

    with ScriptedServer({"/v1/models": slow_models}) as api:
        models = ListedModels(lambda: {"base_url": api.url})
        began = time.monotonic()
        assert models(None) == ()
        assert time.monotonic() - began < WAIT_SECONDS + 2.0  # generous: 2 shared cores
        assert models(None) == ()  # still on its way: not asked twice
        answer.set()
        wait_for(lambda: models(None), "the model list")
        assert tuple(models(None)) == MODELS
        assert api.paths() == ["/v1/models"]


def test_no_key_means_no_models_and_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHAPI_API_KEY")
    assert ListedModels(lambda: {"base_url": "https://api.example.com"})(None) == ()


# -- on IPython's completer ---------------------------------------------------------------------


def _ipython_tab(shell: InteractiveShell, code: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in shell.Completer.completions(code, len(code))]


def test_the_extension_adds_its_matcher_and_takes_it_away(ip: InteractiveShell) -> None:
    assert _ipython_tab(ip, "%%meshimage --si") == ["--size"]
    ip.run_line_magic("reload_ext", "mesh_magics")
    names = [getattr(m, "__name__", "") for m in ip.Completer.custom_matchers]
    assert names.count("mesh_magics_matcher") == 1
    ip.run_line_magic("unload_ext", "mesh_magics")
    try:
        assert "--size" not in _ipython_tab(ip, "%%meshimage --si")
    finally:
        ip.run_line_magic("load_ext", "mesh_magics")
    assert _ipython_tab(ip, "%mesh mod") == ["models"]


# -- through a real kernel ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    home = tmp_path_factory.mktemp("ipython")
    env = {"MESHAPI_API_KEY": FAKE_KEY, "MESHAPI_BASE_URL": None, "IPYTHONDIR": str(home)}
    with frontend(tmp_path_factory.mktemp("kernel"), env) as k:
        k.run("%load_ext mesh_magics")
        yield k


def complete(kernel: Frontend, code: str, cursor: int | None = None) -> tuple[list[str], str]:
    """A `complete_request`, as a frontend sends it on Tab: the matches, and the text
    they replace."""
    cursor = len(code) if cursor is None else cursor
    reply = kernel.reply(kernel.kc.complete(code, cursor))["content"]
    assert reply["status"] == "ok", reply
    assert reply["cursor_end"] == cursor
    return list(reply["matches"]), code[reply["cursor_start"] : reply["cursor_end"]]


def test_a_kernel_completes_options_values_and_commands(kernel: Frontend) -> None:
    assert complete(kernel, "%%meshimage -o fox --si") == (["--size"], "--si")
    assert complete(kernel, "%%meshimage --quality h") == (["high", "hd"], "h")
    code = "%%meshimage -o fox\n--format \nA fox"
    assert complete(kernel, code, code.index("\nA fox")) == (["png", "jpeg", "webp"], "")
    assert complete(kernel, "%mesh jo") == (["jobs"], "jo")


def test_a_kernel_completes_model_ids_once_listed(kernel: Frontend, tmp_path: Path) -> None:
    with LocalServer() as api:
        kernel.run(f"%config MeshImageMagics.base_url = '{api.url}'")
        began = time.monotonic()
        first, _ = complete(kernel, "%%meshimage --model openai/")
        assert time.monotonic() - began < 10  # a moment, not a network timeout
        deadline = time.monotonic() + 30
        while "openai/gpt-image-1" not in first:  # asked in the background on the first Tab
            assert time.monotonic() < deadline, f"no model ids; last offered {first}"
            first, _ = complete(kernel, "%%meshimage --model openai/")
        matches, replaced = complete(kernel, "%%meshimage --model openai/")
        assert replaced == "openai/" and all(m.startswith("openai/") for m in matches)
