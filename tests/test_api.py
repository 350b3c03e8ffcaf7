"""`mm.generate()` and `mm.agenerate()` as their users meet them: in a plain script (in a
subprocess, so nothing of IPython is loaded), in asyncio code, and in an IPython session
whose `%config` they follow. Every request goes over real loopback HTTP to the embedded
backend, or to a scripted server where a test must decide when the answer comes."""

from __future__ import annotations

import asyncio
import math
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mesh_magics as mm
from mesh_magics.client import prepare as road
from mesh_magics.engine.generation import Generation
from mesh_magics.engine.loop import engine
from mesh_magics.errors import AuthenticationError, GenerationCancelled, OptionError
from mesh_magics.local import LocalServer
from mesh_magics.results.result import ImageResult

from .servers import ScriptedServer, b64, png_bytes, sse_frame
from .support import run_cell, run_script, sent, settled, start_script

WITHIN = 20.0  # seconds: a generous bound for a subprocess on a loaded 2-core machine


def nested(depth: int) -> list[Any]:
    """A list in a list ... `depth` deep, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# -- plain scripts ---------------------------------------------------------------------------


LOADED = 'print("loaded", "IPython" in sys.modules, "ipywidgets" in sys.modules)'


def test_a_script_gets_its_images_with_progress_on_stderr(server: LocalServer) -> None:
    done = run_script(f"""
        import sys
        import mesh_magics as mm
        result = mm.generate("a fox at dawn", base_url={server.url!r}, size="64x64", n=2)
        print(len(result), result[0].size, result.prompt)
        {LOADED}
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2 (64, 64) a fox at dawn\nloaded False False\n"
    lines = done.stderr.splitlines()
    assert lines[0] == "⏳ openai/gpt-image-1 · 64x64 · 2 images · started"
    assert any(line.strip().startswith("processing") for line in lines)
    assert lines[-1].startswith("✓ 2 images · openai/gpt-image-1 · 64x64 png · ")
    assert "\x1b" not in done.stderr  # not a terminal: plain lines, no rewriting
    assert sent(server).body["n"] == 2


def test_widget_progress_in_a_script_says_it_needs_a_kernel(server: LocalServer) -> None:
    done = run_script(f"""
        import mesh_magics as mm
        for call in (mm.generate, mm.sweep):
            try:
                call("a fox", base_url={server.url!r}, size="64x64", progress="widget")
            except mm.OptionError as exc:
                print(type(exc).__name__ + ": " + str(exc))
    """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    for line in lines:
        assert line.startswith("OptionError: progress 'widget' needs a Jupyter kernel"), line
        assert "'auto', 'text' or 'none'" in line
    assert server.request_count == 0


def test_stream_false_from_a_script_sends_one_plain_request(server: LocalServer) -> None:
    done = run_script(f"""
        import asyncio
        import mesh_magics as mm
        where = dict(base_url={server.url!r}, size="64x64", progress="none", stream=False)
        result = mm.generate("a plain fox", n=2, **where)
        print(len(result), result[0].size, result.request["stream"], result.prompt)
        result = asyncio.run(mm.agenerate("an async fox", **where))
        print(len(result), result.request["stream"])
        sweep = mm.sweep(["a fox", "an owl"], **where)
        print(len(sweep.results), [r.request["stream"] for r in sweep.results])
        try:
            mm.generate("a fox", stream="sometimes", base_url={server.url!r})
        except mm.OptionError as exc:
            print(exc)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "2 (64, 64) False a plain fox",
        "1 False",
        "2 [False, False]",
        "stream: invalid value 'sometimes'; allowed: true or false",
    ]
    received = [r for r in server.requests if r.path.endswith("/images/generations")]
    assert len(received) == 4
    for request in received:
        assert request.body["stream"] is False
        assert request.headers.get("accept") != "text/event-stream"  # not an SSE request


def test_a_script_with_progress_none_prints_nothing(server: LocalServer) -> None:
    done = run_script(f"""
        import sys
        import mesh_magics as mm
        result = mm.generate("a fox", base_url={server.url!r}, size="64x64", progress="none")
        print(len(result))
        {LOADED}
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\nloaded False False\n"
    assert done.stderr == ""


def test_a_failure_in_a_script_is_an_exception_and_a_failed_line(server: LocalServer) -> None:
    done = run_script(f"""
        import mesh_magics as mm
        try:
            mm.generate("a fox", base_url={server.url!r}, size="64x64",
                        params={{"mesh_local": {{"fault": "status:401"}}}})
        except mm.APIError as error:
            print(type(error).__name__, "401" in str(error))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "AuthenticationError True\n"
    assert done.stderr.splitlines()[-1].startswith(
        "✗ openai/gpt-image-1 · 64x64 · 1 image · failed"
    )


def test_ctrl_c_in_a_script_cancels_the_run_and_closes_its_connection(
    server: LocalServer,
) -> None:
    """In Python an interrupt stays a KeyboardInterrupt (a `RunInterrupted`)."""
    server.latency = 30
    script = start_script(f"""
        import mesh_magics as mm
        try:
            mm.generate("a fox", base_url={server.url!r}, size="64x64")
        except KeyboardInterrupt as error:
            print(type(error).__name__, error.partial)
            print("cancelled:", error)
    """)
    try:
        assert settled(lambda: server.request_count == 1, timeout=WITHIN)
        interrupted = time.monotonic()
        script.send_signal(signal.SIGINT)
        out, err = script.communicate(timeout=WITHIN)
        assert time.monotonic() - interrupted < WITHIN
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 0, err
    assert out.startswith("RunInterrupted None\ncancelled: cancelled by an interrupt after ")
    assert out.rstrip().endswith("the request was closed, nothing was bound")
    assert err.splitlines()[-1].startswith("✗ openai/gpt-image-1 · 64x64 · 1 image · cancelled")
    assert server.wait_for_disconnect(5)


def held_stream(release: threading.Event) -> Any:
    """An SSE answer that says `processing`, then holds until `release` (or the client
    hangs up), then sends one image and [DONE]."""
    processing = sse_frame({"object": "image.chunk", "created": 1, "status": "processing"})
    final = sse_frame(
        {
            "object": "image.chunk",
            "created": 1,
            "status": "completed",
            "model": "openai/gpt-image-1",
            "data": [{"b64_json": b64(png_bytes(16, 16))}],
        }
    )

    def chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        handler.wfile.flush()

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        chunk(handler, processing)
        connection = handler.connection
        while not release.wait(0.05):
            readable, _, _ = select.select([connection], [], [], 0)
            if readable and not connection.recv(1, socket.MSG_PEEK):  # the client hung up
                handler.close_connection = True
                return
        chunk(handler, final)
        chunk(handler, b"data: [DONE]\n\n")
        handler.wfile.write(b"0\r\n\r\n")
        handler.close_connection = True

    return route


@pytest.fixture
def held() -> Iterator[tuple[ScriptedServer, threading.Event]]:
    release = threading.Event()
    with ScriptedServer({}) as scripted:
        scripted.routes["/v1/images/generations"] = held_stream(release)
        try:
            yield scripted, release
        finally:
            release.set()


def test_background_in_a_script_returns_a_handle_at_once_and_the_result_later(
    held: tuple[ScriptedServer, threading.Event],
) -> None:
    scripted, release = held
    script = start_script(f"""
        import sys
        import mesh_magics as mm
        handle = mm.start("a fox", base_url={scripted.url!r})
        print(type(handle).__name__, handle.status, handle.done(), flush=True)
        try:
            handle[0]
        except mm.StillRunning as error:
            print("StillRunning:", error, flush=True)
        result = handle.result(timeout=30)
        print(handle.status, len(handle), handle[0].size, result is handle.result())
        {LOADED}
    """)
    try:
        assert script.stdout is not None
        assert script.stdout.readline() == "Generation running False\n"
        assert script.stdout.readline().startswith("StillRunning: this generation is still running")
        assert settled(lambda: scripted.paths() == ["/v1/images/generations"], timeout=WITHIN)
        release.set()
        out, err = script.communicate(timeout=WITHIN)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 0, err
    assert out == "done 1 (16, 16) True\nloaded False False\n"
    assert err == ""  # a background run in a script shows no progress


def test_a_script_exits_promptly_with_a_background_run_still_going(server: LocalServer) -> None:
    server.latency = 30
    script = start_script(f"""
        import sys
        import mesh_magics as mm
        handle = mm.start("a fox", base_url={server.url!r}, size="64x64")
        handle.add_done_callback(lambda run: print("settled:", run.status, file=sys.stderr))
        print(handle.status, flush=True)
        input()  # the test says when to end, once the server has the request
        print(handle.status, flush=True)
    """)
    try:
        assert script.stdout is not None and script.stdin is not None
        assert script.stdout.readline() == "running\n"
        assert settled(lambda: server.request_count == 1, timeout=WITHIN)
        told = time.monotonic()
        script.stdin.write("\n")
        script.stdin.flush()
        out, err = script.communicate(timeout=WITHIN)
        assert time.monotonic() - told < WITHIN
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 0, err
    assert out == "running\n"  # still running when the script ended
    # at exit the engine cancelled the run and let it unwind: no traceback, no "Task was
    # destroyed but it is pending"; the client closed its connection itself
    assert err == "settled: cancelled\n"
    assert server.wait_for_disconnect(5), "the run's connection was not closed at exit"


def test_a_done_callback_can_chain_another_generation(server: LocalServer) -> None:
    done = run_script(f"""
        import threading
        import mesh_magics as mm
        chained = threading.Event()
        def chain(first):
            try:
                nxt = mm.generate("an owl", base_url={server.url!r}, size="64x64", progress="none")
                print("chained", len(nxt), flush=True)
            except Exception as error:  # a clear refusal is fine too
                print("refused:", type(error).__name__, flush=True)
            chained.set()
        first = mm.start("a fox", base_url={server.url!r}, size="64x64")
        first.add_done_callback(chain)
        print("in time:", chained.wait(10), flush=True)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "in time: True"


# -- asyncio -----------------------------------------------------------------------------------


def test_agenerate_under_asyncio_run(server: LocalServer) -> None:
    result = asyncio.run(mm.agenerate("a fox", base_url=server.url, size="64x64", progress="none"))
    assert isinstance(result, ImageResult)
    assert len(result) == 1 and result[0].size == (64, 64)
    assert sent(server).body["prompt"] == "a fox"


def test_two_agenerate_calls_run_side_by_side(server: LocalServer) -> None:
    server.latency = 0.5

    async def both() -> list[ImageResult]:
        return await asyncio.gather(
            mm.agenerate("a fox", base_url=server.url, size="64x64", progress="none"),
            mm.agenerate("an owl", base_url=server.url, size="32x32", n=2, progress="none"),
        )

    fox, owl = asyncio.run(both())
    assert (fox.prompt, len(fox), fox[0].size) == ("a fox", 1, (64, 64))
    assert (owl.prompt, len(owl), owl[0].size) == ("an owl", 2, (32, 32))
    assert sorted(r.body["prompt"] for r in server.requests) == ["a fox", "an owl"]


def test_agenerate_leaves_the_callers_loop_free(server: LocalServer) -> None:
    server.latency = 0.5

    async def main() -> tuple[ImageResult, int]:
        beats = 0
        task = asyncio.ensure_future(
            mm.agenerate("a fox", base_url=server.url, size="64x64", progress="none")
        )
        while not task.done():
            beats += 1
            await asyncio.sleep(0.01)
        return task.result(), beats

    result, beats = asyncio.run(main())
    assert len(result) == 1
    assert beats > 5  # the caller's loop ran while the image was being made


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Generation]:
    """The handles of the runs `generate()`/`agenerate()` start in this test."""
    made: list[Generation] = []
    prepare = road.prepare

    def keep(*args: Any, **kwargs: Any) -> Generation:
        run = prepare(*args, **kwargs)
        made.append(run)
        return run

    monkeypatch.setattr(road, "prepare", keep)
    return made


def test_cancelling_the_awaiting_task_cancels_the_run(
    server: LocalServer, runs: list[Generation]
) -> None:
    server.latency = 30

    async def main() -> None:
        task = asyncio.ensure_future(
            mm.agenerate("a fox", base_url=server.url, size="64x64", progress="none")
        )
        while server.request_count == 0 and not task.done():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asked = time.monotonic()
    asyncio.run(main())
    assert server.wait_for_disconnect(5), "the server still holds the request"
    (run,) = runs
    assert run.wait(5)
    assert time.monotonic() - asked < WITHIN
    assert run.status == "cancelled"
    assert isinstance(run.exception(), GenerationCancelled)
    assert settled(lambda: engine().running_tasks() == 0)


def test_wait_for_with_a_short_timeout_cancels_the_run(
    server: LocalServer, runs: list[Generation]
) -> None:
    server.latency = 30

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                mm.agenerate("a fox", base_url=server.url, size="64x64", progress="none"),
                timeout=0.5,
            )

    asyncio.run(main())
    (run,) = runs
    assert run.wait(5)
    assert run.status == "cancelled"
    # whatever had reached the server by then was hung up on, not left running
    assert settled(lambda: server.disconnects == server.request_count, timeout=5)
    assert settled(lambda: engine().running_tasks() == 0)


def test_agenerate_raises_the_runs_error(server: LocalServer) -> None:
    fault = {"mesh_local": {"fault": "status:403"}}
    with pytest.raises(mm.APIError, match="403"):
        asyncio.run(mm.agenerate("a fox", base_url=server.url, params=fault, progress="none"))


# -- keyword arguments are checked like options --------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"quality": "ultra"},
            "quality: invalid value 'ultra'; allowed: auto, low, medium, high, hd, standard",
        ),
        ({"n": 0}, "n: invalid value 0; allowed: 1 to 10"),
        ({"n": 2.5}, "n: invalid value 2.5; expected a whole number 1 to 10"),
        ({"size": "huge"}, "size: invalid value 'huge'; allowed: auto or WIDTHxHEIGHT"),
        ({"watermark": "maybe"}, "watermark: invalid value 'maybe'; allowed: true or false"),
        (
            {"guidance_scale": math.nan},
            "guidance_scale: invalid value nan; expected a finite number, 1 to 10",
        ),
        (
            {"guidance_scale": math.inf},
            "guidance_scale: invalid value inf; expected a finite number, 1 to 10",
        ),
        ({"timeout": math.inf}, "timeout: invalid value inf; expected a finite number"),
        ({"timeout": 0}, "timeout: invalid value 0; allowed: greater than 0"),
        ({"progress": "loud"}, "progress: invalid value 'loud'; allowed: auto, widget, text"),
        ({"qualty": "low"}, "unknown field 'qualty': did you mean quality? pass fields"),
        ({"params": {"seed": math.nan}}, "seed: invalid value nan; expected a whole number"),
        ({"params": {"prompt": "an owl"}}, "params: 'prompt' is not a parameter here"),
        ({"params": {"stream": False}}, "params: 'stream' is an argument of its own: pass stream"),
        ({"params": {"style": math.nan}}, "style: invalid value nan"),
        ({"params": {"style": [1, math.inf]}}, "style: invalid value [1, inf]"),
        ({"params": {"user": {1, 2}}}, "user: invalid value {1, 2}; expected JSON"),
        (
            {"params": {"deep": nested(100_000)}},
            "deep: invalid value [[[[[[[...]]]]]]]; expected",
        ),
        (
            {"optimize_prompt_options": {"weight": math.nan}},
            "optimize_prompt_options: invalid value {'weight': nan}",
        ),
    ],
)
def test_bad_keywords_are_option_errors_before_anything_is_sent(
    server: LocalServer, fields: dict[str, Any], message: str
) -> None:
    keywords = {"base_url": server.url, "progress": "none", **fields}
    for call in (
        lambda: mm.generate("a fox", **keywords),
        lambda: asyncio.run(mm.agenerate("a fox", **keywords)),
    ):
        with pytest.raises(OptionError) as raised:
            call()
        assert isinstance(raised.value, ValueError)
        assert str(raised.value).startswith(message), str(raised.value)
    assert server.request_count == 0


def test_a_transparent_jpeg_is_refused_naming_both_before_anything_is_sent(
    server: LocalServer,
) -> None:
    where = {"base_url": server.url, "progress": "none"}
    calls = [
        lambda: mm.generate("a fox", background="transparent", output_format="jpg", **where),
        lambda: mm.generate(
            "a fox", params={"background": "transparent"}, output_format="jpeg", **where
        ),
        lambda: mm.sweep(
            "a fox", background=["opaque", "transparent"], output_format="jpeg", **where
        ),
    ]
    for call in calls:
        with pytest.raises(OptionError) as raised:
            call()
        assert "background='transparent' and output_format='jpeg' conflict" in str(raised.value)
    assert server.request_count == 0


def test_a_missing_prompt_is_an_option_error(server: LocalServer) -> None:
    for prompt in ("", "   ", None):
        with pytest.raises(ValueError, match="no prompt"):
            mm.generate(prompt, base_url=server.url)  # type: ignore[arg-type]
    assert server.request_count == 0


def test_keywords_are_normalised_like_options(server: LocalServer) -> None:
    mm.generate(
        "a fox", base_url=server.url, progress="none", size="64X64", quality=" LOW ", n=2.0,
        output_format="jpg",
    )  # fmt: skip
    body = sent(server).body
    assert (body["size"], body["quality"], body["n"], body["output_format"]) == (
        "64x64", "low", 2, "jpeg",
    )  # fmt: skip


def test_only_the_fields_that_were_set_are_sent_and_params_pass_through(
    server: LocalServer,
) -> None:
    mm.generate("a fox", base_url=server.url, progress="none")
    assert sent(server).body == {
        "prompt": "a fox",
        "model": "openai/gpt-image-1",
        "stream": True,
    }
    mm.generate(
        "a fox", base_url=server.url, progress="none", size="64x64",
        params={"style": "vivid", "user": {"id": 7}},
    )  # fmt: skip
    assert sent(server).body == {
        "prompt": "a fox",
        "model": "openai/gpt-image-1",
        "size": "64x64",
        "style": "vivid",
        "user": {"id": 7},
        "stream": True,
    }


def test_a_keyword_wins_over_the_same_field_in_params(server: LocalServer) -> None:
    mm.generate(
        "a fox", base_url=server.url, progress="none", size="64x64", params={"size": "32x32"}
    )
    assert sent(server).body["size"] == "64x64"


def test_the_background_field_is_not_swallowed_by_the_background_flag(
    server: LocalServer,
) -> None:
    try:
        outcome = mm.generate(
            "a fox", base_url=server.url, progress="none", size="64x64", background="transparent"
        )
    except OptionError:
        return  # refusing the ambiguity is fine too
    assert isinstance(outcome, ImageResult)
    assert sent(server).body.get("background") == "transparent"


def test_the_background_field_can_be_sent_in_params(server: LocalServer) -> None:
    mm.generate(
        "a fox", base_url=server.url, progress="none", size="64x64",
        params={"background": "transparent"},
    )  # fmt: skip
    assert sent(server).body["background"] == "transparent"


# -- settings from the IPython session ---------------------------------------------------------


def test_generate_follows_the_sessions_config(
    ip: InteractiveShell, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("config", "MeshImageMagics.quality = 'low'")
    ip.run_line_magic("config", "MeshImageMagics.size = '64x64'")

    result = mm.generate("a fox")  # no base_url: the session's, which is the test server's
    assert len(result) == 1 and result[0].size == (64, 64)
    body = sent(server).body
    assert (body["quality"], body["size"]) == ("low", "64x64")
    out = capsys.readouterr().out  # a terminal session: progress as printed lines
    assert "⏳ openai/gpt-image-1 · 64x64 · 1 image · started" in out

    mm.generate("a fox", quality="high", progress="none")  # a keyword wins over %config
    assert sent(server).body["quality"] == "high"


def test_background_runs_in_a_terminal_session_run_together_and_their_cell_waits(
    ip: InteractiveShell, server: LocalServer
) -> None:
    """Where nothing could show a run after its cell (a terminal, nbclient), background
    runs still run concurrently; the cell that started them waits for them at its end,
    and says nothing about a foreground."""
    server.latency = 1.0
    run = run_cell(
        ip,
        "import mesh_magics as mm\n"
        "t_handles = [mm.start(f'a fox {i}', size='64x64', "
        "progress='none') for i in range(4)]\n"
        "t_started = [h.status for h in t_handles]",
    )
    assert run.success, run.error
    assert ip.user_ns["t_started"] == ["running"] * 4  # the cell went on at once
    handles = ip.user_ns["t_handles"]
    assert [h.status for h in handles] == ["done"] * 4  # ... and waited at its end
    assert all(len(h) == 1 for h in handles)
    assert server.max_in_flight == 4  # together, not one after another
    assert "foreground" not in run.stderr + run.stdout


def test_a_failed_background_run_in_a_terminal_session_fails_its_cell(
    ip: InteractiveShell, server: LocalServer
) -> None:
    run = run_cell(
        ip,
        "import mesh_magics as mm\n"
        "t_failing = mm.start('a fox', size='64x64', progress='none', "
        "params={'mesh_local': {'fault': 'status:401'}})",
    )
    assert not run.success
    assert isinstance(run.error, AuthenticationError)
    assert ip.user_ns["t_failing"].status == "failed"
