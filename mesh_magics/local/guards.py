"""Who may talk to the embedded backend: this machine's clients, not the web pages it shows.

A server on loopback can be reached by any web page the user opens. DNS rebinding points
a page's own name at 127.0.0.1, so its requests carry a foreign `Host`; CSRF sends a
"simple" cross-origin request (a `text/plain` body, no preflight). As Jupyter server does,
the backend checks both:

- `Host` must name this machine: `localhost` or a loopback address, with any port (an IP
  address also when the server listens beyond loopback: a rebinding page has a name);
- an `Origin` (what a browser sends with a cross-origin request, and with every POST)
  must be this very server, `http://` + the `Host` the request was sent to;
- a body must be JSON: a `Content-Type` other than `application/json` (or `+json`) is
  refused, so a form or a `text/plain` beacon cannot pose as an API call. The one
  exception is `multipart/form-data` on the route that takes it (`/v1/images/edits`, as
  the openai SDK sends an edit): a browser may send that without a preflight too, but
  always with an `Origin`, which the check above refuses when it is not this server.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from ..hosts import is_loopback
from .addresses import is_ip_address


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def host_name(header: str) -> str:
    """The host of a `Host` header, without its port (and without an IPv6's brackets)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


MULTIPART = "multipart/form-data"


def media_type(headers: Message) -> str | None:
    """The media type of the body (`Content-Type` without its parameters), lower-case."""
    content_type = headers.get("Content-Type")
    return None if content_type is None else content_type.partition(";")[0].strip().lower()


def refusal(
    headers: Message, method: str, *, loopback_only: bool, takes_forms: bool = False
) -> Refusal | None:
    """Why a request with HEADERS must not be served, or None if it may be.
    `takes_forms`: the route also takes a `multipart/form-data` body."""
    host = headers.get("Host")
    if host is not None:
        name = host_name(host)
        allowed = is_loopback(name) or (not loopback_only and is_ip_address(name))
        if not allowed:
            shown = host.strip()[:100]
            message = (
                f"Host {shown!r} is not this machine: the embedded backend answers loopback only"
            )
            return Refusal(403, "forbidden_host", message)
    origin = headers.get("Origin")
    if origin is not None and (
        host is None or origin.strip().lower() != f"http://{host.strip().lower()}"
    ):
        message = f"Cross-origin requests are refused (Origin {origin.strip()[:100]!r})"
        return Refusal(403, "forbidden_origin", message)
    media = media_type(headers)
    json_body = media is None or media == "application/json" or media.endswith("+json")
    if method == "POST" and not json_body and not (takes_forms and media == MULTIPART):
        message = f"The body must be application/json, not {str(media)[:100]!r}"
        return Refusal(415, "unsupported_media_type", message)
    return None
