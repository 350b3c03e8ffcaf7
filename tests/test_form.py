"""The interactive form (`%mesh form`, `mm.form`): in an IPython shell, driven by
setting widget values and clicking its buttons in Python; and in a real kernel, driven by
the comm messages a widget frontend sends (`tests/kernel.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.cell import parse_cell
from mesh_magics.forms.widget import WIDGET_VIEW, MeshForm
from mesh_magics.local import LocalServer
from mesh_magics.marks import is_marked

from .kernel import Frontend, HeldServer, Msg, frontend, kernel_env
from .support import generations, sent, wait_for

MODEL = "openai/dall-e-3"


def ended(form: MeshForm) -> bool:
    """The form's run has ended and the form shows it (Generate is enabled last)."""
    return form.run is not None and form.run.done() and not form.generate_button.disabled


def same_request(form: MeshForm, body: dict[str, Any]) -> None:
    """`form.code` parses to the request the server got."""
    lines = form.code.split("\n", 1)
    options = parse_cell(lines[0].removeprefix("%%meshimage"), lines[1], {})
    assert options.prompt == body["prompt"]
    for name, value in options.fields.items():
        assert body[name] == value, name


@pytest.fixture
def make_form(ip: InteractiveShell) -> Callable[..., MeshForm]:
    def make(line: str = "", cell: str | None = None) -> MeshForm:
        if cell is None:
            value = ip.run_line_magic("mesh", f"form {line}")
        else:
            value = ip.run_cell_magic("mesh", f"form {line}", cell)
        assert isinstance(value, MeshForm)
        return value

    return make


def test_generate_sends_the_form_binds_the_result_and_fills_the_gallery(
    ip: InteractiveShell, server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    form = make_form("-o t_fox", "--size 64x64\n--quality low\nA fox")
    assert form.prompt.value == "A fox"
    assert form.controls["size"].value == "64x64"
    form.prompt.value = "A red fox"
    form.controls["model"].value = MODEL
    assert "A red fox" in form.code_view.value and MODEL in form.code

    form.generate_button.click()
    wait_for(lambda: ended(form), "the run to end")

    (request,) = generations(server)
    assert request.body["prompt"] == "A red fox" and request.body["model"] == MODEL
    assert request.body["size"] == "64x64" and request.body["quality"] == "low"
    assert ip.user_ns["t_fox"] is form.result is form.results[0]
    assert len(form.gallery) == 1
    assert form.status.value.startswith("✓")
    assert not form.generate_button.disabled and form.cancel_button.disabled
    same_request(form, request.body)
    stored = mm.history(form.result.request_id)
    assert [r.request_id for r in stored] == [form.result.request_id]

    form.prompt.value = "A blue fox"
    form.generate_button.click()
    wait_for(lambda: ended(form) and len(form.results) == 2, "the second result")
    assert ip.user_ns["t_fox"] is form.results[0] is not form.results[1]
    assert form.results[0].prompt == "A blue fox" and len(form.gallery) == 2

    first_entry = form.gallery.box.children[-1]
    load = first_entry.children[1].children[1]
    load.click()
    assert form.prompt.value == "A red fox" and form.controls["model"].value == MODEL


def test_a_bad_value_shows_its_message_and_sends_nothing(
    server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    form = make_form("A fox")
    form.controls["size"].value = "huge"
    message = form.problems["size"].value
    assert "--size" in message and "huge" in message
    form.generate_button.click()
    assert form.run is None and "nothing was sent" in form.status.value
    form.controls["size"].value = "64x64"
    assert (
        form.problems["size"].value.count("</span>") == 1
        and "huge" not in form.problems["size"].value
    )
    form.prompt.value = ""
    form.generate_button.click()
    assert "no prompt" in form.problems["prompt"].value
    assert form.run is None  # refused before a run was made: nothing can be sent later
    assert generations(server) == []


def test_the_models_come_from_the_api_and_an_api_error_shows_short(
    server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    form = make_form("--size 64x64 A fox")
    wait_for(lambda: MODEL in form.controls["model"].options, "the model list")
    assert "openai/gpt-4o-mini" not in form.controls["model"].options  # not an image model
    form.prompt.value = "# not a comment"
    assert "as a comment" in form.problems["prompt"].value
    form.prompt.value = "A fox"
    server.fault = "status:403"
    form.generate_button.click()
    wait_for(lambda: ended(form), "the run to fail")
    assert form.status.value.startswith("✗")
    assert "403" in form.status.value and "Traceback" not in form.status.value
    assert form.result is None and not form.generate_button.disabled


def test_cancel_during_a_slow_run_closes_the_request(
    ip: InteractiveShell, server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    server.latency = 30
    form = make_form("-o t_slow --size 64x64 A slow fox")
    form.generate_button.click()
    wait_for(lambda: generations(server), "the request")
    assert not form.cancel_button.disabled
    form.cancel_button.click()
    assert server.wait_for_disconnect(10), "the request was not closed"
    assert form.run is not None and form.run.wait(10) and form.run.status == "cancelled"
    wait_for(lambda: "cancelled" in form.status.value, "the cancelled line")
    assert "t_slow" not in ip.user_ns and form.result is None


def test_the_display_has_the_widget_the_code_and_after_a_run_the_image(
    server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    form = make_form("--size 64x64 A fox")
    before = form._bundle()
    assert before[WIDGET_VIEW]["model_id"] == form.box.model_id
    assert before["text/plain"] == form.code
    form.generate_button.click()
    wait_for(lambda: ended(form), "the run to end")
    after = form._bundle()
    assert WIDGET_VIEW in after and "A fox" in after["text/plain"]
    assert {"image/png", "image/jpeg"} & set(after)


def test_a_form_cell_fills_its_prompt_like_the_magic(
    ip: InteractiveShell, make_form: Callable[..., MeshForm]
) -> None:
    ip.user_ns["t_animal"] = "owl"
    form = make_form("-o t_owl", "--quality high\n-p extra_field=3\nA {t_animal} in {{braces}}")
    assert form.prompt.value == "A owl in {braces}"
    assert form.out.value == "t_owl" and form.controls["quality"].value == "high"
    assert form.state.fields == {"quality": "high", "extra_field": 3}
    assert "A owl in {{braces}}" in form.code and "-p extra_field=3" in form.code


def test_a_form_cell_refuses_what_the_form_does_not_hold(ip: InteractiveShell) -> None:
    for line in ("form --bg A fox", "form --size 64x64,128x128 A fox", "form --save out A fox"):
        with pytest.raises(mm.OptionError, match=r"the form \(%mesh form\)"):
            ip.run_line_magic("mesh", line)


def test_close_leaves_the_image_and_the_code_and_no_widget(
    server: LocalServer, make_form: Callable[..., MeshForm]
) -> None:
    from IPython.display import DisplayHandle

    form = make_form("--size 64x64 A closing fox")
    form.generate_button.click()
    wait_for(lambda: ended(form), "the run to end")
    code = form.code
    updates: list[dict[str, Any]] = []

    class Handle(DisplayHandle):
        def update(self, obj: Any, **kwargs: Any) -> None:
            updates.append(obj)

    form._handles.append(Handle())
    form.close()
    assert form.box.comm is None and form.prompt.comm is None
    (bundle,) = updates
    assert WIDGET_VIEW not in bundle and bundle["text/plain"] == code
    assert {"image/png", "image/jpeg"} & set(bundle)
    assert not form.close() and "A closing fox" in repr(form)  # twice is fine


def test_mm_form_and_to_cell(ip: InteractiveShell, server: LocalServer) -> None:
    form = mm.form("A cat", size="64x64", n=2, base_url=server.url)
    assert form.controls["n"].value == 2 and form.controls["size"].value == "64x64"
    assert form.to_cell() == form.code
    assert "-n 2" in form.code or "--n 2" in form.code
    for bad in ({"size": "huge"}, {"out": "not a name"}, {"base_url": "ftp://x"}):
        with pytest.raises(mm.OptionError):
            mm.form("A cat", **bad)


# -- a real kernel, driven by widget comm messages -------------------------------------------


def update(k: Frontend, comm_id: str, state: dict[str, Any]) -> None:
    """What a widget frontend sends when the user changes a control."""
    data = {"method": "update", "state": state, "buffer_paths": []}
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    k.kc.shell_channel.send(msg)


def opened(k: Frontend, model: str, **state: Any) -> list[Msg]:
    return [
        m
        for m in list(k.messages)
        if m["msg_type"] == "comm_open"
        and m["content"]["data"]["state"].get("_model_name") == model
        and all(m["content"]["data"]["state"].get(key) == v for key, v in state.items())
    ]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    home = tmp_path_factory.mktemp("ipython")
    with frontend(tmp_path_factory.mktemp("kernel"), kernel_env(home)) as k:
        k.run("%load_ext mesh_magics")
        yield k


def test_the_form_in_a_kernel_generates_and_cancels_on_clicks(kernel: Frontend) -> None:
    k = kernel
    with HeldServer(ping_interval=0.2) as api:
        cell = k.run(f"form = %mesh form -o fox --size 64x64 --base-url {api.url}\nform")
        (prompt,) = [m for m in k.widgets(cell, "TextareaModel")]
        (model,) = [
            m for m in k.widgets(cell, "ComboboxModel")
            if m["content"]["data"]["state"]["description"] == "model"
        ]  # fmt: skip
        generate = k.widgets(cell, "ButtonModel")
        by_name = {m["content"]["data"]["state"]["description"]: m for m in generate}
        update(k, prompt["content"]["comm_id"], {"value": "A kernel fox"})
        update(k, model["content"]["comm_id"], {"value": MODEL})
        images = len(opened(k, "ImageModel"))
        k.click(by_name["Generate"]["content"]["comm_id"])

        k.wait_for(api.generations, "the request")
        body = sent(api).body
        assert body["prompt"] == "A kernel fox" and body["model"] == MODEL
        k.wait_for(lambda: len(opened(k, "ImageModel")) > images, "a gallery entry")
        check = k.run(
            "import json\nfrom mesh_magics.cell import parse_cell\n"
            "head, body = form.code.split('\\n', 1)\n"
            "o = parse_cell(head.removeprefix('%%meshimage'), body, {})\n"
            "print(fox is form.result, o.prompt, o.fields['model'], o.fields['size'])"
        )
        assert k.printed(check) == f"True A kernel fox {MODEL} 64x64\n"

        api.latency = 30
        k.click(by_name["Generate"]["content"]["comm_id"])
        k.wait_for(lambda: api.generations() == 2, "the second request")
        k.click(by_name["Cancel"]["content"]["comm_id"])
        assert api.wait_for_disconnect(10), "the request was not closed"
        done = k.run("print(form.run.wait(10), form.run.status, fox is form.results[0])")
        assert k.printed(done) == "True cancelled True\n"


def test_a_saved_notebook_keeps_the_image_and_the_code(tmp_path: Path) -> None:
    """What nbclient saves for a form cell after a run: the widget view, and the code as
    text and the latest image as fallbacks."""
    import nbformat
    from nbclient import NotebookClient

    with LocalServer() as api:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext mesh_magics"),
            nbformat.v4.new_code_cell(
                f"form = %mesh form --size 64x64 --base-url {api.url} A saved fox\n"
                "display(form)\nform.generate_button.click()\nimport time\n"
                "while form.generate_button.disabled:\n    time.sleep(0.05)"
            ),
        ]
        env = kernel_env(tmp_path / "ipython")
        client = NotebookClient(nb, timeout=60, kernel_name="python3", store_widget_state=True)
        import os

        old = dict(os.environ)
        os.environ.update({key: value for key, value in env.items() if value is not None})
        os.environ.pop("MESHAPI_BASE_URL", None)
        try:
            client.execute()
        finally:
            os.environ.clear()
            os.environ.update(old)
    outputs = [o for o in nb.cells[1].outputs if o.get("output_type") == "display_data"]
    data = outputs[0]["data"]
    assert WIDGET_VIEW in data and is_marked(outputs[0]["metadata"])  # for serverext.py
    assert "A saved fox" in data["text/plain"] and data["text/plain"].startswith("%%meshimage")
    assert {"image/png", "image/jpeg"} & set(data)


def test_the_forms_code_run_with_replay_gives_its_image_with_no_request(
    ip: InteractiveShell, server: LocalServer, make_form: Callable[..., MeshForm], tmp_path: Path
) -> None:
    ip.run_line_magic("config", f"MeshImageMagics.store_dir = {str(tmp_path)!r}")
    form = make_form("", "--size 64x64\n--seed 11\nA fox to replay")
    form.generate_button.click()
    wait_for(lambda: ended(form), "the run to end")
    assert form.result is not None and form.run is not None and form.run.status == "done"
    before = server.request_count
    magic_line, body = form.code.split("\n", 1)
    ip.run_cell(f"{magic_line} -o t_again --replay\n{body}")
    again = ip.user_ns["t_again"]
    assert server.request_count == before  # answered from the store
    assert again.replayed and again.data == form.result.data  # byte-identical
