"""``python -m mesh_magics.local --port N``: run the embedded backend until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .faults import parse_fault
from .server import LocalServer


def _fault(spec: str) -> str:
    try:
        parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesh_magics.local",
        description="Serve MeshAPI-compatible procedural images on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
    parser.add_argument(
        "--ping-interval", type=float, default=1.0, help="seconds between stream pings"
    )
    parser.add_argument("--fault", type=_fault, help="misbehave, e.g. status:429, drop, stall")
    args = parser.parse_args(argv)

    server = LocalServer(
        args.host,
        args.port,
        latency=args.latency,
        ping_interval=args.ping_interval,
        fault=args.fault,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), on_signal)
    print(server.url, flush=True)
    print("mesh local image server running; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stopped.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
