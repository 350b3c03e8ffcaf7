"""Batches: `%%meshimage --batch` and `mm.batch` send a sweep's runs through the Batch API
(`/v1/files`, `/v1/batches`) of the embedded backend, over real HTTP; a batch is kept in
the store, attached to when the same cell runs again, listed by `%mesh batches`, and its
results land in the store like any run's. Faults: a server that takes no image batches,
a cancelled batch, failed lines, hostile answers."""

from __future__ import annotations

import asyncio
import json
import resource
from pathlib import Path

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.local import LocalServer
from mesh_magics.store import open_store

from .servers import ScriptedServer, send_bytes, send_json
from .support import FAKE_KEY, generations, magics, run_cell

BATCHES = "/v1/batches"
FILES = "/v1/files"
CELL = "%%meshimage --batch -o t_b --seed 1,2 --size 256x256\nA fox at dawn"


def posts(server: LocalServer, path: str) -> list[object]:
    return [r for r in server.requests if r.method == "POST" and r.path.rstrip("/") == path]


def downloads(server: LocalServer) -> int:
    return sum(r.path.endswith("/content") for r in server.requests)


def uploaded_lines(server: LocalServer) -> list[dict[str, object]]:
    """The JSONL the client uploaded, read back from the server's files endpoint."""
    batch = httpx.get(f"{server.url}{BATCHES}", params={"limit": 1}).json()["data"][0]
    content = httpx.get(f"{server.url}{FILES}/{batch['input_file_id']}/content")
    return [json.loads(line) for line in content.text.splitlines()]


# -- through Python ---------------------------------------------------------------------------


def test_mm_batch_gives_the_sweep_of_the_same_runs_with_its_images_stored(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    batch = mm.batch(["A fox", "An owl"], seed=[1, 2], size="256x256", base_url=server.url)
    assert batch.id.startswith("batch_") and not batch.attached
    sweep = batch.result(timeout=60)

    assert isinstance(sweep, mm.ImageSweep)
    assert [(run.prompt, run.params) for run in sweep] == [
        ("A fox", {"seed": 1}), ("A fox", {"seed": 2}),
        ("An owl", {"seed": 1}), ("An owl", {"seed": 2}),
    ]  # fmt: skip
    for run in sweep:
        assert run.status == "done"
        assert run.result.sizes == [(256, 256)]
        assert run.result.request["seed"] == run.params["seed"]
        assert not run.result.in_memory  # stored, so it reads its images from the store
    assert batch.status == "completed" and batch.done()
    # One upload and one batch; nothing went the way of a sweep.
    assert len(posts(server, FILES)) == 1 and len(posts(server, BATCHES)) == 1
    assert generations(server) == []
    # The lines are the bodies a sweep sends, as plain requests, and carry no key.
    lines = uploaded_lines(server)
    assert [line["custom_id"] for line in lines] == ["run-1", "run-2", "run-3", "run-4"]
    assert all(line["url"] == "/v1/images/generations" for line in lines)
    assert [line["body"] for line in lines] == [run.result.request for run in sweep]
    assert all("stream" not in line["body"] for line in lines)
    assert FAKE_KEY not in json.dumps(lines)
    # Every image is in the store with its provenance, as a sweep's would be.
    kept = {r.request_id: r for r in mm.history(limit=10)}
    for run in sweep:
        assert kept[run.request_id].data == run.result.data
        assert kept[run.request_id].request == run.result.request


def test_the_same_batch_asked_again_attaches_and_sends_nothing_new(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    first = mm.batch("A heron", seed=[3, 4], size="256x256", base_url=server.url)
    with pytest.warns(UserWarning, match=rf"attached to batch {first.id}"):
        again = mm.batch("A heron", seed=[3, 4], size="256x256", base_url=server.url)
    assert again.id == first.id and again.attached
    assert len(posts(server, BATCHES)) == 1
    # Other requests are another batch.
    other = mm.batch("A heron", seed=[3, 5], size="256x256", base_url=server.url)
    assert other.id != first.id and len(posts(server, BATCHES)) == 2


def test_an_async_client_submits_a_batch(server: LocalServer, store_dir: Path) -> None:
    async def submit() -> mm.ImageBatch:
        async with mm.AsyncClient(base_url=server.url) as client:
            return await client.batch("A crane", seed=[7], size="256x256")

    batch = asyncio.run(submit())
    assert len(batch.result(timeout=60)) == 1


# -- through the cell -----------------------------------------------------------------------


def test_the_cell_binds_a_handle_and_a_rerun_attaches_then_reads_the_store(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    first = run_cell(ip, CELL)
    assert first.success, first.error_text
    batch = ip.user_ns["t_b"]
    assert isinstance(batch, mm.ImageBatch)
    assert first.result is batch  # Out[n]: the handle, shown as its status line
    assert f"batch {batch.id} · 2 runs" in batch._repr_mimebundle_()["text/plain"]

    again = run_cell(ip, CELL)  # the same cell: the same batch
    assert again.success, again.error_text
    assert f"attached to batch {batch.id}" in again.stderr
    assert ip.user_ns["t_b"].id == batch.id
    assert len(posts(server, BATCHES)) == 1

    sweep = ip.user_ns["t_b"].result(timeout=60)
    assert [run.status for run in sweep] == ["done", "done"]
    read = downloads(server)
    assert read >= 1

    third = run_cell(ip, CELL)  # collected before: its runs come from the store
    assert third.success, third.error_text
    again_sweep = ip.user_ns["t_b"].result(timeout=60)
    assert [r.result.data for r in again_sweep] == [r.result.data for r in sweep]
    assert downloads(server) == read and len(posts(server, BATCHES)) == 1


def test_mesh_batches_lists_them_and_refresh_asks_the_server(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    assert run_cell(ip, CELL).success
    batch = ip.user_ns["t_b"]
    assert server.wait_for_batch(batch.id, 60) is not None, "the batch did not end"
    listed = run_cell(ip, "%mesh batches")
    assert batch.id in repr(listed.result) and "A fox at dawn" in repr(listed.result)
    refreshed = run_cell(ip, "%mesh batches --refresh -o t_list")
    assert refreshed.success, refreshed.error_text
    assert [(r.id, r.status, r.completed) for r in ip.user_ns["t_list"]] == [
        (batch.id, "completed", 2)
    ]
    assert "<td>completed</td>" in refreshed.result._repr_html_()


def test_a_dry_run_shows_the_jsonl_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer
) -> None:
    out = run_cell(ip, "%%meshimage --batch --dry-run --seed 1,2,3,4,5\nA fox")
    assert out.success, out.error_text
    text = out.outputs[0]["text/plain"]
    assert "a batch of 5 runs" in text and '"custom_id":"run-1"' in text
    assert "… and 2 more" in text
    assert server.requests == []


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("--batch --bg", "--batch and --bg do not go together"),
        ("--batch --save out", "--batch and --save do not go together"),
        ("--batch --replay", "--batch and --replay do not go together"),
        ("--batch --fresh", "--batch and --fresh do not go together"),
        ("--batch --edit t_img", "an edit (--edit) cannot go in a batch"),
    ],
)
def test_what_a_batch_cannot_do_is_one_line_and_sends_nothing(
    ip: InteractiveShell, server: LocalServer, line: str, said: str
) -> None:
    from .support import png

    ip.user_ns["t_img"] = png()
    out = run_cell(ip, f"%%meshimage {line} -o t_b\nA fox")
    assert not out.success
    assert isinstance(out.error, mm.OptionError)
    assert said in out.error_text and "\n" not in out.error_text
    assert "t_b" not in ip.user_ns
    assert not any(r.method == "POST" for r in server.requests)


# -- faults -----------------------------------------------------------------------------------


def test_a_server_that_takes_no_image_batches_says_so_in_one_line(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    server.batch_endpoints = ("/v1/chat/completions",)
    out = run_cell(ip, CELL)
    assert not out.success
    assert isinstance(out.error, mm.BatchError)
    assert "refused an image batch" in out.error_text
    assert "drop --batch" in out.error_text and "\n" not in out.error_text
    assert "t_b" not in ip.user_ns
    store = open_store(magics(ip).settings())
    assert store is not None and store.batches() == []


def test_a_server_without_a_batch_api_says_so_in_one_line(
    ip: InteractiveShell, store_dir: Path
) -> None:
    with ScriptedServer({}) as api:  # every path is a 404
        magics(ip).base_url = api.url
        out = run_cell(ip, CELL)
    assert isinstance(out.error, mm.BatchError), out.error_text
    assert "took no batch file (HTTP 404" in out.error_text


def test_a_cancelled_batch_keeps_the_runs_that_finished(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    server.batch_latency = 0.3  # a second per three lines: time to cancel in between
    batch = mm.batch("A lynx", seed=list(range(1, 9)), size="256x256", base_url=server.url)
    one_done = server.wait_for_batch(
        batch.id, 60, until=lambda b: b["request_counts"]["completed"] >= 1
    )
    assert one_done is not None and one_done["status"] == "in_progress"
    assert batch.cancel()
    with pytest.raises(mm.SweepError) as caught:
        batch.result(timeout=60)
    sweep = caught.value.sweep
    statuses = [run.status for run in sweep]
    assert "done" in statuses and "cancelled" in statuses
    assert all(run.result is not None for run in sweep if run.status == "done")
    assert batch.status == "cancelled" and not batch.cancel()


def test_failed_lines_are_the_sweeps_failed_runs(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    batch = mm.batch(
        "A wren", model=["openai/gpt-image-1", "nosuch/model"], size="256x256",
        base_url=server.url,
    )  # fmt: skip
    with pytest.raises(mm.SweepError) as caught:
        batch.result(timeout=60)
    good, bad = caught.value.sweep
    assert good.status == "done" and bad.status == "failed"
    assert isinstance(bad.error, mm.APIError) and bad.error.status == 404
    assert "1 of 2 runs failed" in str(caught.value)


def test_hostile_batch_answers_are_refused_in_one_line(
    ip: InteractiveShell, store_dir: Path
) -> None:
    created = {"id": "batch_1", "status": "completed", "output_file_id": "file-out"}
    endless = b'{"custom_id": "run-1", "response": {"body": "' + b"A" * (40 << 20)
    routes = {
        FILES: send_json({"id": "file-in"}),
        BATCHES: send_json(created),
        f"{BATCHES}/batch_1": send_json(created),
        f"{FILES}/file-out/content": send_bytes(endless),
    }
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with ScriptedServer(routes) as api:
        magics(ip).base_url = api.url
        magics(ip).max_response_mb = 8
        batch = mm.batch("A fox", seed=[1], size="256x256")
        too_large = r"passed its 8\.0 MiB cap \(the answers of 1 run\)"
        with pytest.raises(mm.ResponseTooLargeError, match=too_large):
            batch.result(timeout=30)
        # An id that could not go in a URL path is not used.
        routes[BATCHES] = send_json({**created, "id": "../../files/x"})
        with pytest.raises(mm.StreamError, match="no usable id"):
            mm.batch("A fox", seed=[2], size="256x256")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256


def test_the_store_keeps_no_key_for_a_batch(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    assert run_cell(ip, CELL).success
    ip.user_ns["t_b"].result(timeout=60)
    for path in store_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in repr(ip.user_ns["t_b"])


# -- across a kernel restart ------------------------------------------------------------------


def test_a_restarted_kernel_attaches_to_its_batch_instead_of_sending_another(
    tmp_path: Path,
) -> None:
    from .kernel import frontend, kernel_env

    env = {**kernel_env(tmp_path / "ipython"), "MESH_MAGICS_STORE": str(tmp_path / "store")}
    with LocalServer() as api, frontend(tmp_path, env) as kernel:
        setup = f"%load_ext mesh_magics\n%config MeshImageMagics.base_url = '{api.url}'"
        kernel.run(setup)
        kernel.run(CELL)
        submitted = kernel.printed(kernel.run("print(t_b.id)")).strip()
        assert submitted.startswith("batch_")

        kernel.restart()
        kernel.run(setup)
        rerun = kernel.run(CELL)
        assert f"attached to batch {submitted}" in kernel.printed(rerun, "stderr")
        collected = kernel.run("s = t_b.result(timeout=60)\nprint(t_b.id, [r.status for r in s])")
        assert kernel.printed(collected).strip() == f"{submitted} ['done', 'done']"
        listed = kernel.run("%mesh batches")
        shown = [m["content"]["data"]["text/plain"] for m in kernel.of(listed, "execute_result")]
        assert any(submitted in text for text in shown), shown
    assert len(posts(api, BATCHES)) == 1 and len(posts(api, FILES)) == 1


def test_a_table_goes_in_a_batch_one_run_a_row(
    ip: InteractiveShell, server: LocalServer, store_dir: Path, tmp_path: Path
) -> None:
    rows = [{"prompt": "A fox", "seed": 1}, {"prompt": "An owl", "size": "384x256"}]
    sweep = mm.batch(rows, size="256x256", base_url=server.url).result(timeout=60)
    assert [run.result.sizes for run in sweep] == [[(256, 256)], [(384, 256)]]
    assert [run.result.request.get("seed") for run in sweep] == [1, None]

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nA stag\nA hare\n")
    out = run_cell(ip, f"%%meshimage --batch -o t_b --size 256x256\n--prompts {prompts}")
    assert out.success, out.error_text
    assert [run.prompt for run in ip.user_ns["t_b"].result(timeout=60)] == ["A stag", "A hare"]


def test_a_store_made_before_batches_gains_them(tmp_path: Path) -> None:
    import sqlite3
    import time

    from mesh_magics.store import BatchRecord, Store
    from mesh_magics.store.index import SCHEMA_VERSION

    folder = tmp_path / "old"
    Store(folder).close()
    db = sqlite3.connect(folder / "index.db")  # as version 3 left it
    db.executescript("DROP TABLE batches; PRAGMA user_version = 3;")
    db.close()
    store = Store(folder)
    (version,) = store._db.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION == 4
    store.add_batch(BatchRecord("batch_1", "key", "local", time.time(), 2, 2, "A fox"))
    assert [record.id for record in store.batches()] == ["batch_1"]
    store.close()


def test_an_interrupt_stops_the_wait_and_the_batch_goes_on(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    from .support import interrupt_when

    server.batch_latency = 30.0  # no line ends while the test looks
    batch = mm.batch("A stoat", seed=[1, 2], size="256x256", base_url=server.url)
    waited_for = len(server.requests)
    interrupter = interrupt_when(lambda: len(server.requests) > waited_for + 1)
    try:
        with pytest.raises(mm.WaitInterrupted, match=rf"batch {batch.id} goes on at the server"):
            batch.wait()
    finally:
        interrupter.finished()
    assert batch.status == "in_progress"  # the batch itself was not touched
    assert batch.cancel()
