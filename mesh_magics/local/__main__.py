"""``python -m mesh_magics.local --port N``: run the embedded backend until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from . import numbers
from .addresses import is_wildcard
from .batch_records import BATCH_ENDPOINTS, endpoints_text
from .faults import parse_fault
from .server import LocalServer


def _checked(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a check that raises ValueError with a readable message."""

    def parse(text: str) -> object:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be a whole number between 0 and 65535, not {text!r}")
    return value


def _fault(spec: str) -> str:
    parse_fault(spec)
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mesh_magics.local",
        description="Serve MeshAPI-compatible procedural images on this machine.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0: all)"
    )
    parser.add_argument(
        "--port", type=_checked(_port), default=0, help="port (default: a free one)"
    )
    parser.add_argument(
        "--latency",
        type=_checked(lambda text: numbers.seconds_text(text, "latency")),
        default=0.0,
        help="seconds per generation",
    )
    parser.add_argument(
        "--model-latency",
        metavar="JSON",
        type=_checked(lambda text: numbers.model_seconds_text(text, "model latency")),
        default={},
        help="seconds per generation for some models, e.g. '{\"openai/dall-e-3\": 2}'",
    )
    parser.add_argument(
        "--ping-interval",
        type=_checked(lambda text: numbers.seconds_text(text, "ping interval")),
        default=1.0,
        help="seconds between stream pings (0: none)",
    )
    parser.add_argument(
        "--fault", type=_checked(_fault), help="misbehave, e.g. status:429, drop, stall"
    )
    parser.add_argument(
        "--batch-latency",
        type=_checked(lambda text: numbers.seconds_text(text, "batch latency")),
        default=0.0,
        help="seconds per line of a batch",
    )
    parser.add_argument(
        "--batch-endpoints",
        metavar="PATHS",
        type=_checked(lambda text: endpoints_text(text, "batch endpoints")),
        default=BATCH_ENDPOINTS,
        help="endpoints a batch may be made for, comma-separated (default "
        f"{','.join(BATCH_ENDPOINTS)}; /v1/chat/completions plays the real gateway)",
    )
    args = parser.parse_args(argv)

    server = LocalServer(
        args.host,
        args.port,
        latency=args.latency,
        model_latency=args.model_latency,
        ping_interval=args.ping_interval,
        fault=args.fault,
        batch_latency=args.batch_latency,
        batch_endpoints=args.batch_endpoints,
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
    where = f"all interfaces ({args.host or '0.0.0.0'})" if is_wildcard(args.host) else args.host
    print(
        f"mesh local image server listening on {where}, port {server.port}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stopped.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
