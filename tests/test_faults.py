"""The fault matrix: every way a generation can fail, tried through the magic over real
loopback HTTP. For each: a short, specific message; nothing bound (the old value of the
target survives); no worker thread or connection left behind; the shell still works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics import errors
from mesh_magics.local import LocalServer

from .exposure import run_exposed
from .servers import (
    KeyRelay,
    ScriptedServer,
    b64,
    png_bytes,
    redirect,
    self_signed_context,
    send_bytes,
    send_json,
    send_sse,
    sse_frame,
)
from .support import FAKE_KEY, GENERATIONS, open_sockets, run_cell, settled, worker_threads


def fails_cleanly(ip: InteractiveShell, cell: str, error: type[Exception], *words: str) -> str:
    """Run a failing cell bound to `t_keep`; check all the promises; return the message."""
    ip.user_ns["t_keep"] = "old value"
    sockets_before = open_sockets()
    run = run_cell(ip, cell)
    assert not run.success
    assert isinstance(run.error, error), f"{type(run.error).__name__}: {run.error}"
    message = str(run.error)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    rendered = run.error._render_traceback_()  # type: ignore[union-attr]
    assert len(rendered) == 1 and len(message) < 600
    assert ip.user_ns["t_keep"] == "old value"
    assert settled(lambda: not worker_threads()), "a worker thread is still running"
    assert settled(lambda: open_sockets() <= sockets_before), "a connection was left open"
    assert run_cell(ip, "21 * 2").result == 42
    return message


def local_fault(fault: str, **extra: object) -> str:
    return f"-p mesh_local='{json.dumps({'fault': fault, **extra})}'"


SERVER_FAULTS = [
        ("status:401", errors.AuthenticationError, ("401 unauthorized", "MESHAPI_API_KEY")),
        ("status:402", errors.PaymentRequiredError, ("402 spend_limit_exceeded",)),
        ("status:403", errors.PermissionDeniedError, ("403 forbidden",)),
        ("status:404", errors.NotFoundError, ("404 model_not_found",)),
        ("status:413", errors.RequestTooLargeError, ("413",)),
        ("status:429", errors.RateLimitError, ("429 rate_limit_exceeded",)),
        ("status:500", errors.InternalServerError, ("500 internal_error",)),
        ("status:502", errors.ServiceUnavailableError, ("502 unavailable",)),
        ("status:503", errors.ServiceUnavailableError, ("503 unavailable",)),
        ("status:504", errors.ServiceUnavailableError, ("504 gateway_timeout",)),
        ("html:502", errors.ServiceUnavailableError, ("502",)),
        ("text:503", errors.ServiceUnavailableError, ("503",)),
        ("error_frame", errors.StreamFailedError, ("provider_job_failed", "provider failed")),
        ("drop", errors.StreamError, ("dropped",)),
        ("cut", errors.StreamError, ("no [DONE]",)),
        ("malformed", errors.StreamError, ("malformed frame",)),
        ("not_image", errors.ImageDecodeError, ("not an image",)),
        ("truncated_png", errors.ImageDecodeError, ("PNG",)),
        ("bomb", errors.ImageDecodeError, ("bomb",)),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "error", "words"), SERVER_FAULTS)
def test_server_faults(
    ip: InteractiveShell,
    server: LocalServer,
    fault: str,
    error: type[Exception],
    words: tuple[str, ...],
) -> None:
    message = fails_cleanly(
        ip,
        f"%%meshimage -o t_keep --size 64x64 {local_fault(fault, retry_after='0')}\nfox",
        error,
        *words,
    )
    if fault.startswith("status:") or fault == "error_frame":
        assert "(request " in message  # the request id, for support
    if fault.startswith(("html:", "text:")):
        assert "<" not in message
    retried = fault in ("status:429", "status:503", "text:503")  # they carry Retry-After
    attempts = [r for r in server.requests if r.path.endswith("/generations")]
    assert len(attempts) == (3 if retried else 1)


def test_validation_error_lists_the_details(ip: InteractiveShell) -> None:
    fails_cleanly(
        ip, "%%meshimage -o t_keep --size 9999x9999\nfox", errors.UnprocessableRequestError,
        "422 validation_error", "size",
    )  # fmt: skip


def test_429_then_success_within_the_retry_budget(ip: InteractiveShell) -> None:
    fault = local_fault("status:429", times=2, retry_after="0.2")
    run = run_cell(ip, f"%%meshimage -o t_ok --size 64x64 {fault}\nfox")
    assert run.success, run.error
    assert "retrying in 0.2 s (attempt 2)" in run.stdout and "(attempt 3)" in run.stdout
    assert len(ip.user_ns["t_ok"]) == 1


def test_a_stream_that_stalls_past_the_read_timeout(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "MeshImageMagics.read_timeout = 0.5")
    fails_cleanly(
        ip,
        f"%%meshimage -o t_keep {local_fault('stall')}\nfox",
        errors.TransportError,
        "read timeout",
    )


def test_connection_refused(ip: InteractiveShell) -> None:
    closed = LocalServer().start()
    url = closed.url
    closed.stop()
    fails_cleanly(
        ip,
        f"%%meshimage -o t_keep --base-url {url}\nfox",
        errors.TransportError,
        "could not connect",
    )


def test_tls_failure_with_a_self_signed_certificate(ip: InteractiveShell, tmp_path: Path) -> None:
    with ScriptedServer({}, tls=self_signed_context(tmp_path)) as tls_server:
        message = fails_cleanly(
            ip,
            f"%%meshimage -o t_keep --base-url {tls_server.url}\nfox",
            errors.TransportError,
            "TLS",
        )
    assert "certificate" in message


def test_frame_cut_in_the_middle_then_the_stream_ends(ip: InteractiveShell) -> None:
    processing = sse_frame({"object": "image.chunk", "status": "processing", "data": []})
    half = sse_frame({"object": "image.chunk", "data": [{"b64_json": b64(png_bytes())}]})[:40]
    with ScriptedServer({"/v1/images/generations": send_sse(processing, half)}) as api:
        fails_cleanly(
            ip, f"%%meshimage -o t_keep --base-url {api.url}\nfox", errors.StreamError, "no [DONE]"
        )


def test_openai_style_partial_and_completed_events(ip: InteractiveShell) -> None:
    image = b64(png_bytes(12, 10))
    frames = [
        b"event: image_generation.partial_image\r\n"
        + sse_frame(
            {"type": "image_generation.partial_image", "b64_json": image, "partial_image_index": 0}
        ).replace(b"\n\n", b"\r\n\r\n"),
        sse_frame(
            {"type": "image_generation.completed", "b64_json": image, "usage": {"total_tokens": 7}}
        ),
        b"data: [DONE]\n\n",
    ]
    with ScriptedServer({"/v1/images/generations": send_sse(*frames)}) as api:
        run = run_cell(ip, f"%%meshimage -o t_oa --base-url {api.url}\nfox")
    assert run.success, run.error
    assert ip.user_ns["t_oa"][0].size == (12, 10) and ip.user_ns["t_oa"].usage == {
        "total_tokens": 7
    }
    assert "preview 1 received" in run.stdout


def url_response(url: str) -> dict[str, object]:
    return {"created": 1, "data": [{"url": url}]}


def test_remote_image_that_404s(ip: InteractiveShell) -> None:
    with ScriptedServer({}) as files, ScriptedServer({}) as api:
        api.routes["/v1/images/generations"] = send_json(url_response(files.url + "/gone.png"))
        fails_cleanly(
            ip,
            f"%%meshimage -o t_keep --no-stream --base-url {api.url}\nfox",
            errors.ImageDecodeError,
            "HTTP 404",
        )


def test_remote_image_redirected_to_another_host_is_fetched_without_the_key(
    ip: InteractiveShell,
) -> None:
    with ScriptedServer({}) as cdn, ScriptedServer({}) as files, ScriptedServer({}) as api:
        cdn.routes["/real.png"] = send_bytes(png_bytes(9, 7), headers={"content-type": "image/png"})
        files.routes["/signed.png"] = redirect(cdn.url + "/real.png")
        api.routes["/v1/images/generations"] = send_json(url_response(files.url + "/signed.png"))
        run = run_cell(ip, f"%%meshimage -o t_cdn --no-stream --base-url {api.url}\nfox")
        assert run.success, run.error
        assert ip.user_ns["t_cdn"][0].size == (9, 7)
        [posted] = [headers for path, headers in api.requests if path == GENERATIONS]
        assert posted["authorization"].startswith("Bearer ")
        assert all("authorization" not in headers for _, headers in files.requests + cdn.requests)


def test_remote_image_larger_than_the_cap(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "MeshImageMagics.max_image_bytes = 1000")
    with ScriptedServer({}) as files, ScriptedServer({}) as api:
        files.routes["/big.png"] = send_bytes(png_bytes(300, 300) + b"\0" * 2000)
        api.routes["/v1/images/generations"] = send_json(url_response(files.url + "/big.png"))
        fails_cleanly(
            ip,
            f"%%meshimage -o t_keep --no-stream --base-url {api.url}\nfox",
            errors.ImageDecodeError,
            "cap",
        )


def test_plain_http_to_a_remote_host_is_refused_before_sending_anything(
    ip: InteractiveShell,
) -> None:
    fails_cleanly(
        ip,
        "%%meshimage -o t_keep --base-url http://api.example.com\nfox",
        errors.ConfigError,
        "https",
    )


# -- no fault shows a secret ------------------------------------------------------------------

CREDENTIALS = "user:pw"
SECRETS = (FAKE_KEY, FAKE_KEY[:12], CREDENTIALS)  # a clipped key is still a leak


def with_credentials(url: str) -> str:
    return url.replace("://", f"://{CREDENTIALS}@")


@pytest.mark.filterwarnings("ignore:the user.password in the base URL")
@pytest.mark.parametrize("fault", [fault for fault, _, _ in SERVER_FAULTS] + ["fewer", "cut"])
def test_no_fault_shows_the_key_or_url_credentials(
    ip: InteractiveShell, server: LocalServer, fault: str
) -> None:
    """Everything each fault shows (error, reprs, stdout, stderr, rich outputs, DEBUG logs
    of mesh_magics, httpx and httpcore), with a base URL that carries credentials."""
    spec = local_fault(fault, retry_after="0")
    with KeyRelay(server) as api:  # not our own backend, so the key is in hand and sent
        base = with_credentials(api.url)
        shown = run_exposed(
            ip, f"%%meshimage -o t_keep -n 2 --size 64x64 --base-url {base} {spec}\nfox"
        )
    assert isinstance(shown.error, errors.MeshError), shown.error
    assert "HTTP Request: POST" in shown.texts["logs"]  # the debug logs were all there
    assert f"Bearer {FAKE_KEY}" in api.authorizations
    for secret in SECRETS:
        assert shown.where(secret) == [], f"{secret!r} shown in {shown.where(secret)}"


@pytest.mark.filterwarnings("ignore:the user.password in the base URL")
def test_connection_and_tls_failures_show_no_url_credentials(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    closed = LocalServer().start()
    refused = closed.url
    closed.stop()
    with ScriptedServer({}, tls=self_signed_context(tmp_path)) as tls_server:
        for url in (refused, tls_server.url):
            shown = run_exposed(
                ip, f"%%meshimage -o t_keep --base-url {with_credentials(url)}\nfox"
            )
            assert isinstance(shown.error, errors.TransportError), shown.error
            assert url in str(shown.error)  # the address is named, without its credentials
            for secret in SECRETS:
                assert shown.where(secret) == [], f"{secret!r} shown in {shown.where(secret)}"
