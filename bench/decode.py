"""Benchmark 1: decoding a stream whose final frame carries big images, against the raw
limit and the official SDK (1c), and what the caps and deadlines cost (1d); benchmark 5:
how that time grows with the frame's size.

Every contender reads the same bytes from the same loopback server (`sse_server`), from
sending the request to having every image's bytes; see `readers` for what each does.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .payload import MIB, Stream, sse_stream
from .plan import WARM_UP_MIB, Plan
from .readers import READERS, Reader, sdk_available
from .report import Goal, Row
from .sse_server import stream_url
from .timing import ms, rounds

DECODE_GOAL = Goal(1.3)  # ours <= 1.3x the raw limit
SDK_GOAL = Goal(20, at_least=True)  # ours >= 20x faster than the official SDK
CAPS_GOAL = Goal(1.05)  # the capped reader <= 1.05x the same reader without caps
LINEAR_GOAL = Goal(1.5)  # per-MiB time at any size <= 1.5x the per-MiB time at the smallest


@dataclass
class Contender:
    """Reads URL with READER when called, checks it decoded every image of STREAM, and
    returns the seconds it took (and keeps the raw limit's parse time, not the images)."""

    reader: Reader
    url: str
    stream: Stream
    parse_seconds: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        reading = self.reader(self.url)
        if self.reader is not READERS["httpx"]:  # the floor parses nothing
            decoded = (len(reading.images), sum(map(len, reading.images)))
            expected = (self.stream.images, self.stream.image_bytes)
            assert decoded == expected, f"{self.reader.__name__} misread the stream"
        self.parse_seconds.append(reading.parse_seconds)
        return reading.seconds


def run_decode(plan: Plan, server: str) -> list[Row]:
    mib = plan.decode_mib
    stream = sse_stream(mib)
    frame = f"{mib:g} MiB frame ({stream.images} image{'s' if stream.images > 1 else ''})"
    rows = []
    variants = [
        ("chunk4k", 0, "4 KB chunks", ("ours", "raw-pybase64", "ours-sse", "httpx")),
        ("event", 0, "1 chunk per event", ("ours",)),
        ("chunk4k", plan.paced_mb_per_s, f"4 KB chunks at {plan.paced_mb_per_s} MB/s", ("ours",)),
    ]
    # (what is measured, its contender, the reference contender, the goal)
    comparisons = [
        ("full client vs raw limit", "ours", "raw", DECODE_GOAL),
        ("full client vs raw limit decoding with pybase64", "ours", "raw-pybase64", None),
        ("our SSE layer alone vs raw limit", "ours-sse", "raw", None),
        ("httpx alone, no parsing vs raw limit", "httpx", "raw", None),
        ("httpx alone + pybase64 raw limit's decoding vs raw limit", "floor", "raw", None),
    ]
    for framing, pace, how, names in variants:
        url = stream_url(server, mib, framing, pace)
        contenders = {name: Contender(READERS[name], url, stream) for name in ("raw", *names)}
        medians = rounds(contenders, plan.reps, warm_up=plan.warm_up)
        if "httpx" in medians and "raw-pybase64" in medians:
            # No reader on httpx beats httpx's own time plus what the fastest raw limit
            # does after its last byte (join, UTF-8, JSON, base64): the floor for any client
            # on httpx, whatever its SSE reader.
            medians["floor"] = medians["httpx"] + statistics.median(
                contenders["raw-pybase64"].parse_seconds
            )
        for what, name, reference, goal in comparisons:
            if name in medians and reference in medians:
                rows.append(
                    Row(
                        "1",
                        f"{frame}, {how}: {what}",
                        ms(medians[name]),
                        ms(medians[reference]),
                        medians[name] / medians[reference],
                        goal,
                    )
                )
    return rows


def run_sdk(plan: Plan, server: str) -> list[Row]:
    if not sdk_available():
        return []  # `pip install -e .[bench]` brings it
    stream = sse_stream(plan.sdk_mib)
    url = stream_url(server, plan.sdk_mib)
    READERS["sdk"](stream_url(server, WARM_UP_MIB))  # its imports, not its parser
    contenders = {
        "ours": Contender(READERS["ours"], url, stream),
        "sdk": Contender(READERS["sdk"], url, stream),
    }
    medians = rounds(contenders, plan.sdk_reps, warm_up=False)
    return [
        Row(
            "1c",
            f"{plan.sdk_mib:g} MiB frame, 4 KB chunks: official SDK vs ours (SDK / ours)",
            ms(medians["ours"]),
            ms(medians["sdk"]),
            medians["sdk"] / medians["ours"],
            SDK_GOAL,
        )
    ]


def run_caps(plan: Plan, server: str) -> list[Row]:
    """1d: the stream reader with its byte cap and deadlines (`http/limits.py`) against the
    same reader without them, on the decode frame in 4 KB chunks (~10,000 reads)."""
    mib = plan.decode_mib
    stream = sse_stream(mib)
    url = stream_url(server, mib)
    contenders = {
        name: Contender(READERS[name], url, stream) for name in ("sse-capped", "sse-uncapped")
    }
    medians = rounds(contenders, plan.reps, warm_up=plan.warm_up)
    return [
        Row(
            "1d",
            f"{mib:g} MiB frame, 4 KB chunks: SSE reader with caps and deadlines vs without",
            ms(medians["sse-capped"]),
            ms(medians["sse-uncapped"]),
            medians["sse-capped"] / medians["sse-uncapped"],
            CAPS_GOAL,
        )
    ]


def run_scaling(plan: Plan, server: str) -> list[Row]:
    streams = {mib: sse_stream(mib) for mib in plan.scaling_mib}
    contenders: dict[str, Contender] = {}
    for mib, stream in streams.items():
        url = stream_url(server, mib)
        contenders[f"ours {mib}"] = Contender(READERS["ours"], url, stream)
        contenders[f"raw {mib}"] = Contender(READERS["raw"], url, stream)
    medians = rounds(contenders, plan.reps, warm_up=plan.warm_up)
    rows = []
    first = min(streams)
    base_slope = medians[f"ours {first}"] / (len(streams[first].body) / MIB)
    for mib, stream in streams.items():
        size = len(stream.body) / MIB  # the whole body, a little more than the frame
        ours, raw = medians[f"ours {mib}"] / size, medians[f"raw {mib}"] / size
        rows.append(
            Row(
                "5",
                f"{mib:g} MiB frame, 4 KB chunks: ms per MiB vs ms per MiB at {first:g} MiB",
                f"{ms(medians[f'ours {mib}'])}, {ours * 1000:.1f} ms/MiB",
                f"raw {raw * 1000:.1f} ms/MiB",
                ours / base_slope,
                LINEAR_GOAL if mib != first else None,
            )
        )
    return rows
