"""The engine and the run handle, as code that starts runs sees them: one loop on one
thread for every run, and a `Generation` that behaves like a `concurrent.futures.Future`
and, once done, like its `ImageResult`.

The runs here are fed by fake event sources (no sockets): each says when it started and
when it has unwound (its `finally` ran), and holds until the test releases it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from mesh_magics.engine.generation import Generation
from mesh_magics.engine.jobs import Jobs
from mesh_magics.engine.loop import Engine, engine
from mesh_magics.engine.wait import run_blocking
from mesh_magics.errors import (
    GenerationCancelled,
    GenerationTimeout,
    IncompleteResultError,
    RunInterrupted,
    StillRunning,
)
from mesh_magics.events import Completed, PartialImage, StatusChanged, StreamEvent
from mesh_magics.images import GeneratedImage, check_image
from mesh_magics.request import build_request
from mesh_magics.results.result import ImageResult
from mesh_magics.settings import ClientSettings
from mesh_magics.views.base import ProgressView

from .servers import png_bytes
from .support import settled

NOWHERE = ClientSettings(base_url="http://127.0.0.1:9")  # the fake sources send nothing
WITHIN = 5.0  # seconds: a generous bound for anything that should be "at once"


def image(width: int = 8, height: int = 8) -> GeneratedImage:
    return check_image(png_bytes(width, height), what="image 1")


def completed(count: int = 1) -> Completed:
    return Completed([image() for _ in range(count)], request_id="req_test", model="test/model")


class Source:
    """A fake stream: `before` events, then (if `hold`) waits for `release`, then raises
    `fail` or yields `after`. Its `finally` takes `unwind` seconds (closing a connection)
    and then sets `unwound`."""

    def __init__(
        self,
        *before: StreamEvent,
        after: tuple[StreamEvent, ...] = (),
        hold: bool = False,
        fail: BaseException | None = None,
        unwind: float = 0.0,
    ) -> None:
        self.before = before
        self.after = after or (completed(),)
        self.hold = hold
        self.fail = fail
        self.unwind = unwind
        self.started = threading.Event()
        self.release = threading.Event()
        self.unwound = threading.Event()
        self.calls = 0

    async def __call__(self) -> AsyncGenerator[StreamEvent, None]:
        self.calls += 1
        self.started.set()
        try:
            for event in self.before:
                yield event
            while self.hold and not self.release.is_set():
                await asyncio.sleep(0.01)
            if self.fail is not None:
                raise self.fail
            for event in self.after:
                yield event
        finally:
            if self.unwind:
                await asyncio.sleep(self.unwind)
            self.unwound.set()


def run_of(source: Source, n: int = 1, **options: Any) -> Generation:
    fields = {"n": n} if n != 1 else {}
    request = build_request("a fox", fields, {"model": "openai/gpt-image-1"})
    return Generation(request, NOWHERE, events=source, **options)


class Recorder:
    """A watcher that notes what it is told, and on which thread."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.ticks: list[float] = []
        self.endings: list[str] = []
        self.threads: set[str] = set()
        self.ticked = threading.Event()

    def event(self, event: StreamEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    def tick(self, elapsed: float) -> None:
        self.threads.add(threading.current_thread().name)
        self.ticks.append(elapsed)
        self.ticked.set()

    def ended(self, run: Generation) -> None:
        self.threads.add(threading.current_thread().name)
        self.endings.append(run.status)


# -- a run's life ----------------------------------------------------------------------------


def test_a_run_goes_pending_running_done_and_gives_its_result() -> None:
    source = Source(StatusChanged("queued"), hold=True)
    run = run_of(source)
    assert run.status == "pending" and not run.done()

    assert run.start() is run
    assert run.status == "running"
    assert source.started.wait(WITHIN)
    assert not run.done()

    source.release.set()
    result = run.result(timeout=WITHIN)
    assert isinstance(result, ImageResult)
    assert run.status == "done" and run.done() and not run.cancelled()
    assert run.exception() is None
    assert len(result) == 1 and result.request_id == "req_test" and result.model == "test/model"
    assert run.future.result() is result


def test_a_run_runs_once() -> None:
    run = run_of(Source()).start()
    assert run.wait(WITHIN)
    with pytest.raises(RuntimeError, match="runs once"):
        run.start()


def test_done_callbacks_are_called_once_even_when_added_after_the_end() -> None:
    source = Source(hold=True)
    run = run_of(source).start()
    early: list[Generation] = []
    all_called = threading.Event()
    run.add_done_callback(early.append)
    run.add_done_callback(lambda _: all_called.set())
    assert source.started.wait(WITHIN)
    assert early == []

    source.release.set()
    assert all_called.wait(WITHIN)
    assert early == [run]

    late: list[tuple[Generation, str]] = []
    run.add_done_callback(lambda handle: late.append((handle, threading.current_thread().name)))
    assert late == [(run, threading.current_thread().name)]  # at once, on the caller's thread
    assert early == [run]  # and the first one is not called again


def test_result_with_a_timeout_gives_up_waiting_not_the_run() -> None:
    source = Source(hold=True)
    run = run_of(source).start()
    with pytest.raises(concurrent.futures.TimeoutError):
        run.result(timeout=0.2)
    assert run.status == "running" and not run.done()
    assert run.wait(0.05) is False

    source.release.set()
    assert len(run.result(timeout=WITHIN)) == 1
    assert run.wait(0) is True


# -- cancelling ----------------------------------------------------------------------------


def test_cancel_during_the_run_settles_only_once_the_source_has_unwound() -> None:
    source = Source(StatusChanged("processing"), hold=True, unwind=0.2)
    run = run_of(source).start()
    unwound_when_done: list[bool] = []
    run.add_done_callback(lambda _: unwound_when_done.append(source.unwound.is_set()))
    assert source.started.wait(WITHIN)

    asked = time.monotonic()
    assert run.cancel() is True
    with pytest.raises(GenerationCancelled, match=r"cancelled after .* no images"):
        run.result(timeout=WITHIN)
    assert time.monotonic() - asked < WITHIN
    assert run.status == "cancelled" and run.cancelled() and run.done()
    assert source.unwound.is_set()
    assert unwound_when_done == [True]  # done() never came before the unwinding
    assert isinstance(run.exception(), GenerationCancelled)
    assert not source.release.is_set()  # it stopped at its await, it was not let through


def test_cancel_before_the_task_starts_never_opens_the_source() -> None:
    eng = Engine()
    busy, free = threading.Event(), threading.Event()

    async def hog_the_loop() -> None:
        busy.set()
        free.wait(WITHIN)  # the loop's thread is stuck here: nothing else starts

    try:
        eng.submit(hog_the_loop())
        assert busy.wait(WITHIN)
        source = Source()
        run = run_of(source).start(on=eng)
        assert run.cancel() is True
        free.set()
        with pytest.raises(GenerationCancelled):
            run.result(timeout=WITHIN)
        assert run.status == "cancelled"
        assert source.calls == 0 and not source.started.is_set()
    finally:
        free.set()
        eng.close()


def test_cancel_before_start_settles_at_once_and_the_run_never_starts() -> None:
    source = Source()
    run = run_of(source)
    assert run.cancel() is True
    assert run.done() and run.status == "cancelled"
    with pytest.raises(GenerationCancelled):
        run.result(timeout=0)
    with pytest.raises(RuntimeError, match="runs once"):
        run.start()
    assert source.calls == 0


def test_cancel_after_the_end_is_refused_and_changes_nothing() -> None:
    run = run_of(Source()).start()
    result = run.result(timeout=WITHIN)
    assert run.cancel() is False
    assert run.status == "done" and run.result() is result


# -- failing -----------------------------------------------------------------------------


class ProviderExploded(Exception):
    pass


def test_an_error_in_the_stream_is_the_runs_error_unchanged() -> None:
    error = ProviderExploded("the provider fell over")
    source = Source(StatusChanged("processing"), fail=error)
    run = run_of(source).start()
    with pytest.raises(ProviderExploded) as raised:
        run.result(timeout=WITHIN)
    assert raised.value is error
    assert run.status == "failed" and not run.cancelled()
    assert run.exception() is error
    assert source.unwound.is_set()
    assert "failed" in repr(run)


def test_timeout_gives_generation_timeout_after_closing_the_stream() -> None:
    source = Source(StatusChanged("processing"), hold=True, unwind=0.1)
    run = run_of(source, timeout=0.3).start()
    with pytest.raises(GenerationTimeout, match=r"gave up after --timeout 0\.3 s"):
        run.result(timeout=WITHIN)
    assert run.status == "failed"
    assert source.unwound.is_set()
    assert run.elapsed >= 0.3


def test_fewer_images_than_asked_is_an_incomplete_result_that_keeps_what_came() -> None:
    run = run_of(Source(after=(completed(1),)), n=2).start()
    with pytest.raises(IncompleteResultError, match="asked for 2 images, the server returned 1"):
        run.result(timeout=WITHIN)
    assert run.status == "failed"
    error = run.exception()
    assert isinstance(error, IncompleteResultError)
    assert len(error.result) == 1


def test_a_stream_that_ends_without_images_fails_rather_than_hangs() -> None:
    run = run_of(Source(after=(StatusChanged("processing"),))).start()
    with pytest.raises(RuntimeError, match="without a Completed event"):
        run.result(timeout=WITHIN)
    assert run.status == "failed"


# -- the handle as its result ----------------------------------------------------------------


def test_the_images_are_still_running_until_done_then_the_handle_is_the_result(
    tmp_path: Path,
) -> None:
    source = Source(hold=True, after=(completed(2),))
    run = run_of(source, n=2).start()
    assert source.started.wait(WITHIN)
    for touch in (lambda: run[0], lambda: len(run), lambda: run.save(tmp_path), lambda: list(run)):
        with pytest.raises(StillRunning, match=r"still running .*wait with \.result\(\)"):
            touch()
    data, _ = run._repr_mimebundle_()
    assert list(data) == ["text/plain"] and "running" in data["text/plain"]
    assert repr(run).startswith("<Generation openai/gpt-image-1 · auto · 2 images · running")

    source.release.set()
    assert run.wait(WITHIN)
    assert len(run) == 2
    assert run[0].size == (8, 8)
    assert [img.size for img in run] == [(8, 8), (8, 8)]
    assert run.request_id == "req_test"
    assert repr(run) == repr(run.result())
    saved = run.save(tmp_path, stem="fox")
    assert [path.name for path in saved] == ["fox-1.png", "fox-2.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in saved)
    data, _ = run._repr_mimebundle_()
    assert data == run.result()._repr_mimebundle_()[0]
    assert "image/png" in data or "text/html" in data


def test_a_failed_handle_raises_its_error_when_its_images_are_asked_for() -> None:
    run = run_of(Source(fail=ProviderExploded("no"))).start()
    assert run.wait(WITHIN)
    with pytest.raises(ProviderExploded):
        run[0]
    assert run._repr_mimebundle_()[0]["text/plain"].startswith("<Generation")


# -- watchers ----------------------------------------------------------------------------------


def test_watchers_hear_every_event_in_order_and_the_time_on_the_engine_thread() -> None:
    preview = PartialImage(0, png_bytes(4, 4))
    final = completed()
    source = Source(StatusChanged("queued"), StatusChanged("processing"), preview, hold=True)
    source.after = (final,)
    first, second = Recorder(), Recorder()
    run = run_of(source).watch(first).watch(second).start()
    assert first.ticked.wait(WITHIN)  # ticks come while the run waits
    source.release.set()
    assert run.wait(WITHIN)
    assert settled(lambda: first.endings == ["done"] and second.endings == ["done"])

    for watcher in (first, second):
        assert watcher.events == [
            StatusChanged("queued"),
            StatusChanged("processing"),
            preview,
            final,
        ]
        assert watcher.threads == {"mesh-magics-engine"}
    assert first.ticks == sorted(first.ticks) and first.ticks[0] > 0
    with pytest.raises(RuntimeError, match="before starting"):
        run.watch(Recorder())


def test_watchers_are_told_the_end_of_a_cancelled_run() -> None:
    source = Source(StatusChanged("processing"), hold=True)
    watcher = Recorder()
    run = run_of(source).watch(watcher).start()
    assert source.started.wait(WITHIN)
    run.cancel()
    assert run.wait(WITHIN)
    assert settled(lambda: watcher.endings == ["cancelled"])
    assert watcher.events == [StatusChanged("processing")]


# -- many runs, one loop ---------------------------------------------------------------------


def test_twenty_runs_at_once_share_the_one_loop_thread() -> None:
    engine().loop  # noqa: B018  (started before counting threads)
    threads_before = threading.active_count()
    sources = [Source(StatusChanged("processing"), hold=True) for _ in range(20)]
    runs = [run_of(source).start() for source in sources]
    assert all(source.started.wait(WITHIN) for source in sources)  # all twenty in flight
    assert threading.active_count() <= threads_before
    assert engine().running_tasks() >= 20
    assert all(run.status == "running" for run in runs)

    for source in sources:
        source.release.set()
    _, pending = concurrent.futures.wait([run.future for run in runs], WITHIN * 2)
    assert not pending
    assert all(run.status == "done" and len(run) == 1 for run in runs)
    assert threading.active_count() <= threads_before
    assert settled(lambda: engine().running_tasks() == 0)


def test_a_slow_run_does_not_hold_up_a_quick_one() -> None:
    slow = Source(hold=True)
    slow_run = run_of(slow).start()
    assert slow.started.wait(WITHIN)
    quick_run = run_of(Source()).start()
    assert len(quick_run.result(timeout=WITHIN)) == 1
    assert slow_run.status == "running"
    slow.release.set()
    assert slow_run.wait(WITHIN)


def test_engine_close_cancels_what_runs_and_a_later_run_starts_a_new_loop() -> None:
    eng = Engine()
    try:
        source = Source(StatusChanged("processing"), hold=True, unwind=0.1)
        run = run_of(source).start(on=eng)
        assert source.started.wait(WITHIN)
        first_thread = eng.thread
        assert first_thread is not None and first_thread.daemon and first_thread.is_alive()

        eng.close()
        assert run.status == "cancelled" and run.done()
        assert source.unwound.is_set()
        assert not first_thread.is_alive()
        assert eng.running_tasks() == 0
        eng.close()  # twice is harmless

        again = run_of(Source()).start(on=eng)
        assert len(again.result(timeout=WITHIN)) == 1
        assert eng.thread is not None and eng.thread is not first_thread
        assert eng.thread.is_alive()
    finally:
        eng.close()


def test_runs_start_in_an_empty_context() -> None:
    import contextvars

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="empty")
    marker.set("the caller's")
    seen: list[str] = []

    async def look() -> AsyncGenerator[StreamEvent, None]:
        seen.append(marker.get())
        yield completed()

    run = Generation(build_request("a fox", {}, {}), NOWHERE, events=look).start()
    assert run.wait(WITHIN)
    assert seen == ["empty"]


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_lists_the_running_and_waits_for_them() -> None:
    jobs = Jobs()
    held = [Source(hold=True) for _ in range(2)]
    runs = [run_of(source).start() for source in held]
    quick = run_of(Source()).start()
    assert quick.wait(WITHIN)
    for run in [*runs, quick]:
        jobs.add(run)
    assert jobs.all() == [*runs, quick]
    assert jobs.running() == runs

    assert jobs.wait(timeout=0.2) == runs  # still running when the time was up
    assert all(run.status == "running" for run in runs)

    for source in held:
        source.release.set()
    assert jobs.wait(timeout=WITHIN) == []
    assert jobs.running() == []
    assert all(run.status == "done" for run in runs)


def test_jobs_keep_only_the_latest_ended_runs() -> None:
    from mesh_magics.engine.jobs import KEEP

    jobs = Jobs()
    ended = [run_of(Source()).start() for _ in range(KEEP + 5)]
    assert all(run.wait(WITHIN) for run in ended)
    held = Source(hold=True)
    running = run_of(held).start()
    jobs.add(running)
    for run in ended:
        jobs.add(run)
    assert jobs.all() == [running, *ended[-KEEP:]]
    held.release.set()
    assert running.wait(WITHIN)


# -- waiting on a run from the thread that shows it ------------------------------------------


class ScriptedView(ProgressView):
    """A progress view that notes its calls (and the thread), and can raise a
    KeyboardInterrupt when told of an event: Ctrl-C arriving while the caller waits."""

    def __init__(self, interrupt_on: type | None = None) -> None:
        super().__init__("a fox")
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.interrupt_on = interrupt_on

    def _note(self, call: str) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)

    def start(self) -> None:
        self._note("start")

    def _show_status(self, event: StreamEvent) -> None:
        self._note(f"status {self.status}")
        if self.interrupt_on is not None and isinstance(event, self.interrupt_on):
            raise KeyboardInterrupt

    def tick(self, elapsed: float) -> None:
        if not self.calls or self.calls[-1] != "tick":
            self._note("tick")

    def finish(self, summary: str) -> None:
        self._note(f"finish {summary.split(' · ')[0]}")

    def fail(self, message: str) -> None:
        self._note(f"fail {message.split(' after ')[0]}")

    def _end(self, text: str) -> None:
        raise AssertionError("finish and fail are noted above, not drawn")


def test_run_blocking_shows_the_run_on_the_waiting_thread() -> None:
    view = ScriptedView()
    source = Source(StatusChanged("queued"), StatusChanged("processing"))
    result = run_blocking(run_of(source), view)
    assert len(result) == 1
    assert [c for c in view.calls if c != "tick"] == [
        "start",
        "status queued",
        "status processing",
        "status received 1 image",
        "finish ✓ 1 image",
    ]
    assert view.threads == {threading.current_thread().name}


def test_run_blocking_passes_the_runs_error_and_says_it_failed() -> None:
    view = ScriptedView()
    with pytest.raises(ProviderExploded):
        run_blocking(run_of(Source(fail=ProviderExploded("no"))), view)
    assert view.calls[-1] == "fail failed"


def test_an_interrupt_while_waiting_cancels_the_run_and_waits_for_it_to_unwind() -> None:
    view = ScriptedView(interrupt_on=StatusChanged)
    source = Source(StatusChanged("processing"), hold=True, unwind=0.2)
    run = run_of(source)
    with pytest.raises(RunInterrupted, match="cancelled by an interrupt") as raised:
        run_blocking(run, view)
    assert isinstance(raised.value, KeyboardInterrupt) and raised.value.partial is None
    assert run.status == "cancelled" and run.done()
    assert source.unwound.is_set()  # the connection is closed before the error is raised
    assert view.calls[-1] == "fail cancelled"
    assert not source.release.is_set()
