"""Secrets never reach the user: one process-wide registry of secret strings, and
`redact()` for every text that is shown (error messages, reprs, progress, log records).

What is registered: the API key (a `settings.Secret` registers its value when it is made)
and the credentials of a URL's userinfo (`https://user:pw@host`, registered when a base
URL is normalised). Besides the registry, `redact()` strips the userinfo of any URL in a
text, so credentials a server puts in a `Location` or an image URL are not shown either.

Servers echo what they were sent, so a secret can come back inside any text: redact a
server's text as soon as it arrives, and before clipping it. A text cut short elsewhere
may still hold the start or the end of a secret: those are masked too, from 12 characters
on (`MIN_FRAGMENT_LENGTH`). A server may also echo a secret encoded: from a URL or a form
(percent-encoding) or from a header it decoded or a blob it encoded (base64), so those
forms are masked too, anywhere in a text (`Redactor`).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "[redacted]"
MIN_SECRET_LENGTH = 6  # shorter strings are words, not keys: masking them would garble texts
MIN_FRAGMENT_LENGTH = 12  # a cut-off start or end of a long secret this long is masked too
MIN_BASE64_LENGTH = 8  # characters of a base64 form: 48 bits, never there by chance

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# `scheme://userinfo@`: the userinfo part is whatever comes before an "@" in the authority.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@\"'<>]*@")


class Redactor:
    """A registry of secrets, and one compiled pattern that masks them in any text.

    Each secret is masked as it is, by its cut-off starts and ends (`MIN_FRAGMENT_LENGTH`
    on), percent-encoded (any mix of encoded and plain characters, either case of hex,
    `+` or `%20` for a space), and base64-encoded (standard or URL-safe, padded or not,
    alone or inside a longer base64 text: its bytes then start at one of three offsets in a
    3-byte group, so the characters that depend on them alone are registered for each).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0  # characters of the longest text one secret can be masked in

    def register(self, value: str | None) -> None:
        """Never show `value` (nor its stripped form) in any text from now on."""
        if not value:
            return
        with self._lock:
            new = {f for f in (value, value.strip()) if len(f) >= MIN_SECRET_LENGTH}
            if not new - self._secrets:
                return
            self._secrets |= new
            # Longest first: a whole secret is masked whole, not as a fragment and a rest.
            literals = sorted(
                {form for secret in self._secrets for form in _literal_forms(secret)},
                key=len,
                reverse=True,
            )
            encoded = [_percent_encoded(secret) for secret in sorted(self._secrets, key=len)]
            alternatives = encoded[::-1] + [re.escape(form) for form in literals]
            self._pattern = re.compile("|".join(alternatives))
            # Percent-encoded, one character is up to 12: `%F0%9F%94%91`.
            self.longest = max(len(literals[0]), 12 * max(len(s) for s in self._secrets))

    def redact(self, text: str) -> str:
        """`text` with every registered secret masked and every URL's userinfo removed."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if "@" in text:
            text = _USERINFO.sub(r"\1", text)
        return text


def _literal_forms(secret: str) -> set[str]:
    """`secret`, its starts and ends of at least `MIN_FRAGMENT_LENGTH` characters, and its
    base64 forms."""
    lengths = range(MIN_FRAGMENT_LENGTH, len(secret))
    forms = {secret} | {secret[:n] for n in lengths} | {secret[-n:] for n in lengths}
    return forms | _base64_forms(secret.encode("utf-8", "surrogatepass"))


def _base64_forms(data: bytes) -> set[str]:
    """The base64 characters that only DATA decides, at each of the 3 offsets it can start
    at inside a longer base64 text, in the standard and the URL-safe alphabet."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode()
        # Character i holds bits 6i..6i+6; DATA's bits are 8*offset .. 8*(offset+len).
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(data))) // 6
        inner = encoded[first:last]
        if len(inner) >= MIN_BASE64_LENGTH:
            forms |= {inner, inner.translate(_URLSAFE)}
    return forms


_URLSAFE = str.maketrans("+/", "-_")


def _percent_encoded(secret: str) -> str:
    """A pattern for SECRET with any of its characters percent-encoded (UTF-8, hex of
    either case), a space also as `+`: what a URL or a form body carries."""
    units = []
    for char in secret:
        hexes = "".join(
            f"%{_either_case(f'{byte:02X}'[0])}{_either_case(f'{byte:02X}'[1])}"
            for byte in char.encode("utf-8", "surrogatepass")
        )
        plain = r"(?: |\+)" if char == " " else re.escape(char)
        units.append(f"(?:{plain}|{hexes})")
    return "".join(units)


def _either_case(digit: str) -> str:
    return f"[{digit}{digit.lower()}]" if digit.isalpha() else digit


_default = Redactor()


def register_secret(value: str | None) -> None:
    """Never show `value` (nor its stripped form, nor its encoded forms) from now on."""
    _default.register(value)


def register_url_credentials(url: str) -> bool:
    """Register the userinfo of `url` (raw and percent-decoded); True if it has any."""
    userinfo = _userinfo(url)
    if userinfo is None:
        return False
    user, _, password = userinfo.partition(":")
    for part in (userinfo, user, password):
        register_secret(part)
        register_secret(unquote(part))
    return True


def redact(text: str) -> str:
    """`text` with every registered secret masked and every URL's userinfo removed."""
    return _default.redact(text)


def redact_value(value: Any, limit: int | None = None) -> Any:
    """A JSON-like value (error details, usage) with every string in it redacted, and
    clipped to `limit` characters if one is given."""
    if isinstance(value, str):
        return redact(value) if limit is None else clip(value, limit)
    if isinstance(value, dict):
        return {redact(str(k)): redact_value(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, limit) for v in value]
    return value


def clip(text: str, limit: int = 80) -> str:
    """At most `limit` characters of a server's `text` on one line, redacted first so no
    secret is cut in half; control characters (a terminal's escape codes) become spaces."""
    # Redact a little more than is kept: a secret that straddles the cut is masked whole.
    text = _CONTROL.sub(" ", redact(text[: limit + max(_default.longest, 256)]))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def strip_userinfo(url: str) -> str:
    """`url` without its `user:password@` (registering the credentials it had)."""
    if _userinfo(url) is None:
        return url
    register_url_credentials(url)
    scheme, sep, rest = url.partition("://")
    if not sep:  # a scheme-relative `//user@host/...`
        return url.rpartition("@")[2]
    authority_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host = rest[:authority_end].rpartition("@")[2]
    return f"{scheme}{sep}{host}{rest[authority_end:]}"


def display_url(url: str) -> str:
    """How a URL is shown: no credentials, and no query (signed URLs carry tokens there)."""
    shown = strip_userinfo(url.strip())
    base, query, _ = shown.partition("?")
    base = base.partition("#")[0]
    return redact(base + ("?…" if query else ""))


def _userinfo(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    return parts.netloc.rpartition("@")[0]


# -- logging -----------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message and traceback before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's to report, not ours
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# Where a secret could be logged: our own loggers, and httpx/httpcore, whose debug records
# carry URLs and response headers. (A filter on a logger does not reach its children.)
LOGGERS = (
    "mesh_magics",
    "mesh_magics.http.client",
    "mesh_magics.local.handler",
    "mesh_magics.local.server",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def guard_loggers(names: Iterable[str] = LOGGERS) -> None:
    """Put one `RedactingFilter` on each named logger (again and again is harmless)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def one_line(text: str, limit: int) -> str:
    """Server text made safe to print: control and format characters (newlines, ANSI
    escapes, bidi overrides) become spaces, runs of spaces one, and it ends by `limit`."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
