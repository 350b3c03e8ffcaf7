"""What a generation reports while it runs: the client makes these, the view shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .images import GeneratedImage


@dataclass(frozen=True)
class StatusChanged:
    """The server said where the job is (`queued`, `processing`, ...)."""

    status: str


@dataclass(frozen=True)
class Retrying:
    """An attempt failed before anything streamed; the client waits `delay` s and tries again."""

    attempt: int  # the attempt about to start, 2 for the first retry
    delay: float
    reason: str


@dataclass(frozen=True)
class RateLimited:
    """The API's host asked every client to wait (a 429 with `Retry-After`, maybe another
    run's): nothing is sent to it for `delay` s."""

    host: str
    delay: float


@dataclass(frozen=True)
class PartialImage:
    """A low-detail preview of image `index`, sent while the model works."""

    index: int
    data: bytes


@dataclass(frozen=True)
class Completed:
    """The finished response: every image, checked, and what came with them."""

    images: list[GeneratedImage]
    request_id: str | None
    usage: dict[str, Any] | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # created, size, quality, ...
    undecoded: tuple[str, ...] = ()  # why each image that came but did not decode failed


StreamEvent = StatusChanged | Retrying | RateLimited | PartialImage | Completed
