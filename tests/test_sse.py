"""The SSE reader follows the specification whatever the line ends and read boundaries."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_magics.http.sse import ServerSentEvent, SSEDecoder, aiter_sse


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_fields_comments_and_multiline_data() -> None:
    stream = b": ping\n\nevent: update\nid: 7\nretry: 3000\ndata: one\ndata:two\ndata:  three\n\n"
    assert decode(stream) == [ServerSentEvent("one\ntwo\n three", "update", "7", 3000)]


def test_crlf_cr_and_lf_agree() -> None:
    lf = b"data: a\n\ndata: b\ndata: c\n\n"
    expected = decode(lf)
    assert decode(lf.replace(b"\n", b"\r\n")) == expected
    assert decode(lf.replace(b"\n", b"\r")) == expected
    assert [e.data for e in expected] == ["a", "b\nc"]


def test_crlf_split_between_reads_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == decode(b"data: a\n\ndata: b\n\n")


def test_utf8_split_across_reads() -> None:
    raw = "data: renard 🦊 déjà\n\n".encode()
    split = raw.index("🦊".encode()) + 2
    assert decode(raw[:split], raw[split:]) == [ServerSentEvent("renard 🦊 déjà")]


def test_unfinished_event_at_end_is_dropped() -> None:
    assert decode(b"data: complete\n\ndata: half") == [ServerSentEvent("complete")]


def test_large_event_in_small_reads() -> None:
    payload = b"x" * 1_000_000
    raw = b"data: " + payload + b"\n\n"
    chunks = [raw[i : i + 4096] for i in range(0, len(raw), 4096)]
    (event,) = decode(*chunks)
    assert len(event.data) == len(payload)


def test_async_reader() -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for part in (b"data: a\n", b"\ndata: [DONE]\n\n"):
            yield part

    async def collect() -> list[str]:
        return [event.data async for event in aiter_sse(chunks())]

    assert asyncio.run(collect()) == ["a", "[DONE]"]


_lines = st.lists(
    st.one_of(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=20,
        ).map(lambda t: f"data: {t}"),
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=20,
        ).map(lambda t: f"data:{t}"),
        st.just(": ping"),
        st.just("event: x"),
        st.just(""),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=_lines, ending=st.sampled_from(["\n", "\r\n", "\r"]), cuts=st.lists(st.integers(0, 2000))
)
def test_any_split_and_line_ending_gives_the_same_events(
    lines: list[str], ending: str, cuts: list[int]
) -> None:
    raw = "".join(line + ending for line in lines).encode()
    reference = decode("".join(line + "\n" for line in lines).encode())
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode(*pieces) == reference


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=30,
        ),
        max_size=8,
    ),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    cut=st.integers(0, 10_000),
)
def test_data_with_and_without_the_space_agree(texts: list[str], ending: str, cut: int) -> None:
    texts = [t for t in texts if not t.startswith(" ")]  # one leading space is the separator
    spaced = "".join(f"data: {t}{ending}{ending}" for t in texts).encode()
    tight = "".join(f"data:{t}{ending}{ending}" for t in texts).encode()
    point = cut % (len(tight) + 1)
    assert (
        decode(tight[:point], tight[point:])
        == decode(spaced)
        == [ServerSentEvent(t) for t in texts]
    )
