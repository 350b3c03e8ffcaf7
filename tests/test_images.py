"""Image payloads: the fast base64 path decodes exactly what the lenient one does, and the
PNG check finds a cut stream wherever it is cut."""

from __future__ import annotations

import base64
import binascii
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mesh_magics.errors import ImageDecodeError
from mesh_magics.images import check_image, decode_base64, decode_data_url

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def lenient(text: str) -> bytes | None:
    """What `binascii` alone made of TEXT before the fast path existed (None: refused)."""
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None


def ours(text: str) -> bytes | None:
    try:
        return decode_base64(text, what="an image")
    except ImageDecodeError as exc:
        assert str(exc) == "an image is not valid base64"
        return None


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),  # well formed
        st.text(ALPHABET, max_size=80),  # any padding and length
        st.text(ALPHABET + "\n\r \t-_.*é\x00", max_size=80),  # line breaks, junk, non-ASCII
        st.binary(max_size=300).map(  # wrapped at 76 columns, as MIME encoders do
            lambda b: base64.encodebytes(b).decode()
        ),
    )
)
def test_fast_base64_decodes_whatever_binascii_decodes_and_nothing_else(text: str) -> None:
    assert ours(text) == lenient(text)


def test_megabytes_of_base64_decode_to_the_same_bytes() -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    text = base64.b64encode(data).decode()
    assert decode_base64(text, what="an image") == data
    assert decode_data_url(f"data:image/png;base64,{text}", what="an image") == data


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_whole_png_passes_with_its_size_and_padding_after_it() -> None:
    data = png()
    image = check_image(data, what="image 1 of 1")
    assert (image.format, image.width, image.height) == ("png", 64, 48)
    assert check_image(data + b"\0" * 7, what="image 1 of 1").width == 64


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_png_cut_anywhere_is_refused_as_truncated(keep: float) -> None:
    data = png(256, 256)  # ~200 KB: its pixels span several IDAT chunks
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ImageDecodeError, match=r"^image 2 of 3 is a truncated PNG"):
        check_image(cut, what="image 2 of 3")


def test_a_png_cut_inside_its_iend_chunk_is_refused() -> None:
    data = png()
    assert data.endswith(b"IEND\xaeB`\x82")
    for missing in (1, 4, 8):
        with pytest.raises(ImageDecodeError, match="truncated PNG"):
            check_image(data[:-missing], what="image 1 of 1")


def test_a_png_whose_chunk_length_overruns_the_data_is_refused() -> None:
    data = bytearray(png())
    first_after_header = 8 + 12 + 13  # signature, then the IHDR chunk (13 bytes of data)
    data[first_after_header : first_after_header + 4] = (10**9).to_bytes(4, "big")
    with pytest.raises(ImageDecodeError, match="PNG"):
        check_image(bytes(data), what="image 1 of 1")
