"""A real kernel driven as an interactive frontend drives it, and a server the test holds.

`Frontend` starts an ipykernel with this interpreter (jupyter_client puts
`sys.executable` in place of the kernel spec's `python`), sends `execute_request` with
`allow_stdin: true` as JupyterLab does, and keeps every iopub message, so a test can ask
what a cell showed: its displays, their later updates, its printed text, its widgets.
Waits are on conditions, with generous upper bounds.

`HeldServer` is the embedded backend with a gate: while held, a generation request is
received (and in `requests`) but not answered, so a test decides when the answer comes.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from mesh_magics.local import LocalServer
from mesh_magics.local.faults import RequestControls

from .support import FAKE_KEY

Msg = dict[str, Any]

STARTUP_SECONDS = 60.0
WAIT_SECONDS = 30.0


def kernel_env(home: Path) -> dict[str, str | None]:
    """A kernel's environment: the fake key, no base URL, IPython's files in `home`."""
    return {"MESHAPI_API_KEY": FAKE_KEY, "MESHAPI_BASE_URL": None, "IPYTHONDIR": str(home)}


class HeldServer(LocalServer):
    """A LocalServer whose generations wait, once received, until `release()`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __enter__(self) -> HeldServer:
        self.start()
        return self

    def stop(self) -> None:
        self.release()
        super().stop()

    def defaults(self) -> RequestControls:
        # The handler reads the settings of a request once it has recorded it.
        self._gate.wait(WAIT_SECONDS * 4)
        return super().defaults()

    def generations(self) -> int:
        return sum(r.path.rstrip("/").endswith("/images/generations") for r in self.requests)


class Frontend:
    """One kernel, and everything it published on iopub."""

    def __init__(self, workdir: Path, env: dict[str, str | None] | None = None) -> None:
        """A kernel in `workdir`, with this process's environment changed by `env` (a
        value of None takes the variable out)."""
        environment = {**os.environ, **(env or {})}
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(
            cwd=str(workdir), env={k: v for k, v in environment.items() if v is not None}
        )
        self.process = self.km.provisioner.process  # type: ignore[union-attr]
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=STARTUP_SECONDS)
        self.messages: list[Msg] = []
        self.replies: dict[str, Msg] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._read_iopub, name="iopub", daemon=True)
        self._pump.start()

    # -- sending ------------------------------------------------------------------------

    def execute(self, code: str, *, allow_stdin: bool = True) -> str:
        """Send a cell as an interactive frontend does; its msg_id, at once."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": allow_stdin,
            "stop_on_error": True,
        }
        msg = self.kc.session.msg("execute_request", content)
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def run(self, code: str, timeout: float = WAIT_SECONDS) -> str:
        """Execute a cell and wait until it has ended and its output is all in; its
        msg_id. A cell that fails fails the test, with the kernel's error."""
        cell = self.execute(code)
        reply = self.reply(cell, timeout)
        assert reply["content"]["status"] == "ok", reply["content"]
        self.wait_idle(cell, timeout)
        return cell

    def click(self, comm_id: str) -> None:
        """What a widget frontend sends when a Button is clicked."""
        data = {"method": "custom", "content": {"event": "click"}}
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    # -- receiving ----------------------------------------------------------------------

    def reply(self, cell: str, timeout: float = WAIT_SECONDS) -> Msg:
        """The execute_reply of `cell` (the shell channel is read on this thread only)."""
        deadline = time.monotonic() + timeout
        while cell not in self.replies:
            left = deadline - time.monotonic()
            assert left > 0, f"no execute_reply within {timeout} s"
            with suppress(queue.Empty):
                msg = self.kc.get_shell_msg(timeout=min(left, 0.5))
                self.replies[msg["parent_header"].get("msg_id", "")] = msg
        return self.replies[cell]

    def _read_iopub(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            except Exception:  # the channels closed
                return
            with self._changed:
                self.messages.append(msg)
                self._changed.notify_all()

    def wait_for(self, found: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
        """Wait until `found()` is truthy (checked as messages arrive); its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (value := found()):
                left = deadline - time.monotonic()
                assert left > 0, f"waited {timeout} s for {what}; kernel said:\n{self.story()}"
                self._changed.wait(min(left, 0.5))
        return value

    def wait_idle(self, cell: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait_for(lambda: self.index_of_idle(cell) is not None, "the cell to end", timeout)

    def index_of_idle(self, cell: str) -> int | None:
        for i, msg in enumerate(self.messages):
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and parent_of(msg) == cell
            ):
                return i
        return None

    def of(self, cell: str, *types: str) -> list[Msg]:
        """The iopub messages of `cell` (its parent header), of these types."""
        return [m for m in list(self.messages) if parent_of(m) == cell and m["msg_type"] in types]

    def printed(self, cell: str, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for m in self.of(cell, "stream") if m["content"]["name"] == name
        )

    def displays(self, cell: str) -> list[str]:
        """The display ids the cell displayed, in order."""
        return [did for m in self.of(cell, "display_data") if (did := display_id(m)) is not None]

    def updates(self, did: str) -> list[Msg]:
        """Every `update_display_data` for display id `did`, whoever's parent it has."""
        return [
            m
            for m in list(self.messages)
            if m["msg_type"] == "update_display_data" and display_id(m) == did
        ]

    def widgets(self, cell: str, model: str) -> list[Msg]:
        """The widget models of this kind that the cell opened (ipywidgets 8 comm_open)."""
        return [
            m
            for m in self.of(cell, "comm_open")
            if m["content"].get("target_name") == "jupyter.widget"
            and m["content"]["data"]["state"].get("_model_name") == model
        ]

    def story(self, last: int = 40) -> str:
        """The latest messages, one line each, for a failing assertion."""
        lines = []
        for m in list(self.messages)[-last:]:
            content = m["content"]
            if m["msg_type"] == "status":
                continue
            detail = content.get("text") or content.get("data", {}).get("text/plain") or ""
            if m["msg_type"] == "error":
                detail = f"{content['ename']}: {content['evalue']}"
            lines.append(f"{parent_of(m)[:8]} {m['msg_type']} {str(detail)[:100]!r}")
        return "\n".join(lines)

    def restart(self) -> None:
        """Restart the kernel as a frontend's "Restart Kernel" does: a new process, the
        same connection; wait until it answers."""
        self.km.restart_kernel(now=False)
        self.process = self.km.provisioner.process  # type: ignore[union-attr]
        self.kc.wait_for_ready(timeout=STARTUP_SECONDS)

    # -- ending -------------------------------------------------------------------------

    def is_alive(self) -> bool:
        """Whether the kernel's process still runs, as its manager or the OS sees it."""
        return bool(self.km.is_alive()) or (
            self.process is not None and self.process.poll() is None
        )

    def close(self, now: bool = False) -> None:
        """Shut the kernel down as a frontend does (a shutdown request); once."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._pump.join(5)
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=now)

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode


@contextmanager
def frontend(workdir: Path, env: dict[str, str | None] | None = None) -> Iterator[Frontend]:
    kernel = Frontend(workdir, env)
    try:
        yield kernel
    finally:
        kernel.close()


def parent_of(msg: Msg) -> str:
    return str(msg["parent_header"].get("msg_id", ""))


def display_id(msg: Msg) -> str | None:
    did = msg["content"].get("transient", {}).get("display_id")
    return None if did is None else str(did)
