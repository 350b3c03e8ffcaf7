"""The response the benchmarks feed: an SSE stream whose final frame carries big images.

The images are PNGs of random noise (noise does not compress, so a 1024x1024 RGB picture
is ~3 MiB of PNG, ~4 MiB of base64), valid enough for the client's Pillow check. They are
made once per size and kept in memory; the same seed always gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
from dataclasses import dataclass
from functools import cache

MIB = 1024 * 1024
IMAGE_MIB = 4.0  # base64 size of one image in the big responses
CREATED = 1_732_400_000


@dataclass(frozen=True)
class Stream:
    """One SSE response body and what a reader must get out of it."""

    body: bytes  # the whole text/event-stream body: processing, ping, final frame, [DONE]
    images: int
    image_bytes: int  # decoded bytes of all images together

    @property
    def megabytes(self) -> float:
        return len(self.body) / MIB


@cache
def noise_png(side: int, seed: int) -> bytes:
    """A SIDE x SIDE RGB PNG of random noise, stored without compression (it would not help)."""
    from PIL import Image

    pixels = random.Random(seed).randbytes(3 * side * side)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def frame_json(images: list[bytes]) -> bytes:
    """The final `image.chunk` frame, shaped like MeshAPI's (and the embedded backend's)."""
    frame = {
        "id": "imgstream_bench",
        "object": "image.chunk",
        "created": CREATED,
        "model": "openai/gpt-image-1",
        "status": "completed",
        "data": [
            {"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": "noise"}
            for png in images
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return json.dumps(frame).encode("ascii")


@cache
def sse_stream(megabytes: float) -> Stream:
    """A stream whose final frame is about MEGABYTES MiB: ~4 MiB images, at least one."""
    count = max(1, round(megabytes / IMAGE_MIB))
    png_bytes = megabytes / count * MIB * 3 / 4  # base64 turns 3 bytes into 4
    side = max(16, round(math.sqrt(png_bytes / 3)))
    images = [noise_png(side, seed) for seed in range(count)]
    processing = json.dumps(
        {"id": "imgstream_bench", "object": "image.chunk", "created": CREATED, "data": []}
    ).encode()
    body = b"".join(
        [
            b"data: " + processing + b"\n\n",
            b": ping\n\n",
            b"data: " + frame_json(images) + b"\n\n",
            b"data: [DONE]\n\n",
        ]
    )
    return Stream(body, count, sum(len(png) for png in images))
