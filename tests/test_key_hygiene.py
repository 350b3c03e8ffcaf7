"""The API key never appears in any output, error, repr, log or saved file; nor do the
credentials of a URL.

A notebook runs with a known fake key through every path (success, each class of error,
the reprs of the configuration, client and result, saved images, debug logs of httpx,
httpcore and mesh_magics) and everything it left behind is searched for the key. Then
servers that echo the key and URL credentials back, in every text they send, are asked
through the magic, and everything the user could see is searched for both."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient

from mesh_magics import errors
from mesh_magics.local import LocalServer
from mesh_magics.local.registry import LOCAL_TOKEN
from mesh_magics.redact import RedactingFilter, display_url, redact
from mesh_magics.settings import ClientSettings, Secret, client_settings

from .exposure import run_exposed
from .servers import KeyRelay, ScriptedServer, echo_faults
from .support import FAKE_KEY, sent

FAULTS = [
    "status:401", "status:402", "status:403", "status:404", "status:413", "status:429",
    "status:500", "status:503", "html:502", "error_frame", "drop", "cut", "malformed",
    "not_image", "truncated_png", "bomb", "fewer",
]  # fmt: skip


def notebook(server_url: str, log: Path, images: Path) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell
    cells = [
        cell(
            "import logging\n"
            f"logging.basicConfig(filename={str(log)!r}, level=logging.DEBUG, force=True)\n"
            "%load_ext mesh_magics\n"
            f"%config MeshImageMagics.base_url = {server_url!r}\n"
            "%config MeshImageMagics.max_retry_wait = 0.05"
        ),
        cell("%%meshimage -o fox -n 2 --size 64x64\nA fox"),
        cell("%%meshimage -o remote --size 64x64 --model openai/dall-e-3 --no-stream\nA fox"),
        cell(f"paths = fox.save({str(images)!r})\nprint(repr(fox), fox.request, paths)"),
        cell("fox._repr_mimebundle_()[0]['text/plain']"),
        cell(
            "from mesh_magics.http.client import MeshClient\n"
            "magics = get_ipython().magics_manager.registry['MeshImageMagics']\n"
            "settings = magics.client_settings()\n"
            "print(repr(settings), str(settings), MeshClient(settings), settings.api_key)"
        ),
        cell("%config MeshImageMagics"),
        cell("%mesh models"),
        cell("%%meshimage --qualty high\nA fox"),
        cell("%%meshimage --timeout 0.3 -p mesh_local='{\"latency\": 3}'\nA fox"),
        cell("%%meshimage --size 9999x9999\nA fox"),
    ]
    for fault in FAULTS:
        spec = json.dumps({"fault": fault, "retry_after": "0"})
        cells.append(cell(f"%%meshimage -o fox -n 2 --size 64x64 -p mesh_local='{spec}'\nA fox"))
        cells.append(
            cell("import sys, traceback\nprint(repr(sys.last_value), vars(sys.last_value))\n%tb")
        )
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_the_key_is_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, images, saved = tmp_path / "debug.log", tmp_path / "images", tmp_path / "run.ipynb"
    # Through a relay, which to the kernel is an API like any other: it is sent the key.
    with LocalServer() as server, KeyRelay(server) as api:
        nb = notebook(api.url, log, images)
        NotebookClient(
            nb, timeout=120, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # fmt: skip
        records = repr(server.requests)
    nbformat.write(nb, saved)

    # The key really went where it belongs, so every path above had it in hand.
    assert f"Bearer {FAKE_KEY}" in api.authorizations
    assert FAKE_KEY not in records and "authorization" not in records
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert len(errors) >= len(FAULTS) + 3
    assert "HTTP Request: POST" in log.read_text()  # httpx logged at debug level

    searched = [saved, log, *images.iterdir()]
    assert len(searched) >= 4
    for path in searched:
        assert FAKE_KEY.encode() not in path.read_bytes(), f"the key leaked into {path.name}"
    assert not (tmp_path / ".cache").exists()  # no cache anywhere to leak into


# -- the embedded backend never gets the key ---------------------------------------------------


def test_the_embedded_backend_gets_the_local_token_never_the_key(
    ip: InteractiveShell, server: LocalServer
) -> None:
    """`ip` points at `server`, a LocalServer this process started: the local token goes."""
    shown = run_exposed(ip, "%%meshimage -o t_token --size 64x64 --model openai/dall-e-3\nA fox")
    assert shown.error is None, shown.error
    posted = sent(server)
    [fetched] = [r for r in server.requests if r.path.startswith("/files/")]
    assert posted.credential == "local token" and fetched.credential is None
    assert FAKE_KEY not in repr(server.requests) and LOCAL_TOKEN not in repr(server.requests)
    assert all("authorization" not in r.headers for r in server.requests)


def test_base_url_local_gets_the_local_token(ip: InteractiveShell) -> None:
    from mesh_magics.local import ensure_local_server

    shown = run_exposed(ip, "%%meshimage -o t_token --base-url local --size 64x64\nA fox")
    assert shown.error is None, shown.error
    assert sent(ensure_local_server()).credential == "local token"
    settings = client_settings({}, "local")
    assert repr(settings.api_key) == "LocalToken()"


def test_settings_made_by_hand_still_do_not_give_the_embedded_backend_the_key(
    server: LocalServer,
) -> None:
    from mesh_magics.http.client import MeshClient
    from mesh_magics.request import ImageRequest

    settings = ClientSettings(base_url=server.url, api_key=Secret(FAKE_KEY))

    async def run() -> None:
        async with MeshClient(settings) as client:
            async for _ in client.generate(ImageRequest({"prompt": "fox", "size": "64x64"})):
                pass

    asyncio.run(run())
    (posted,) = server.requests
    assert posted.credential == "local token" and FAKE_KEY not in repr(posted)


def test_the_key_still_goes_to_an_api_that_is_not_the_embedded_backend(
    ip: InteractiveShell, server: LocalServer
) -> None:
    with KeyRelay(server) as api:
        shown = run_exposed(ip, f"%%meshimage -o t_token --size 64x64 --base-url {api.url}\nfox")
    assert shown.error is None, shown.error
    assert api.authorizations == [f"Bearer {FAKE_KEY}"]
    # What the backend records of a client's key: its kind, never its value.
    assert sent(server).credential is None  # the relay dropped it
    assert FAKE_KEY not in repr(server.requests)


def test_a_record_never_holds_what_another_client_sends(server: LocalServer) -> None:
    headers = {"Authorization": f"Bearer {FAKE_KEY}", "Cookie": f"k={FAKE_KEY}"}
    headers["Proxy-Authorization"] = f"Basic {FAKE_KEY}"
    answer = httpx.get(server.url + "/v1/models", headers=headers)
    assert answer.status_code == 200
    (record,) = server.requests
    assert record.credential == "other"
    assert FAKE_KEY not in repr(record) and "authorization" not in record.headers


# -- servers that echo secrets back ---------------------------------------------------------

CREDENTIALS = "user:pw"
SECRETS = (FAKE_KEY, FAKE_KEY[:12], CREDENTIALS)  # a clipped key is still a leak


@pytest.mark.filterwarnings("ignore:the user.password in the base URL")
@pytest.mark.parametrize("fault", list(echo_faults(CREDENTIALS)))
def test_what_a_server_echoes_back_is_never_shown(ip: InteractiveShell, fault: str) -> None:
    with ScriptedServer({}) as api:
        api.routes["/v1/images/generations"] = echo_faults(CREDENTIALS)[fault]
        base = api.url.replace("://", f"://{CREDENTIALS}@")
        shown = run_exposed(ip, f"%%meshimage -o t_echo --base-url {base}\nA fox")
        sent = [headers.get("authorization", "") for _, headers in api.requests]
    assert sent and all(value == f"Bearer {FAKE_KEY}" for value in sent)  # the key did go
    for secret in SECRETS:
        assert shown.where(secret) == [], f"{secret!r} shown in {shown.where(secret)}"
    assert (shown.error is None) == (fault == "success"), shown.error
    assert isinstance(shown.error, errors.MeshError | None)
    assert "[redacted]" in "".join(shown.texts.values())  # the echo did come back, masked


def test_credentials_in_the_base_url_are_neither_sent_nor_shown(ip: InteractiveShell) -> None:
    with ScriptedServer({}) as api:
        base = api.url.replace("://", f"://{CREDENTIALS}@")
        shown = run_exposed(ip, f"%%meshimage -o t_echo --base-url {base}\nA fox")
        (headers,) = [headers for _, headers in api.requests]
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"  # not Basic from the URL
    assert isinstance(shown.error, errors.NotFoundError)
    (note,) = [line for line in shown.texts["stderr"].splitlines() if "is not sent" in line]
    assert note.startswith("meshimage: ")  # the user is told, in one line
    assert shown.where(CREDENTIALS) == [] and shown.where(FAKE_KEY) == []


@pytest.mark.filterwarnings("ignore:the user.password in the base URL")
@pytest.mark.parametrize(
    "base",
    [
        "ftp://user:pw@api.example.com",  # refused by the option parser
        "http://user:pw@api.example.com",  # plain http to a remote host
        "https://user:pw@[::1",  # not a URL at all
    ],
)
def test_a_refused_base_url_with_credentials_does_not_show_them(
    ip: InteractiveShell, base: str
) -> None:
    shown = run_exposed(ip, f"%%meshimage -o t_echo --base-url {base}\nA fox")
    assert isinstance(shown.error, errors.OptionError | errors.ConfigError), shown.error
    assert shown.where(CREDENTIALS) == [], f"shown in {shown.where(CREDENTIALS)}"


def test_settings_and_client_reprs_hide_url_credentials() -> None:
    from mesh_magics.http.client import MeshClient

    with pytest.warns(UserWarning, match="not sent"):
        settings = ClientSettings(base_url="https://me:hunter22@api.example.com/v1")
    shown = repr(settings) + repr(MeshClient(settings))
    assert "hunter22" not in shown and "me:" not in shown
    assert "https://api.example.com" in shown


def test_redaction_masks_registered_secrets_and_any_url_userinfo() -> None:
    Secret("rsk_live_abcdef0123456789")
    text = "key rsk_live_abcdef0123456789 at https://bob:s3cr3t@cdn.example/x.png ok"
    assert redact(text) == "key [redacted] at https://cdn.example/x.png ok"
    assert display_url("https://bob:s3cr3t@cdn.example/x.png?sig=abc#f") == (
        "https://cdn.example/x.png?…"
    )


def test_log_records_are_masked_before_any_handler_sees_them() -> None:
    logger = logging.getLogger("mesh_magics.test_hygiene")
    logger.addFilter(RedactingFilter())
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.warning("sent %s to %s", f"Bearer {FAKE_KEY}", "https://user:pw@h.example/")
    finally:
        logger.removeHandler(handler)
    Secret(FAKE_KEY)
    (record,) = records
    assert FAKE_KEY not in record.getMessage() and "user:pw" not in record.getMessage()
