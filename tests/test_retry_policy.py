"""The retry policy, counted at the server: a request is sent again only when it provably
never reached the server (the connection could not be made), or the server refused it
before any work (429) or said when to come back (503 with Retry-After). Anything else
may have started a billed job: a 500, 502 or 504, a connection cut after the body was
sent."""

from __future__ import annotations

import pytest

from mesh_magics.errors import APIError, TransportError
from mesh_magics.events import Completed, Retrying
from mesh_magics.local import LocalServer

from .servers import (
    ScriptedServer,
    b64,
    hang_up,
    in_turn,
    png_bytes,
    send_json,
    send_sse,
    sse_frame,
)
from .support import GENERATIONS, events_until_failure, settings_for

SUCCESS = send_sse(
    sse_frame({"status": "completed", "data": [{"b64_json": b64(png_bytes())}]}),
    b"data: [DONE]\n\n",
)


def refusal(status: int, **headers: str) -> object:
    return send_json({"error": {"code": "refused", "message": "no"}}, status, headers)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (504, {"retry-after": "0"}),  # even when it says when to come back
        (500, {"retry-after": "0"}),
        (502, {}),
        (503, {}),  # no Retry-After: a proxy's, perhaps after the job began
    ],
)
def test_answers_that_may_have_billed_are_sent_once(status: int, headers: dict[str, str]) -> None:
    with ScriptedServer({GENERATIONS: in_turn(refusal(status, **headers), SUCCESS)}) as api:
        events, error = events_until_failure(api)
    assert isinstance(error, APIError) and error.status == status
    assert not any(isinstance(event, Retrying) for event in events)
    assert api.paths() == [GENERATIONS]


@pytest.mark.parametrize(("status", "headers"), [(503, {"retry-after": "0"}), (429, {})])
def test_refusals_before_any_work_are_retried(status: int, headers: dict[str, str]) -> None:
    with ScriptedServer({GENERATIONS: in_turn(refusal(status, **headers), SUCCESS)}) as api:
        events, error = events_until_failure(api)
    assert error is None and isinstance(events[-1], Completed)
    assert [type(event) for event in events].count(Retrying) == 1
    assert api.paths() == [GENERATIONS, GENERATIONS]


def test_a_refused_connection_is_retried() -> None:
    server = LocalServer().start()
    server.stop()  # nothing listens on its port now
    events, error = events_until_failure(server, settings=settings_for(server, max_retries=2))
    assert isinstance(error, TransportError) and "could not connect" in str(error)
    assert [type(event) for event in events] == [Retrying, Retrying]


def test_a_connection_cut_after_the_body_was_sent_is_not_retried() -> None:
    with ScriptedServer({GENERATIONS: in_turn(hang_up, SUCCESS)}) as api:
        events, error = events_until_failure(api)
    assert isinstance(error, TransportError) and "after the request was sent" in str(error)
    assert "not retried" in str(error) and not events
    assert api.paths() == [GENERATIONS]
