"""A Server-Sent Events reader that is linear in the size of the stream.

Why our own (and not httpx-sse): the final frame of an image stream is one `data:` line of
many megabytes, and the readers we measured either re-scan their buffer on every network
read (quadratic) or decode each read on its own (corrupting UTF-8 split across reads).
This one works on bytes: each read is scanned once, an unfinished line grows in a
`bytearray`, and a finished line is decoded once, straight from that buffer.

It follows the SSE specification's parsing rules: `\\r\\n`, `\\r` or `\\n` line ends (also
split across reads), `data:` with or without one space, several `data:` lines joined with
`\\n`, `event:` / `id:` / `retry:` fields, comment lines, and an unfinished event at the end
of the stream is dropped.

With `limits`, the reader counts the bytes against a cap and keeps the deadlines: the idle
one starts again at every event boundary (a blank line, or a comment such as `: ping`),
so a trickle of bytes that never completes an event runs out of it (`limits.py`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

from .limits import Cap, Deadline


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events that each read completes."""

    def __init__(self) -> None:
        self._line = bytearray()  # the line still waiting for its end
        self._after_cr = False  # the last read ended in "\r": a leading "\n" belongs to it
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self.boundaries = 0  # blank and comment lines seen: a server that is alive sends them

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._line += chunk
            return []
        lines = chunk.split(b"\n")
        events: list[ServerSentEvent] = []
        head = lines[0]
        if self._line:
            self._line += head
            buffered, self._line = self._line, bytearray()
            self._take_line(buffered, events)
        else:
            self._take_line(head, events)
        for line in lines[1:-1]:
            self._take_line(line, events)
        self._line += lines[-1]
        return events

    def _take_line(self, line: bytes | bytearray, events: list[ServerSentEvent]) -> None:
        if not line:
            self.boundaries += 1
            self._dispatch(events)
            return
        colon = line.find(b":")
        if colon == 0:
            self.boundaries += 1
            return  # a comment, e.g. ": ping"
        if colon < 0:
            name, value = bytes(line), ""
        else:
            name = bytes(line[:colon])
            start = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
            # decode straight from the buffer: one copy of a many-MB line, not two
            value = str(memoryview(line)[start:], "utf-8", "replace")
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if "\0" not in value:
                self._last_id = value
        elif name == b"retry" and value.isascii() and value.isdigit():  # not "²"
            self._retry = int(value)

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        if self._data:
            data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
            events.append(
                ServerSentEvent(data, self._event or "message", self._last_id, self._retry)
            )
        self._data = []
        self._event = ""


async def aiter_sse(
    chunks: AsyncIterable[bytes], limits: tuple[Cap, Deadline] | None = None
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of a byte stream, as each one completes; within `limits` (a cap on the
    bytes, and the deadlines) if given."""
    decoder = SSEDecoder()
    if limits is None:
        async for chunk in chunks:
            for event in decoder.feed(chunk):
                yield event
        return
    cap, deadline = limits
    next_chunk = aiter(chunks).__anext__
    received = 0
    deadline.alive()  # the idle clock starts with the stream
    while True:
        # One deadline scope per batch of events, never around a `yield`: a timeout must
        # cancel our read, not whatever the consumer awaits between events.
        async with deadline.scope() as scope:
            events: list[ServerSentEvent] = []
            while not events:
                try:
                    chunk = await next_chunk()
                except StopAsyncIteration:
                    return
                received += len(chunk)
                if received > cap.limit:
                    raise cap.error("the stream")
                seen = decoder.boundaries
                events = decoder.feed(chunk)
                if decoder.boundaries != seen:
                    scope.reschedule(deadline.alive())
        for event in events:
            yield event
