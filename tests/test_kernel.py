"""Background runs in a real kernel, driven as JupyterLab drives it (`tests/kernel.py`):
cells sent with `allow_stdin: true`, every iopub message kept, a widget click sent as the
comm message a widget frontend sends. The MeshAPI is the embedded backend, in this
process, held when a test needs to decide when it answers.

One kernel serves most tests (`notebook`); the nbclient run and the shutdown have their
own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .kernel import Frontend, HeldServer, Msg, display_id, frontend, kernel_env, parent_of
from .support import sent

HEADING = "openai/gpt-image-1 · 64x64 · 1 image"
SLOW = 30.0  # seconds the server takes where a test must cancel or leave a run going


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    """A kernel with the extension loaded and the default progress ('auto'): widgets,
    since the frontend allows stdin and ipywidgets imports."""
    home = tmp_path_factory.mktemp("ipython")
    with frontend(tmp_path_factory.mktemp("kernel"), kernel_env(home)) as k:
        k.run("%load_ext mesh_magics")
        yield k


@pytest.fixture
def api() -> Iterator[HeldServer]:
    with HeldServer(ping_interval=0.2) as server:
        yield server


@pytest.fixture
def notebook(kernel: Frontend, api: HeldServer) -> Frontend:
    kernel.run(f"%config MeshImageMagics.base_url = '{api.url}'")
    return kernel


def images_in(data: dict[str, Any]) -> list[str]:
    """The images a mime bundle shows: image data, and data URIs in its HTML."""
    found = [mime for mime in data if mime.startswith("image/")]
    return found + re.findall(r'src="data:(image/\w+);', data.get("text/html", ""))


def text_of(msg: Msg) -> str:
    return str(msg["content"]["data"].get("text/plain", ""))


def ended(k: Frontend, did: str) -> Msg:
    """The update that ends a progress view: its summary or failure line."""
    return k.wait_for(
        lambda: next((m for m in k.updates(did) if text_of(m)[:1] in "✓✗"), None),
        "the progress view to end",
    )


def comm_ids(msgs: list[Msg]) -> set[str]:
    return {m["content"]["comm_id"] for m in msgs}


def shows(k: Frontend, cell: str, value: str) -> bool:
    """Whether one of the cell's widgets has been updated to show `value`."""
    widgets = comm_ids(k.of(cell, "comm_open"))
    return any(
        m["content"]["data"].get("state", {}).get("value") == value
        for m in list(k.messages)
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in widgets
    )


# -- a background cell, and a cell that runs meanwhile -----------------------------------


@dataclass
class BackgroundStory:
    k: Frontend
    first: str  # `%%meshimage --bg -o fox`, sent while the server holds its answer
    second: str  # a cell run meanwhile
    requests_when_second_ran: int


@pytest.fixture(scope="module")
def story(kernel: Frontend) -> Iterator[BackgroundStory]:
    """The user starts a background run, runs another cell while the server is still at
    work, and then the server answers."""
    with HeldServer(ping_interval=0.2) as server:
        k = kernel
        server.hold()
        first = k.execute(f"%%meshimage --bg -o fox --size 64x64 --base-url {server.url}\nA fox")
        k.reply(first)
        k.wait_for(server.generations, "the request to reach the server")
        second = k.run("print('meanwhile:', type(fox).__name__, fox.status, fox.done())")
        ran = server.generations()
        server.release()
        (view, _slot) = k.displays(first)
        ended(k, view)
        yield BackgroundStory(k, first, second, ran)


def test_a_background_cell_returns_before_the_server_has_answered(
    story: BackgroundStory,
) -> None:
    k = story.k
    assert k.reply(story.first)["content"]["status"] == "ok"  # came while the server held it
    assert story.requests_when_second_ran == 1  # it had the request, and had not answered
    ended_at = k.index_of_idle(story.first)
    assert ended_at is not None
    view, slot = k.displays(story.first)
    came = [k.messages.index(m) for m in [ended(k, view), *k.updates(slot)]]
    assert ended_at < min(came)  # the cell had ended before the summary and images came
    assert k.printed(story.first) == ""
    assert "running in the foreground" not in k.printed(story.first, "stderr")


def test_another_cell_runs_and_prints_while_it_generates(story: BackgroundStory) -> None:
    k = story.k
    assert k.printed(story.second) == "meanwhile: Generation running False\n"
    (view, _slot) = k.displays(story.first)
    summary = k.messages.index(ended(k, view))
    second_ended = k.index_of_idle(story.second)
    assert second_ended is not None and second_ended < summary  # before the run ended


def test_the_images_arrive_in_the_output_of_the_cell_that_started_the_run(
    story: BackgroundStory,
) -> None:
    k = story.k
    first_outputs = k.of(story.first, "display_data")
    assert len(first_outputs) == 2 and all(display_id(m) for m in first_outputs)
    view, slot = k.displays(story.first)
    assert text_of(first_outputs[0]).startswith("⏳")  # a placeholder: the cell returns at once
    assert text_of(first_outputs[1]) == ""  # the slot, empty until the images come
    first_update = k.updates(view)[0]["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" in first_update  # the run's widget view

    summary = ended(k, view)
    assert text_of(summary).startswith("✓ 1 image · openai/gpt-image-1 · 64x64")
    images = k.wait_for(lambda: k.updates(slot), "the images")[-1]
    assert images_in(images["content"]["data"])
    for update in [*k.updates(view), *k.updates(slot)]:
        assert parent_of(update) == story.first  # in the first cell, not the latest
    widgets = comm_ids(k.of(story.first, "comm_open"))
    from_the_run = [
        m
        for m in list(k.messages)
        if m["msg_type"] in ("comm_msg", "comm_close")
        and m["content"]["comm_id"] in widgets
        and k.messages.index(m) > k.index_of_idle(story.first)  # type: ignore[operator]
    ]
    assert from_the_run and {parent_of(m) for m in from_the_run} == {story.first}

    outputs = ("stream", "display_data", "update_display_data", "execute_result", "error")
    second = k.of(story.second, *outputs)
    assert [m["msg_type"] for m in second] == ["stream"]  # only its printed line
    assert not {view, slot} & {display_id(m) for m in second}


# -- widgets: Cancel where a click can arrive --------------------------------------------


def test_cancel_click_closes_the_request_and_binds_nothing(
    notebook: Frontend, api: HeldServer
) -> None:
    k = notebook
    api.latency = SLOW
    cell = k.execute("%%meshimage --bg -o fox_c --size 64x64\nA fox I will cancel")
    assert k.reply(cell)["content"]["status"] == "ok"
    button = k.wait_for(lambda: k.widgets(cell, "ButtonModel"), "the Cancel button")[0]
    assert button["content"]["data"]["state"]["description"] == "Cancel"
    k.wait_for(lambda: shows(k, cell, "processing"), "the server to start answering")

    k.click(button["content"]["comm_id"])

    assert api.wait_for_disconnect(10), "the request was not closed"
    (view, slot) = k.displays(cell)
    failure = text_of(ended(k, view))
    assert failure.startswith(f"✗ {HEADING}") and "cancelled" in failure
    check = k.run(
        "print(fox_c.wait(10), fox_c.status)\n"
        "for touch in (lambda: len(fox_c), lambda: fox_c.result(timeout=5)):\n"
        "    try:\n"
        "        touch()\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__)\n"
        "    else:\n"
        "        print('a result')\n"
    )
    assert k.printed(check) == "True cancelled\nGenerationCancelled\nGenerationCancelled\n"
    assert not any(images_in(m["content"]["data"]) for m in k.updates(slot))
    assert api.generations() == 1


def test_a_blocking_cell_shows_how_to_cancel_and_a_background_cell_a_button(
    notebook: Frontend,
) -> None:
    k = notebook
    blocking = k.run("%%meshimage -o fox_b --size 64x64\nA fox, waited for")
    assert k.widgets(blocking, "ButtonModel") == []
    hints = [m["content"]["data"]["state"]["value"] for m in k.widgets(blocking, "HTMLModel")]
    assert any("interrupt the kernel to cancel" in hint for hint in hints)
    (result,) = k.of(blocking, "execute_result")
    assert images_in(result["content"]["data"])

    background = k.run("%%meshimage --bg -o fox_g --size 64x64\nA fox, left to run")
    (view, _slot) = k.displays(background)
    assert text_of(ended(k, view)).startswith("✓")  # the run built its view, then ended
    assert len(k.widgets(background, "ButtonModel")) == 1
    hints = [m["content"]["data"]["state"]["value"] for m in k.widgets(background, "HTMLModel")]
    assert not any("interrupt" in hint for hint in hints)


# -- jobs, waiting, top-level await ------------------------------------------------------


def test_a_background_sweep_saves_and_a_failed_save_is_one_line_in_its_own_output(
    notebook: Frontend, api: HeldServer, tmp_path: Path
) -> None:
    k = notebook
    save_to = tmp_path / "bg-saved"
    sweep_cell = k.run(f"%%meshimage --bg -o grid --size 64x64 --seed 1,2 --save {save_to}\nA fox")
    (view, _slot) = k.displays(sweep_cell)
    assert text_of(ended(k, view)).startswith("✓ 2 runs")
    assert sorted(p.name for p in save_to.iterdir())[-2:] == ["grid.png", "manifest.jsonl"]
    assert sorted(p.suffix for p in save_to.iterdir()) == [".jsonl", *[".png"] * 3]

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    lost_cell = k.run(f"%%meshimage --bg -o lost --size 64x64 --save {blocker / 'x'}\nAn owl")
    (view, slot) = k.displays(lost_cell)
    line = text_of(ended(k, view))
    assert line.startswith("✗ ") and "SaveError: " in line and "\n" not in line
    assert any(images_in(m["content"]["data"]) for m in k.updates(slot))  # kept, shown
    later = k.run("print('a later cell')")
    assert k.printed(later) == "a later cell\n"  # no traceback lands in it
    assert not k.of(later, "error") and not k.printed(later, "stderr")
    assert k.run("print(type(lost).__name__, lost.status)") and True


def test_jobs_lists_the_run_and_wait_waits_for_it(notebook: Frontend, api: HeldServer) -> None:
    k = notebook
    api.hold()
    k.run("%%meshimage --bg -o fox_w --size 64x64\nA fox to wait for")
    k.wait_for(api.generations, "the request to reach the server")

    listing = k.run("%mesh jobs")
    (table,) = k.of(listing, "execute_result")
    assert text_of(table).splitlines()[-1].startswith(f"{HEADING} · running · ")
    assert "<td>running</td>" in table["content"]["data"]["text/html"]

    waiting = k.execute("print(fox_w.status, flush=True)\n%mesh wait\nprint(fox_w.status)")
    k.wait_for(lambda: k.printed(waiting) == "running\n", "the cell to start waiting")
    api.release()  # only now can the run end: the cell must still be waiting
    k.wait_idle(waiting)
    assert k.reply(waiting)["content"]["status"] == "ok"
    assert k.printed(waiting) == "running\ndone\n"

    listing = k.run("%mesh jobs")
    (table,) = k.of(listing, "execute_result")
    last = text_of(table).splitlines()[-1]
    assert last.startswith(f"{HEADING} · done · ")
    assert last.endswith(f" · {sent(api).headers['x-request-id']}")  # the request's id


def test_top_level_await_of_agenerate_returns_the_images_with_progress(
    kernel: Frontend, api: HeldServer
) -> None:
    k = kernel
    cell = k.run(
        "import mesh_magics as mm\n"
        f"r = await mm.agenerate('A fox, awaited', base_url='{api.url}', size='64x64')\n"
        "print(type(r).__name__, len(r), r[0].size)"
    )
    assert k.printed(cell) == "ImageResult 1 (64, 64)\n"
    (view,) = k.displays(cell)
    assert text_of(ended(k, view)).startswith("✓ 1 image")
    assert all(parent_of(m) == cell for m in k.updates(view))


# -- where no later update can be shown: nbclient --------------------------------------


def run_headless(tmp_path: Path, *cells: str) -> list[Any]:
    """Execute cells as nbclient and papermill do (no live frontend: `allow_stdin` is
    false); the saved notebook's cells, read back. A failing cell is allowed: the
    caller checks its error output."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(nb, saved)
    return list(nbformat.read(saved, as_version=4).cells)


def shown(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def test_under_nbclient_a_background_cell_lands_its_images_in_its_own_cell(
    tmp_path: Path, api: HeldServer
) -> None:
    cells = run_headless(
        tmp_path,
        f"%load_ext mesh_magics\n%config MeshImageMagics.base_url = '{api.url}'",
        "%%meshimage --bg -o fox --size 64x64\n-p mesh_local='{\"latency\": 0.5}'\nA fox",
        "print(fox.status)",
    )
    notes = [o.text for o in cells[1].outputs if o.output_type == "stream"]
    assert not any("foreground" in note for note in notes)
    assert any(text_of_output(o).startswith("✓ 1 image") for o in shown(cells[1]))
    assert sum(len(images_in(o.data)) for o in shown(cells[1])) == 1
    assert cells[2].outputs[0].text == "done\n"
    assert "widget" not in (tmp_path / "saved.ipynb").read_text()


def test_under_nbclient_background_runs_run_together_and_a_failure_fails_their_cell(
    tmp_path: Path, api: HeldServer
) -> None:
    api.latency = 1.0
    save_to = tmp_path / "saved-images"
    unwritable = tmp_path / "a-file"
    unwritable.write_text("not a folder")
    cells = run_headless(
        tmp_path,
        f"%load_ext mesh_magics\n%config MeshImageMagics.base_url = '{api.url}'\n"
        "import mesh_magics as mm",
        "runs = [mm.start(f'a fox {i}', size='64x64', progress='none') for i in range(4)]",
        f"%%meshimage --bg -o grid --size 64x64 --seed 1,2 --save {save_to}\nA fox",
        f"%%meshimage --bg -o lost --size 64x64 --save {unwritable / 'x'}\nAn owl",
        "print('after the failure')",
    )
    assert api.max_in_flight >= 4  # the four runs of cell 1 were in flight together
    assert not [o for o in cells[1].outputs if o.output_type == "stream"]  # no note at all
    grid = shown(cells[2])
    assert sum(len(images_in(o.data)) for o in grid) == 2  # the grid, in the saved file
    assert sorted(p.name for p in save_to.iterdir())[-2:] == ["grid.png", "manifest.jsonl"]
    assert sorted(p.suffix for p in save_to.iterdir()) == [".jsonl", *[".png"] * 3]
    errors = [o for o in cells[3].outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["SaveError"]
    assert sum(len(images_in(o.data)) for o in shown(cells[3])) == 1  # kept and shown
    assert cells[4].outputs[0].text == "after the failure\n"  # allow_errors: it ran on


def text_of_output(output: Any) -> str:
    return str(output.data.get("text/plain", ""))


# -- shutting down with a run in flight -------------------------------------------------


def test_shutting_the_kernel_down_closes_a_run_in_flight(tmp_path: Path, api: HeldServer) -> None:
    api.latency = SLOW
    with frontend(tmp_path, kernel_env(tmp_path / "ipython")) as k:
        k.run(f"%load_ext mesh_magics\n%config MeshImageMagics.base_url = '{api.url}'")
        cell = k.run("%%meshimage --bg -o fox --size 64x64\nA fox, left behind")
        k.wait_for(lambda: shows(k, cell, "processing"), "the server to start answering")
        k.km.shutdown_wait_time = 30.0  # SIGTERM only after 15 s, SIGKILL after 30 s

        began = time.monotonic()
        k.close()
        took = time.monotonic() - began

        assert not k.is_alive()
        assert took < 15, f"the kernel took {took:.1f} s to exit"
        assert k.exit_code == 0
        assert api.wait_for_disconnect(5), "the request was left open"
