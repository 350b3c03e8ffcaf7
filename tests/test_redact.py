"""Redaction masks a secret wherever and however a server may echo it: inside longer
text, cut short, percent-encoded (a URL, a form) or base64-encoded (alone, or inside a
longer base64 text at any byte offset).

Each property runs on its own `Redactor`, so the random secrets never reach the
process-wide registry the rest of the suite shares.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import time
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_magics.redact import MASK, Redactor, redact, register_secret

# What keys are made of: printable ASCII, no whitespace.
keys = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=16, max_size=48)
words = st.text(max_size=200)  # anything around it, unicode included
PROPERTY = settings(max_examples=60, deadline=None)


def redactor_for(key: str) -> Redactor:
    redactor = Redactor()
    redactor.register(key)
    return redactor


@PROPERTY
@given(key=keys, before=words, after=words)
def test_a_key_anywhere_in_a_text_is_masked(key: str, before: str, after: str) -> None:
    shown = redactor_for(key).redact(before + key + after)
    assert key not in shown and MASK in shown


@PROPERTY
@given(key=keys, before=words, after=words, cut=st.integers(min_value=12, max_value=47))
def test_a_key_cut_short_is_masked(key: str, before: str, after: str, cut: int) -> None:
    start, end = key[:cut], key[-cut:]
    shown = redactor_for(key).redact(f"{before}{start} … {end}{after}")
    assert start not in shown and end not in shown


@PROPERTY
@given(
    key=st.text(
        st.characters(min_codepoint=32, exclude_categories=["Cs"]), min_size=8, max_size=40
    ),
    before=words,
    after=words,
    lower=st.booleans(),
)
def test_a_percent_encoded_key_is_masked(key: str, before: str, after: str, lower: bool) -> None:
    redactor = redactor_for(key)
    for encoded, decode in [
        (quote(key, safe=""), unquote),  # every reserved character encoded
        (quote(key), unquote),  # "/" kept
        (quote_plus(key), unquote_plus),  # a form: a space is "+"
        ("".join(f"%{b:02X}" for b in key.encode("utf-8", "surrogatepass")), unquote),
    ]:
        if lower:  # %2f, as some encoders write it
            encoded = re.sub("%[0-9A-F]{2}", lambda hexes: hexes[0].lower(), encoded)
        shown = redactor.redact(f"{quote(before)}?token={encoded}&{quote(after)}")
        assert MASK in shown and key not in decode(shown.replace(MASK, " ")), (encoded, shown)


@PROPERTY
@given(
    key=keys,
    prefix=st.binary(max_size=40),
    suffix=st.binary(max_size=40),
    urlsafe=st.booleans(),
    padded=st.booleans(),
)
def test_base64_of_a_longer_text_holding_the_key_is_masked(
    key: str, prefix: bytes, suffix: bytes, urlsafe: bool, padded: bool
) -> None:
    """A header or a blob that holds the key, base64-encoded whole (`Basic`, a JWT)."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(prefix + key.encode() + suffix).decode()
    encoded = encoded if padded else encoded.rstrip("=")
    shown = redactor_for(key).redact(f"Authorization: Basic {encoded} sent")
    assert MASK in shown
    for piece in shown.split(MASK):
        assert key.encode() not in decoded_at_every_offset(piece)


def decoded_at_every_offset(text: str) -> bytes:
    """Every byte base64 text in TEXT could decode to, read from each of 4 offsets."""
    alphabet = text.replace("-", "+").replace("_", "/")
    found = b""
    for word in alphabet.split():
        word = word.rstrip("=")
        for offset in range(4):
            part = word[offset:]
            part = part[: len(part) - len(part) % 4]
            with contextlib.suppress(binascii.Error):
                found += base64.b64decode(part, validate=True) + b"|"
    return found


def test_the_process_registry_masks_every_form() -> None:
    key = "rsk_live_Z/+9q ab0123456789xyz"
    register_secret(key)
    texts = [
        f"x{key}y",
        quote_plus(key),
        base64.b64encode(b"user:" + key.encode()).decode(),
        base64.urlsafe_b64encode(b"ab" + key.encode()).decode().rstrip("="),
    ]
    for text in texts:
        assert MASK in redact(text), text


def test_redaction_stays_fast() -> None:
    """Every text from a server goes through it: a megabyte with a few keys in it."""
    redactor = Redactor()
    keys = [base64.urlsafe_b64encode(os.urandom(30)).decode() for _ in range(3)]
    for key in keys:
        redactor.register(key)
    text = (base64.b64encode(os.urandom(700_000)).decode() + " ").replace("a", " a")[:1_000_000]
    text = keys[0] + text + quote(keys[1]) + base64.b64encode(keys[2].encode()).decode()
    began = time.perf_counter()
    shown = redactor.redact(text)
    elapsed = time.perf_counter() - began
    assert shown.count(MASK) >= 3
    assert elapsed < 2.0, f"{elapsed:.2f} s for a megabyte"  # about 0.4 s on one core
