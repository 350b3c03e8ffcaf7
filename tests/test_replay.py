"""The store as a user meets it: an identical request answered again from disk with no
request (`--replay`, `MeshImageMagics.replay`, `MESHAPI_REPLAY=1`), `--fresh`, what
counts as identical, `--history` and `mm.history()`, `--usage`, `store = False`, and
generations that survive a kernel killed the moment they arrived. Each test has a store
folder of its own; the embedded backend counts what was sent."""

from __future__ import annotations

import hashlib
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.hosts import host_of
from mesh_magics.local import LocalServer
from mesh_magics.results.history import History
from mesh_magics.results.usage_report import UsageReport
from mesh_magics.store import Store

from .kernel import frontend
from .support import FAKE_KEY, CellRun, run_cell, sent, wait_for

WAIT = 30.0  # generous upper bound of every wait on a condition
FOX = "%%meshimage -o {name} --size 64x64 --seed 7 {flags}\nA fox in the snow"


def fox(ip: InteractiveShell, name: str, flags: str = "") -> CellRun:
    run = run_cell(ip, FOX.format(name=name, flags=flags))
    assert run.success, run.error
    return run


def digests(data: list[bytes]) -> list[str]:
    return [hashlib.sha256(d).hexdigest() for d in data]


# -- replay, fresh, misses -----------------------------------------------------------------


def test_the_same_cell_with_replay_makes_no_request_and_gives_the_same_bytes(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    fox(ip, "t_r1")
    assert server.generation_count == 1

    second = fox(ip, "t_r2", "--replay")
    assert server.generation_count == 1  # answered from the store
    r1, r2 = ip.user_ns["t_r1"], ip.user_ns["t_r2"]
    assert r2.replayed and not r1.replayed
    assert r1.data == r2.data and r2.request_id == r1.request_id
    assert second.result is r2
    (summary,) = [line for line in second.stdout.splitlines() if line.startswith("↺")]
    assert summary.startswith("↺ replayed 1 image · openai/gpt-image-1 · 64x64 png · from ")
    assert summary.endswith(f"({r1.request_id})")

    fox(ip, "t_r3")  # replay is off unless asked for
    assert server.generation_count == 2 and not ip.user_ns["t_r3"].replayed


def test_fresh_asks_again_when_replay_is_configured(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    assert run_cell(ip, "%config MeshImageMagics.replay = True").success
    fox(ip, "t_r1")  # nothing stored yet: a miss
    fox(ip, "t_r2")
    assert server.generation_count == 1 and ip.user_ns["t_r2"].replayed
    fresh = fox(ip, "t_r3", "--fresh")
    assert server.generation_count == 2
    r3 = ip.user_ns["t_r3"]
    assert not r3.replayed and r3.request_id != ip.user_ns["t_r1"].request_id
    assert "↺" not in fresh.stdout and "✓ 1 image" in fresh.stdout


def test_another_seed_is_a_miss(ip: InteractiveShell, server: LocalServer, store_dir: Path) -> None:
    fox(ip, "t_r1")
    run = run_cell(ip, "%%meshimage -o t_r2 --size 64x64 --seed 8 --replay\nA fox in the snow")
    assert run.success, run.error
    assert server.generation_count == 2
    assert not ip.user_ns["t_r2"].replayed
    assert ip.user_ns["t_r2"].data != ip.user_ns["t_r1"].data


def test_meshapi_replay_in_the_environment_turns_replay_on(
    ip: InteractiveShell, server: LocalServer, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHAPI_REPLAY", "1")
    fox(ip, "t_r1")
    fox(ip, "t_r2")
    assert server.generation_count == 1
    assert ip.user_ns["t_r2"].replayed and ip.user_ns["t_r2"].data == ip.user_ns["t_r1"].data
    fox(ip, "t_r3", "--fresh")
    assert server.generation_count == 2
    monkeypatch.setenv("MESHAPI_REPLAY", "0")
    fox(ip, "t_r4")
    assert server.generation_count == 3


def test_how_the_answer_travels_does_not_make_another_request(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    fox(ip, "t_r1", "--no-stream --response-format b64_json")
    assert sent(server).body["stream"] is False
    assert sent(server).body["response_format"] == "b64_json"
    fox(ip, "t_r2", "--replay --stream --partial-images 1")  # streamed, data URLs, previews
    assert server.generation_count == 1
    assert ip.user_ns["t_r2"].replayed
    assert ip.user_ns["t_r2"].data == ip.user_ns["t_r1"].data


# -- history and usage ---------------------------------------------------------------------


def test_history_shows_the_stored_generations_with_thumbnails(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    for prompt in ("A red fox", "An owl at night", "A fox cub, two of them"):
        n = 2 if "two" in prompt else 1
        assert run_cell(ip, f"%%meshimage -o t_x --size 64x64 -n {n}\n{prompt}").success
    run = run_cell(ip, "%mesh history -o t_h fox")
    assert run.success, run.error
    shown = run.result
    assert isinstance(shown, History) and shown is ip.user_ns["t_h"]
    assert [r.prompt for r in shown] == ["A fox cub, two of them", "A red fox"]  # newest first
    assert [len(r) for r in shown] == [2, 1]
    page = shown._repr_html_()
    assert len(re.findall(r'<img src="data:image/(?:png|jpeg);base64,', page)) == 2
    assert "A red fox" in page and "owl" not in page
    assert "A red fox" in repr(shown)

    found = mm.history("fox")
    assert [r.prompt for r in found] == ["A fox cub, two of them", "A red fox"]
    assert found[1].data == ip.user_ns["t_x"].data or found[0].data == ip.user_ns["t_x"].data
    assert len(mm.history()) == 3 and len(mm.history(limit=1)) == 1
    assert server.generation_count == 3  # reading the store sends nothing


def test_usage_counts_requests_images_and_replays(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    assert run_cell(ip, "%%meshimage -o t_u1 --size 64x64 -n 2\nA fox to count").success
    assert run_cell(ip, "%%meshimage -o t_u2 --size 64x64 -n 2 --replay\nA fox to count").success
    assert server.generation_count == 1

    run = run_cell(ip, "%mesh usage")
    assert run.success, run.error
    report = run.result
    assert isinstance(report, UsageReport)
    (line,) = [line for line in report.lines if line.api_host == host_of(server.url)]
    assert line.model == "openai/gpt-image-1"
    assert (line.requests, line.images, line.replays, line.replayed_images) == (1, 2, 1, 2)
    assert line.tokens.get("total_tokens", 0) > 0
    assert report.cost(line) == pytest.approx(2 * 0.042)  # the price /v1/models gives
    text = repr(report)
    assert "openai/gpt-image-1: 1 request, 2 images, 1 replay (2 images), " in text
    assert "~$0.084" in text
    page = report._repr_html_()
    assert "<th>requests</th>" in page and "<th>replays</th>" in page


def test_store_off_writes_nothing_and_replays_nothing(
    ip: InteractiveShell, server: LocalServer, store_dir: Path
) -> None:
    assert run_cell(ip, "%config MeshImageMagics.store = False").success
    fox(ip, "t_r1")
    fox(ip, "t_r2", "--replay")
    assert server.generation_count == 2 and not ip.user_ns["t_r2"].replayed
    assert not store_dir.exists() or list(store_dir.rglob("*")) == []
    assert list(mm.history()) == []


# -- a kernel killed as the answer arrives ---------------------------------------------------


def kernel_env(tmp_path: Path, store: Path) -> dict[str, str | None]:
    return {
        "MESHAPI_API_KEY": FAKE_KEY,
        "MESHAPI_BASE_URL": None,
        "MESHAPI_REPLAY": None,
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "MESH_MAGICS_STORE": str(store),
    }


def stored_runs(store: Path) -> list[Any]:
    """What the store in `store` holds, as another process sees it (nothing before the
    kernel has made it)."""
    if not (store / "index.db").exists():
        return []
    opened = Store(store)
    try:
        return opened.history()
    finally:
        opened.close()


def test_generations_survive_a_kernel_killed_right_after_they_arrived(
    tmp_path: Path, server: LocalServer
) -> None:
    store = tmp_path / "store"
    cell = f"%%meshimage -o fox -n 2 --size 64x64 --seed 3 --base-url {server.url}{{}}\nA fox"
    with frontend(tmp_path, kernel_env(tmp_path, store)) as k:
        k.run("%load_ext mesh_magics")
        k.execute(cell.format(""))
        (stored,) = wait_for(lambda: stored_runs(store), "the run in the store's index")
        os.kill(k.process.pid, signal.SIGKILL)  # the cell is still showing the images
        wait_for(lambda: k.process.poll() is not None, "the kernel to die")
        assert k.process.returncode == -signal.SIGKILL
        k.close(now=True)
    assert server.generation_count == 1
    assert len(stored) == 2 and stored.prompt == "A fox"
    kept = digests(stored.data)

    with frontend(tmp_path, kernel_env(tmp_path, store)) as k:
        shown = k.run(
            "import hashlib, mesh_magics as mm\n"
            "h = mm.history()\n"
            "print(len(h), h[0].prompt, [hashlib.sha256(d).hexdigest() for d in h[0].data])"
        )
        assert k.printed(shown) == f"1 A fox {kept}\n"
        k.run("%load_ext mesh_magics")
        k.run(cell.format(" --replay"))
        assert server.generation_count == 1  # replayed, with no request
        again = k.run("print(fox.replayed, [hashlib.sha256(d).hexdigest() for d in fox.data])")
        assert k.printed(again) == f"True {kept}\n"

    # The kept bytes are whole: the server makes the same images for the same request.
    fresh = mm.generate("A fox", n=2, size="64x64", seed=3, base_url=server.url, progress="none")
    assert digests(fresh.data) == kept
