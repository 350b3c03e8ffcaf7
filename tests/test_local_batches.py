"""The embedded backend's Batch API (`/v1/files`, `/v1/batches`), spoken to over real
loopback HTTP as a client would: upload a JSONL, create a batch, wait for it, read its
output and error files; cancel it, list it, and every way a client can get it wrong.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mesh_magics.errors import ConfigError
from mesh_magics.local import LocalServer, ensure_local_server
from mesh_magics.local import server as server_module

from .support import GENERATIONS, local_from_the_command_line

PROMPT = "a red fox in the snow"
IMAGES_ONLY = "Batches are not available for /v1/images/generations; this server batches: "
WAIT = 30.0  # seconds a test waits for a batch that finishes in milliseconds
JSON = {"Content-Type": "application/json"}


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A server of the test's own: batches and files kept start empty."""
    with LocalServer(ping_interval=0.1) as local:
        yield local


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/v1", timeout=10) as client:
        yield client


def request(custom_id: str, url: str = GENERATIONS, **body: Any) -> dict[str, Any]:
    fields = {"prompt": PROMPT, "size": "64x64", "response_format": "b64_json", **body}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": fields}


def jsonl(*lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(http: httpx.Client, data: bytes, purpose: str = "batch") -> httpx.Response:
    files = {"file": ("in.jsonl", data, "application/jsonl")}
    return http.post("/files", data={"purpose": purpose}, files=files)


def uploaded(http: httpx.Client, *lines: Any) -> str:
    answer = upload(http, jsonl(*lines))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def create(http: httpx.Client, file_id: str, **fields: Any) -> httpx.Response:
    body = {"input_file_id": file_id, "endpoint": GENERATIONS, "completion_window": "24h"}
    return http.post("/batches", json={**body, **fields})


def started(http: httpx.Client, *lines: Any, **fields: Any) -> str:
    """A batch of LINES, created; its id."""
    answer = create(http, uploaded(http, *lines), **fields)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def finished(server: LocalServer, batch_id: str) -> dict[str, Any]:
    batch = server.wait_for_batch(batch_id, WAIT)
    assert batch is not None, f"{batch_id} did not finish: {server.batches}"
    return batch


def file_lines(http: httpx.Client, file_id: str | None) -> dict[str, dict[str, Any]]:
    """The lines of an output or error file, by custom id."""
    assert file_id is not None
    answer = http.get(f"/files/{file_id}/content")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/jsonl"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    return {line["custom_id"]: line for line in lines}


def error_of(answer: httpx.Response) -> dict[str, Any]:
    envelope = answer.json()
    assert envelope["request_id"].startswith("req_")
    return dict(envelope["error"])


def picture(entry: dict[str, Any]) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(entry["b64_json"])))
    img.load()
    return img


# -- the happy road -----------------------------------------------------------------


def test_an_uploaded_batch_completes_with_every_picture(
    http: httpx.Client, server: LocalServer
) -> None:
    data = jsonl(request("fox"), request("wide", size="96x48", n=2))
    file = upload(http, data).json()
    assert {k: file[k] for k in ("object", "bytes", "filename", "purpose", "status")} == {
        "object": "file",
        "bytes": len(data),
        "filename": "in.jsonl",
        "purpose": "batch",
        "status": "processed",
    }
    assert file["id"].startswith("file-") and http.get(f"/files/{file['id']}").json() == file
    assert http.get(f"/files/{file['id']}/content").content == data

    made = create(http, file["id"], metadata={"run": "nightly"}).json()
    assert made["id"].startswith("batch_") and made["object"] == "batch"
    assert (made["status"], made["input_file_id"], made["metadata"]) == (
        "validating",
        file["id"],
        {"run": "nightly"},
    )
    assert made["expires_at"] == made["created_at"] + 24 * 3600

    batch = finished(server, made["id"])
    assert batch["status"] == "completed" and batch["errors"] is None
    assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert batch["error_file_id"] is None
    stamps = [batch[f"{s}_at"] for s in ("created", "in_progress", "finalizing", "completed")]
    assert stamps == sorted(stamps) and None not in stamps
    assert http.get(f"/batches/{made['id']}").json() == batch

    lines = file_lines(http, batch["output_file_id"])
    assert set(lines) == {"fox", "wide"}
    for custom_id, size, count in [("fox", (64, 64), 1), ("wide", (96, 48), 2)]:
        line = lines[custom_id]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        images = [picture(entry) for entry in response["body"]["data"]]
        assert [(img.format, img.size) for img in images] == [("PNG", size)] * count
    output = http.get(f"/files/{batch['output_file_id']}").json()
    assert output["purpose"] == "batch_output" and output["filename"].endswith("_output.jsonl")


def test_a_line_is_answered_as_the_same_body_posted_to_generations(
    http: httpx.Client, server: LocalServer
) -> None:
    body = {"prompt": PROMPT, "size": "48x32", "seed": 7, "n": 2, "response_format": "b64_json"}
    batch = finished(server, started(http, request("same", **body)))
    answered = file_lines(http, batch["output_file_id"])["same"]["response"]["body"]
    plain = http.post("/images/generations", json=body).json()
    assert answered.pop("created") <= plain.pop("created")
    assert answered == plain  # the same pictures, usage and fields


def test_a_bad_line_lands_in_the_error_file_with_its_422(
    http: httpx.Client, server: LocalServer
) -> None:
    batch = finished(server, started(http, request("good"), request("tiny", size="7x7")))
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    assert set(file_lines(http, batch["output_file_id"])) == {"good"}
    failed = file_lines(http, batch["error_file_id"])["tiny"]["response"]
    assert failed["status_code"] == 422
    assert failed["body"]["request_id"] == failed["request_id"]
    error = failed["body"]["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == ["body", "size"]


def test_a_batch_with_only_failures_has_only_an_error_file(
    http: httpx.Client, server: LocalServer
) -> None:
    batch = finished(server, started(http, request("nobody", model="acme/painter-9")))
    assert (batch["status"], batch["output_file_id"]) == ("completed", None)
    failed = file_lines(http, batch["error_file_id"])["nobody"]["response"]
    assert (failed["status_code"], failed["body"]["error"]["code"]) == (404, "model_not_found")


@pytest.mark.parametrize(
    ("controls", "status", "code"),
    [
        ({"fault": "status:503", "retry_after": 2}, 503, "unavailable"),
        ({"fault": "html:502"}, 502, "unavailable"),
        ({"fault": "error_frame"}, 500, "provider_job_failed"),
        ({"fault": "drop"}, 502, "unavailable"),
        ({"fault": "status:500", "times": 0}, 200, None),
        ({"fault": "not_image"}, 200, None),
        ({"fault": "cut"}, 200, None),
    ],
)
def test_a_lines_own_fault_is_answered_as_a_plain_generation_would(
    http: httpx.Client,
    server: LocalServer,
    controls: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    batch = finished(server, started(http, request("faulty", mesh_local=controls)))
    file_id = batch["output_file_id"] if status == 200 else batch["error_file_id"]
    response = file_lines(http, file_id)["faulty"]["response"]
    assert response["status_code"] == status
    if code is not None:
        assert response["body"]["error"]["code"] == code
    if controls.get("retry_after"):
        assert response["body"]["error"]["retry_after_seconds"] == 2
    data = response["body"].get("data")
    if controls["fault"] == "not_image":
        assert base64.b64decode(data[0]["b64_json"]) == b"this is not an image"
    if controls["fault"] == "cut":
        assert data == []


def test_a_remote_url_model_publishes_its_pictures_where_the_client_came_from(
    http: httpx.Client, server: LocalServer
) -> None:
    line = request("dalle", model="openai/dall-e-3", response_format="url")
    batch = finished(server, started(http, line))
    url = file_lines(http, batch["output_file_id"])["dalle"]["response"]["body"]["data"][0]["url"]
    assert url.startswith(server.url + "/files/") and url.endswith(".png")
    assert httpx.get(url).headers["content-type"] == "image/png"
    name = url.rpartition("/")[2]  # NAME.png: a published image under /v1/files/ too
    assert http.get(f"/files/{name}").headers["content-type"] == "image/png"


def test_the_meshapi_sdks_inline_requests_make_a_batch_and_an_input_file(
    http: httpx.Client, server: LocalServer
) -> None:
    answer = http.post("/batches", json={"requests": [request("a"), request("b")]})
    assert answer.status_code == 200, answer.text
    made = answer.json()
    assert (made["endpoint"], made["completion_window"]) == (GENERATIONS, "24h")
    assert made["request_counts"]["total"] == 2
    lines = http.get(f"/files/{made['input_file_id']}/content").text.splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == ["a", "b"]
    assert finished(server, made["id"])["request_counts"]["completed"] == 2


# -- cancelling -----------------------------------------------------------------------


def test_cancelling_while_in_progress_keeps_the_lines_done(
    http: httpx.Client, server: LocalServer
) -> None:
    server.batch_latency = 60  # the lines that do not say otherwise wait a minute
    quick = {"latency": 0}
    lines = [request(f"r{i}", mesh_local=quick) for i in (1, 2)] + [request("r3"), request("r4")]
    batch_id = started(http, *lines)
    two_done = server.wait_for_batch(
        batch_id, WAIT, lambda b: b["request_counts"]["completed"] == 2
    )
    assert two_done is not None and two_done["status"] == "in_progress"

    began = time.monotonic()
    cancelling = http.post(f"/batches/{batch_id}/cancel").json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    batch = finished(server, batch_id)
    assert time.monotonic() - began < 10  # the line at work was dropped, not waited out
    assert batch["status"] == "cancelled" and batch["cancelled_at"] is not None
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    assert set(file_lines(http, batch["output_file_id"])) == {"r1", "r2"}
    assert batch["error_file_id"] is None
    again = http.post(f"/batches/{batch_id}/cancel")
    assert again.status_code == 409 and "cancelled" in error_of(again)["message"]


def test_a_queued_batch_is_cancelled_at_once(http: httpx.Client, server: LocalServer) -> None:
    server.batch_latency = 60
    working = started(http, request("slow"))
    assert server.wait_for_batch(working, WAIT, "in_progress") is not None
    queued = started(http, request("waiting"))
    cancelled = http.post(f"/batches/{queued}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["request_counts"]["completed"] == 0
    assert server.batches[1]["status"] == "in_progress"  # the one at work goes on
    assert http.post(f"/batches/{working}/cancel").json()["status"] == "cancelling"
    assert server.wait_until_batches_done(WAIT)


def test_a_stalled_line_holds_its_batch_until_it_is_cancelled(
    http: httpx.Client, server: LocalServer
) -> None:
    batch_id = started(http, request("stuck", mesh_local={"fault": "stall"}))
    assert server.wait_for_batch(batch_id, WAIT, "in_progress") is not None
    http.post(f"/batches/{batch_id}/cancel")
    assert finished(server, batch_id)["request_counts"]["completed"] == 0


def test_a_finished_batch_cannot_be_cancelled(http: httpx.Client, server: LocalServer) -> None:
    batch_id = started(http, request("done"))
    finished(server, batch_id)
    answer = http.post(f"/batches/{batch_id}/cancel")
    assert answer.status_code == 409 and "completed" in error_of(answer)["message"]


# -- listing ------------------------------------------------------------------------


def test_batches_are_listed_newest_first_in_pages(http: httpx.Client, server: LocalServer) -> None:
    ids = [started(http, request(f"r{i}")) for i in range(5)]
    newest = ids[::-1]
    first = http.get("/batches", params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [b["id"] for b in first["data"]] == newest[:2]
    assert (first["first_id"], first["last_id"]) == (newest[0], newest[1])
    second = http.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()
    assert [b["id"] for b in second["data"]] == newest[2:4] and second["has_more"] is True
    last = http.get("/batches", params={"limit": 2, "after": second["last_id"]}).json()
    assert [b["id"] for b in last["data"]] == newest[4:] and last["has_more"] is False
    everything = http.get("/batches").json()  # 20 by default
    assert [b["id"] for b in everything["data"]] == newest
    assert [b["id"] for b in server.batches] == newest


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_a_bad_list_limit_is_a_422_naming_it(http: httpx.Client, limit: str) -> None:
    answer = http.get("/batches", params={"limit": limit})
    assert answer.status_code == 422 and error_of(answer)["details"][0]["loc"] == ["query", "limit"]


def test_an_empty_list_has_no_ids(http: httpx.Client) -> None:
    assert http.get("/batches").json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


# -- refusals -----------------------------------------------------------------------


def test_a_server_that_batches_chat_only_refuses_image_batches(
    http: httpx.Client, server: LocalServer
) -> None:
    server.batch_endpoints = ["/v1/chat/completions"]
    answer = create(http, uploaded(http, request("fox")))
    assert answer.status_code == 400
    assert error_of(answer) == {
        "code": "invalid_request",
        "message": IMAGES_ONLY + "/v1/chat/completions",
    }
    inline = http.post("/batches", json={"requests": [request("fox")]})
    assert inline.status_code == 400 and error_of(inline)["message"].startswith(IMAGES_ONLY)
    assert server.batches == []
    server.batch_endpoints = []
    assert error_of(create(http, uploaded(http, request("fox"))))["message"].endswith("nothing")


@pytest.mark.parametrize(
    ("data", "line", "says"),
    [
        (jsonl(request("a")) + b"{not json\n", 2, "not valid JSON"),
        (jsonl(request("a"), [1, 2]), 2, "a JSON object is expected, not list"),
        (jsonl({"method": "POST", "url": GENERATIONS, "body": {}}), 1, "custom_id is missing"),
        (jsonl(request("a"), request("b"), request("a")), 3, "'a' is already used on line 1"),
        (jsonl({**request("a"), "method": "GET"}), 1, "method must be POST"),
        (jsonl({**request("a"), "body": "a fox"}), 1, "body must be a JSON object"),
        (jsonl({**request("a"), "url": 7}), 1, "url must be an endpoint path"),
        (jsonl(request("a")) + b"\n\n\xff\xfe\n", 4, "not UTF-8"),
        (jsonl({**request("a"), "custom_id": ""}), 1, "custom_id must be a string"),
    ],
)
def test_a_bad_upload_is_a_400_naming_the_line(
    http: httpx.Client, server: LocalServer, data: bytes, line: int, says: str
) -> None:
    answer = upload(http, data)
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["code"] == "invalid_request" and error["line"] == line
    assert f"Line {line}: " in error["message"] and says in error["message"]
    assert server.batch_files == []


@pytest.mark.parametrize(
    ("send", "says"),
    [
        (lambda http: upload(http, b""), "holds no request"),
        (lambda http: upload(http, jsonl(request("a")), purpose="fine-tune"), "purpose must be"),
        (lambda http: http.post("/files", files={"file": ("a", b"{}")}), "purpose is missing"),
        (lambda http: http.post("/files", files={"other": ("x", b"1")}), "no file part"),
        (lambda http: http.post("/files", json={"purpose": "batch"}), "multipart/form-data"),
        (lambda http: http.post("/batches", content=b"{", headers=JSON), "not valid JSON"),
        (lambda http: http.post("/batches", json={}), "input_file_id"),
        (lambda http: http.post("/batches", json={"requests": []}), "at least one request"),
        (lambda http: http.post("/batches", json={"input_file_id": "file-x"}), "endpoint"),
        (lambda http: http.post("/batches", json={"requests": [{"url": 3}]}), "endpoint"),
    ],
)
def test_a_bad_request_to_the_batch_api_is_a_400(http: httpx.Client, send: Any, says: str) -> None:
    answer = send(http)
    assert answer.status_code == 400, answer.text
    assert says in error_of(answer)["message"]


def test_inline_requests_are_checked_as_a_file_is(http: httpx.Client) -> None:
    answer = http.post("/batches", json={"requests": [request("a"), {"url": GENERATIONS}]})
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["line"] == 2 and error["message"] == "requests: Line 2: custom_id is missing"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"completion_window": "1h"}, "completion_window must be '24h', not '1h'"),
        ({"metadata": {"n": 3}}, "string value"),
        ({"metadata": {str(i): "x" for i in range(17)}}, "at most 16"),
    ],
)
def test_a_bad_batch_field_is_a_400_naming_what_is_allowed(
    http: httpx.Client, fields: dict[str, Any], says: str
) -> None:
    answer = create(http, uploaded(http, request("a")), **fields)
    assert answer.status_code == 400 and says in error_of(answer)["message"]


def test_lines_for_another_endpoint_fail_the_batch(http: httpx.Client, server: LocalServer) -> None:
    chat = request("chat", url="/v1/chat/completions")
    batch = finished(server, started(http, request("fox"), chat))
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    (error,) = batch["errors"]["data"]
    assert (error["code"], error["line"], error["param"]) == ("invalid_url", 2, "url")
    assert (batch["output_file_id"], batch["error_file_id"]) == (None, None)
    assert batch["request_counts"] == {"total": 2, "completed": 0, "failed": 0}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/batches/batch_nope"),
        ("POST", "/batches/batch_nope/cancel"),
        ("GET", "/files/file-nope"),
        ("GET", "/files/file-nope/content"),
        ("GET", "/batches?after=batch_nope"),
    ],
)
def test_an_unknown_id_is_a_404_envelope(http: httpx.Client, method: str, path: str) -> None:
    answer = http.request(method, path)
    assert answer.status_code == 404
    error = error_of(answer)
    assert error["code"] == "not_found" and "nope" in error["message"]


def test_an_unknown_input_file_is_a_404(http: httpx.Client, server: LocalServer) -> None:
    answer = create(http, "file-nope")
    assert answer.status_code == 404 and error_of(answer)["message"] == "No such file: file-nope"
    batch = finished(server, started(http, request("a")))
    output = create(http, batch["output_file_id"])  # an output is no input
    assert output.status_code == 400 and "batch_output file" in error_of(output)["message"]


def test_wrong_methods_are_405s_naming_the_right_ones(http: httpx.Client) -> None:
    answer = http.delete("/batches")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, POST")
    assert http.get("/files").headers["allow"] == "POST"
    assert http.get("/batches/batch_x/cancel").headers["allow"] == "POST"
    assert http.post("/files/file-x").headers["allow"] == "GET"


# -- bounds -------------------------------------------------------------------------


def test_too_many_lines_are_refused(http: httpx.Client, server: LocalServer) -> None:
    server.max_batch_lines = 3
    lines = [request(f"r{i}") for i in range(4)]
    answer = upload(http, jsonl(*lines))
    assert answer.status_code == 400
    assert error_of(answer)["message"].endswith(
        "more than 3 requests; this backend batches at most 3"
    )
    inline = http.post("/batches", json={"requests": lines})
    assert inline.status_code == 400 and "at most 3" in error_of(inline)["message"]
    assert upload(http, jsonl(*lines[:3])).status_code == 200


def test_a_file_that_shrank_the_cap_since_its_upload_fails_its_batch(
    http: httpx.Client, server: LocalServer
) -> None:
    file_id = uploaded(http, request("a"), request("b"))
    server.max_batch_lines = 1
    batch = finished(server, create(http, file_id).json()["id"])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "too_many_requests"


def test_a_file_over_the_cap_is_a_413(http: httpx.Client, server: LocalServer) -> None:
    server.max_file_bytes = 1000
    answer = upload(http, jsonl(*[request(f"r{i}") for i in range(10)]))
    assert answer.status_code == 413
    error = error_of(answer)
    assert error["code"] == "request_too_large" and "at most 1,000" in error["message"]
    inline = http.post("/batches", json={"requests": [request(f"r{i}") for i in range(10)]})
    assert inline.status_code == 413
    assert server.batch_files == []


def test_an_output_past_the_file_cap_goes_on_as_413s(
    http: httpx.Client, server: LocalServer
) -> None:
    one = finished(server, started(http, request("probe", size="16x16")))
    line_bytes = http.get(f"/files/{one['output_file_id']}").json()["bytes"]
    server.max_file_bytes = line_bytes * 3 // 2  # room for one line of output, not two
    batch = finished(server, started(http, *[request(f"r{i}", size="16x16") for i in range(3)]))
    assert batch["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    errors = file_lines(http, batch["error_file_id"])
    assert {e["response"]["status_code"] for e in errors.values()} == {413}
    assert http.get(f"/files/{batch['output_file_id']}").json()["bytes"] <= server.max_file_bytes


def test_the_oldest_finished_batches_make_room(http: httpx.Client, server: LocalServer) -> None:
    server.keep_batches = 3
    ids = [started(http, request(f"r{i}")) for i in range(3)]
    assert server.wait_until_batches_done(WAIT)
    newest = started(http, request("new"))
    assert http.get(f"/batches/{ids[0]}").status_code == 404
    assert [b["id"] for b in server.batches] == [newest, ids[2], ids[1]]


def test_a_new_batch_is_a_429_while_every_kept_one_is_unfinished(
    http: httpx.Client, server: LocalServer
) -> None:
    server.keep_batches, server.batch_latency = 2, 60
    held = [started(http, request(f"r{i}")) for i in range(2)]
    answer = create(http, uploaded(http, request("one too many")))
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert "2 batches are unfinished" in error_of(answer)["message"]
    for batch_id in held:
        http.post(f"/batches/{batch_id}/cancel")
    assert server.wait_until_batches_done(WAIT)
    assert create(http, uploaded(http, request("room"))).status_code == 200


def test_files_are_bounded_but_an_unfinished_batch_keeps_its_input(
    http: httpx.Client, server: LocalServer
) -> None:
    server.keep_files, server.batch_latency = 2, 60
    batch_id = started(http, request("held"))
    input_id = server.batches[0]["input_file_id"]
    first, second = uploaded(http, request("a")), uploaded(http, request("b"))
    assert http.get(f"/files/{first}").status_code == 404  # the oldest unpinned made room
    assert [f["id"] for f in server.batch_files] == [input_id, second]
    server.keep_files = 1
    answer = upload(http, jsonl(request("c")))
    assert answer.status_code == 429 and "unfinished batches" in error_of(answer)["message"]
    http.post(f"/batches/{batch_id}/cancel")
    assert finished(server, batch_id)["status"] == "cancelled"
    assert upload(http, jsonl(request("c"))).status_code == 200  # the input may go now


def test_the_kept_bytes_are_bounded_too(http: httpx.Client, server: LocalServer) -> None:
    data = jsonl(request("a"))
    server.keep_file_bytes = len(data) * 2
    ids = [uploaded(http, request("a")) for _ in range(3)]
    assert [f["id"] for f in server.batch_files] == ids[1:]
    assert sum(f["bytes"] for f in server.batch_files) <= server.keep_file_bytes


# -- one API among the others: the log, the guards, the faults ---------------------------


def test_batch_requests_are_logged_without_credentials_or_file_bytes(
    server: LocalServer,
) -> None:
    secret = {"Authorization": "Bearer rsk_live_secret"}
    with httpx.Client(base_url=server.url + "/v1", headers=secret, timeout=10) as http:
        batch = finished(server, started(http, request("a")))
    posts = [(r.method, r.path) for r in server.requests if r.method == "POST"]
    assert posts == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    for record in server.requests:
        assert "authorization" not in record.headers and record.credential == "other"
        assert "rsk_live_secret" not in repr(record)
    size = len(jsonl(request("a")))
    assert server.requests[0].body == {
        "purpose": "batch",
        "file": {"filename": "in.jsonl", "bytes": size},
    }
    assert "rsk_live_secret" not in json.dumps(server.batches) + json.dumps(batch)


def test_a_long_list_of_inline_requests_is_logged_in_part(
    http: httpx.Client, server: LocalServer
) -> None:
    lines = [request(f"r{i}", size="16x16") for i in range(150)]
    assert http.post("/batches", json={"requests": lines}).status_code == 200
    logged = next(r for r in server.requests if r.path == "/v1/batches").body["requests"]
    assert len(logged) == 101 and logged[-1] == "<50 more items>"


@pytest.mark.parametrize("path", ["/v1/batches", "/v1/files"])
def test_the_batch_api_is_guarded_as_the_others_are(server: LocalServer, path: str) -> None:
    foreign = httpx.post(server.url + path, json={}, headers={"Host": "evil.example"})
    assert foreign.status_code == 403 and error_of(foreign)["code"] == "forbidden_host"
    origin = httpx.post(server.url + path, json={}, headers={"Origin": "http://evil.example"})
    assert origin.status_code == 403 and error_of(origin)["code"] == "forbidden_origin"
    plain = httpx.post(server.url + path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert server.batches == [] and server.batch_files == []


def test_a_form_is_taken_by_the_upload_only(server: LocalServer) -> None:
    answer = httpx.post(server.url + "/v1/batches", files={"file": ("x", b"{}")})
    assert answer.status_code == 415


def test_a_server_fault_answers_the_batch_api_too(http: httpx.Client, server: LocalServer) -> None:
    file_id = uploaded(http, request("a"))
    server.fault = "status:503"
    answer = create(http, file_id)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert http.get("/batches").status_code == 503
    server.fault = None
    assert create(http, file_id).status_code == 200


def test_an_unknown_api_version_is_a_400(http: httpx.Client) -> None:
    answer = http.get("/batches", headers={"X-Mesh-Version": "1999-01"})
    assert answer.status_code == 400 and error_of(answer)["code"] == "invalid_api_version"


# -- the server: settings, stopping, the command line, the environment -------------------


def test_the_server_stops_promptly_with_a_batch_in_progress() -> None:
    server = LocalServer(batch_latency=60).start()
    worker = f"mesh-local-batches-{server.port}"
    try:
        with httpx.Client(base_url=server.url + "/v1", timeout=10) as http:
            batch_id = started(http, request("slow"))
        assert server.wait_for_batch(batch_id, WAIT, "in_progress") is not None
    finally:
        began = time.monotonic()
        server.stop()
    assert time.monotonic() - began < 5
    assert worker not in [t.name for t in threading.enumerate()]


def test_a_stopped_server_goes_on_with_its_batch_when_started_again() -> None:
    server = LocalServer(batch_latency=60).start()
    try:
        with httpx.Client(base_url=server.url + "/v1", timeout=10) as http:
            quick = {"latency": 0}
            batch_id = started(http, request("a", mesh_local=quick), request("b"))
        one = server.wait_for_batch(batch_id, WAIT, lambda b: b["request_counts"]["completed"] == 1)
        assert one is not None
        server.stop()
        server.batch_latency = 0
        server.start()
        batch = finished(server, batch_id)
        assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("batch_latency", -1),
        ("batch_latency", float("nan")),
        ("batch_endpoints", "/v1/images/generations"),
        ("batch_endpoints", ["images"]),
        ("max_batch_lines", 50_001),
        ("max_batch_lines", 0),
        ("keep_batches", 0),
        ("keep_files", 0),
        ("keep_file_bytes", -1),
        ("max_file_bytes", 0),
    ],
)
def test_the_batch_settings_are_checked_when_set(setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting):
        LocalServer(**{setting: value})
    server = LocalServer()
    with pytest.raises(ValueError, match=setting):
        setattr(server, setting, value)


def test_the_command_line_takes_the_batch_settings() -> None:
    with (
        local_from_the_command_line(
            "--batch-latency", "0.5", "--batch-endpoints", "/v1/chat/completions"
        ) as served,
        httpx.Client(base_url=served.url + "/v1", timeout=10) as http,
    ):
        answer = create(http, uploaded(http, request("a")))
        assert error_of(answer)["message"] == IMAGES_ONLY + "/v1/chat/completions"
    bad = [sys.executable, "-m", "mesh_magics.local", "--batch-endpoints", "chat"]
    done = subprocess.run(bad, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "'chat'" in done.stderr and "Traceback" not in done.stderr


def test_the_environment_sets_the_kernels_batch_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "_shared", None)
    monkeypatch.setenv("MESH_LOCAL_BATCH_LATENCY", "0.5")
    monkeypatch.setenv("MESH_LOCAL_BATCH_ENDPOINTS", "/v1/chat/completions, /v1/images/generations")
    server = ensure_local_server()
    try:
        assert server.batch_latency == 0.5
        assert server.batch_endpoints == ("/v1/chat/completions", GENERATIONS)
    finally:
        server.stop()
    monkeypatch.setattr(server_module, "_shared", None)
    monkeypatch.setenv("MESH_LOCAL_BATCH_ENDPOINTS", "images")
    with pytest.raises(ConfigError, match="MESH_LOCAL_BATCH_ENDPOINTS: 'images'"):
        ensure_local_server()
