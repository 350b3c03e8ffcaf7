"""An async client for MeshAPI's `/v1/images/generations`, `/v1/images/edits` and
`/v1/models`.

It knows nothing of notebooks: it turns an `ImageRequest` into a stream of `events`
(status, retries, previews, and finally `Completed` with checked images) or raises one of
`errors`. The policy it follows is the one in docs/protocol.md:

- retry only what never reached the server (a connection that could not be made; see
  `failures.py`), a 429, and a 503 that says when to come back (`Retry-After`), with
  exponential backoff, honouring `Retry-After` (seconds or an HTTP date, capped); never a
  500, 502 or 504 (the job may have started, and billed), nor a request that was sent,
  even in part, nor a started stream;
- a bound on every read (`limits.py`): a response's bytes are capped by what was asked,
  inflated bytes counted; a stream must complete an event (a ping counts) every
  `idle_timeout`, a request end within `total_timeout`; the read timeout fires when the
  server sends nothing at all for that long;
- the key goes to the API's host only: API redirects are not followed, and remote image
  URLs are fetched by a second client that has no Authorization header, over https (or
  http on loopback), size-capped, and never from an address closer than the API's
  (`connections.Nearest`);
- no secret reaches the user: every text from the server is redacted (`redact.py`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import random
import re
import ssl
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from .._version import __version__
from ..errors import (
    APIError,
    ConfigError,
    ImageDecodeError,
    MeshError,
    ResponseTooLargeError,
    StreamError,
    StreamFailedError,
    TransportError,
)
from ..events import Completed, RateLimited, Retrying, StatusChanged, StreamEvent
from ..hosts import is_loopback
from ..images import GeneratedImage, check_image, decode_base64, decode_data_url
from ..redact import clip, display_url, guard_loggers, redact, redact_value, strip_userinfo
from ..request import ImageRequest
from ..settings import (
    ClientSettings,
    LocalToken,
    is_embedded_backend,
    normalize_base_url,
)
from .bodies import WireBody, wire_body
from .connections import AddressRefused, OpenConnections, place_of, tracked_transport
from .envelopes import (
    MAX_ERROR_BODY,
    error_from_envelope,
    error_from_response,
    request_id_of,
    text_summary,
)
from .failures import Progress, Retryable, describe, request_failure, ssl_error_in
from .frames import Frame, checked, images_of, kind_of, preview_of
from .limits import (
    MODELS_CAP,
    Cap,
    Deadline,
    decoded_chunks,
    image_cap,
    read_body,
    response_cap,
)
from .listed import remember
from .pacing import gate_for
from .sse import aiter_sse

log = logging.getLogger("mesh_magics")
guard_loggers()  # before the first request: httpx and httpcore log URLs and headers

MODELS_PATH = "/v1/models"
ACCEPT_ENCODING = "gzip, deflate"  # what `limits.decoded_chunks` inflates within the cap
NO_STREAM_READ_TIMEOUT = 600.0  # a plain request waits for the whole generation
WRITE_TIMEOUT = 60.0
AFTER_DONE_SECONDS = 0.5  # how long the end of a stream may take to come after [DONE]
EXTRA_LIMIT = 2000  # characters kept of each text the server adds (size, usage, ...)
MAX_BACKOFF_DOUBLINGS = 30  # 2**30 backoff steps is already far past any wait cap
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what a key may hold and still be a header


@functools.cache
def _verified_tls() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~30 ms a client."""
    return httpx.create_ssl_context()


def new_request_id() -> str:
    return f"mm_{uuid.uuid4().hex[:24]}"


class MeshClient:
    """Use as `async with MeshClient(settings) as client:`; one per event loop."""

    def __init__(
        self, settings: ClientSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base_url = normalize_base_url(
            settings.base_url, allow_insecure_http=settings.allow_insecure_http
        )
        self._transport = transport
        self._api: httpx.AsyncClient | None = None
        self._connections: OpenConnections | None = None
        self._files: httpx.AsyncClient | None = None
        self._file_connections: OpenConnections | None = None
        self._verify = _verified_tls() if settings.verify is True else settings.verify

    def __repr__(self) -> str:
        return f"MeshClient(base_url={display_url(self.base_url)!r})"

    def _timeouts(self, read: float | None = None) -> httpx.Timeout:
        connect = self.settings.connect_timeout
        read = self.settings.read_timeout if read is None else read
        return httpx.Timeout(connect=connect, read=read, write=WRITE_TIMEOUT, pool=connect)

    async def __aenter__(self) -> MeshClient:
        headers = {"User-Agent": f"mesh-magics/{__version__}", "Accept-Encoding": ACCEPT_ENCODING}
        key = self.settings.api_key
        if key is not None and is_embedded_backend(self.base_url):
            key = LocalToken()  # even settings made by hand never give our backend the key
        if key is not None:
            headers["Authorization"] = f"Bearer {_header_safe_key(key.reveal())}"
        transport = self._transport
        if transport is None:
            transport, self._connections = tracked_transport(self._verify)
        self._api = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeouts(),
            transport=transport,
            verify=self._verify,
            follow_redirects=False,  # a redirect could carry the key to another host
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in (self._api, self._files):
            if client is not None:
                await client.aclose()
        for connections in (self._connections, self._file_connections):
            if connections is not None:
                await connections.aclose()  # what httpcore left open when cancelled

    # -- generation ------------------------------------------------------------------

    async def generate(self, request: ImageRequest) -> AsyncGenerator[StreamEvent, None]:
        """Events of one generation, ending with `Completed`; retries as the policy says."""
        headers = {"X-Request-Id": new_request_id(), "Content-Type": "application/json"}
        if request.stream:
            headers["Accept"] = "text/event-stream"
        # Encoded once, not once per attempt: with an --image it can be tens of MB. An
        # edit's images are encoded as they are sent (bodies.py).
        body = wire_body(request)
        headers["Content-Length"] = str(body.size)
        attempt = 1
        gate = gate_for(self.base_url)
        while True:
            if gate.remaining > 0:  # a 429 to another run of this host holds this one too
                yield RateLimited(urlsplit(self.base_url).netloc.rpartition("@")[2], gate.remaining)
                await gate.ready()
            try:
                async with aclosing(self._attempt(request, body, headers)) as events:
                    async for event in events:
                        yield event
                return
            except MemoryError:  # whatever the caps let through, the kernel must survive
                raise ResponseTooLargeError(
                    "the response did not fit in memory (MemoryError): ask for fewer or smaller "
                    f"images (request {headers['X-Request-Id']})"
                ) from None
            except Retryable as failed:
                if attempt > self.settings.max_retries:
                    raise failed.error from None
                delay = self._backoff(attempt, getattr(failed.error, "retry_after", None))
                attempt += 1
                log.debug(
                    "attempt %d failed (%s); retrying in %.1f s", attempt - 1, failed.error, delay
                )
                yield Retrying(attempt, delay, _short_reason(failed.error))
                if getattr(failed.error, "status", None) == 429:
                    gate.pause(delay)  # the limit is the host's: every run to it waits
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt `attempt + 1`: what the server asked, else exponential
        with jitter; always a finite number in [0, max_retry_wait]."""
        cap = _finite_or(self.settings.max_retry_wait, 60.0)
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, cap)
        steps = min(max(attempt - 1, 0), MAX_BACKOFF_DOUBLINGS)
        delay = _finite_or(self.settings.backoff_base, 0.5) * 2**steps
        return min(delay * random.uniform(0.75, 1.25), cap)

    async def _attempt(
        self, request: ImageRequest, body: WireBody, headers: dict[str, str]
    ) -> AsyncGenerator[StreamEvent, None]:
        api = self._require_open()
        # Without a stream nothing keeps the connection alive while the image is made.
        read_timeout = self.settings.read_timeout
        if not request.stream:
            read_timeout = max(read_timeout, NO_STREAM_READ_TIMEOUT)
        progress = Progress()
        path = request.path
        deadline = Deadline(
            total=self.settings.total_timeout,
            idle=self.settings.idle_timeout if request.stream else None,
        )
        cap = response_cap(request, self.settings.max_response_mb)
        try:
            async with contextlib.AsyncExitStack() as stack:
                opening = api.stream(
                    "POST",
                    path,
                    content=body.content(),
                    headers=headers,
                    timeout=self._timeouts(read_timeout),
                    extensions={"trace": progress},
                )
                async with deadline.scope():
                    response = await stack.enter_async_context(opening)
                progress.answered = True  # from here on nothing may be retried
                request_id = request_id_of(response) or headers["X-Request-Id"]
                status = response.status_code
                log.debug("POST %s -> %d (%s)", path, status, request_id)
                if 300 <= status < 400:
                    raise _redirected(response, "POST", path)
                if status >= 400:
                    async with deadline.scope():
                        error = await error_from_response(response)
                    if _may_retry(error, "retry-after" in response.headers):
                        raise Retryable(error)
                    raise error
                content_type = response.headers.get("content-type", "").lower()
                limits = (cap, deadline)
                if content_type.startswith("text/event-stream"):
                    async with aclosing(
                        self._read_stream(response, request, request_id, limits)
                    ) as events:
                        async for event in events:
                            yield event
                else:
                    yield await self._read_json(response, request, request_id, limits)
        except httpx.HTTPError as exc:
            failure = request_failure(
                exc,
                progress,
                where=display_url(self.base_url),
                body_size=body.size,
                read_timeout=read_timeout,
                write_timeout=WRITE_TIMEOUT,
                streaming=request.stream,
            )
            log.debug("POST %s failed: %s", path, failure)
            raise failure from None

    async def _read_json(
        self,
        response: httpx.Response,
        request: ImageRequest,
        request_id: str,
        limits: tuple[Cap, Deadline],
    ) -> Completed:
        cap, deadline = limits
        raw = await read_body(response, cap, deadline, f"the response (request {request_id})")
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # a UnicodeDecodeError; `[[[...` too deep
            raise StreamError(
                f"the server's response ({_described(response)}) is not JSON: "
                f"{text_summary(raw[:MAX_ERROR_BODY])!r} (request {request_id})"
            ) from None
        del raw
        return await self.completed_from(payload, request, request_id, cap)

    async def completed_from(
        self, payload: Any, request: ImageRequest, request_id: str, cap: Cap
    ) -> Completed:
        """The images of an answer that came whole (`{"data": [...], "usage": ...}`: a
        plain response, a batch's output line), checked; `payload` is emptied on the way."""
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise StreamError(f"the server's response has no image list (request {request_id})")
        items = payload.pop("data")
        usage = payload.pop("usage", None)
        return await self._completed(items, request, request_id, usage, payload, cap)

    async def _read_stream(
        self,
        response: httpx.Response,
        request: ImageRequest,
        request_id: str,
        limits: tuple[Cap, Deadline],
    ) -> AsyncGenerator[StreamEvent, None]:
        items: list[Any] = []
        usage: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        done = False
        last_status = None
        async with aclosing(aiter_sse(decoded_chunks(response), limits)) as events:
            async for sse in events:
                if sse.data == "[DONE]":
                    done = True
                    await _read_to_the_end(events)  # so the connection can serve again
                    break
                frame = checked(_parse_frame(sse.data, request_id), request_id)
                kind = kind_of(frame)
                if kind is Frame.ERROR:
                    raise error_from_envelope(frame, None, request_id, StreamFailedError)
                if kind is Frame.PREVIEW:
                    preview = preview_of(frame)
                    if preview is not None:
                        yield preview
                elif kind is Frame.IMAGE:
                    items.append(frame)
                    usage = frame.get("usage") or usage
                elif kind is Frame.IMAGES:
                    items.extend(images_of(frame, request_id))
                    usage = frame.get("usage") or usage
                    extra = {k: v for k, v in frame.items() if k not in ("data", "usage")}
                elif kind is Frame.STATUS and frame["status"] != last_status:
                    last_status = frame["status"]
                    yield StatusChanged(clip(str(last_status), 60))
        if not items:
            if done:
                raise StreamError(f"the stream finished without any image (request {request_id})")
            raise StreamError(
                "the stream ended before any image arrived (no [DONE]): the server or a proxy "
                f"cut it short (request {request_id})"
            )
        yield await self._completed(items, request, request_id, usage, extra, limits[0])

    async def _completed(
        self,
        items: list[Any],
        request: ImageRequest,
        request_id: str,
        usage: Any,
        extra: dict[str, Any],
        cap: Cap,
    ) -> Completed:
        images: list[GeneratedImage] = []
        undecoded: list[str] = []  # the good images are kept; these are said after
        for index, item in enumerate(items):
            what = f"image {index + 1} of {len(items)}"
            if not isinstance(item, dict):
                raise StreamError(f"{what} is not an object (request {request_id})")
            revised = item.get("revised_prompt")
            try:
                data = await self._image_bytes(item, what, cap)
                images.append(
                    check_image(
                        data,
                        what=what,
                        revised_prompt=redact(revised) if isinstance(revised, str) else None,
                    )
                )
            except ImageDecodeError as exc:
                undecoded.append(str(exc))
            item.clear()  # drop the base64 text as soon as its bytes exist
            await asyncio.sleep(0)  # a cancel (interrupt) takes effect between images
        if undecoded and not images:
            raise ImageDecodeError(f"{undecoded[0]} (request {request_id})")
        if not images:
            raise StreamError(f"the server returned no images (request {request_id})")
        model = extra.get("model")
        return Completed(
            images=images,
            request_id=request_id,
            usage=redact_value(usage, EXTRA_LIMIT) if isinstance(usage, dict) else None,
            model=clip(str(model), 120) if model else request.model,
            extra=redact_value(extra, EXTRA_LIMIT),
            undecoded=tuple(undecoded),
        )

    async def _image_bytes(self, item: dict[str, Any], what: str, cap: Cap) -> bytes:
        if item.get("b64_json"):
            return decode_base64(str(item["b64_json"]), what=what)
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise ImageDecodeError(f"{what} has neither b64_json nor url")
        if url.startswith("data:"):
            return decode_data_url(url, what=what)
        return await self._fetch(url, what, image_cap(cap, self.settings.max_image_bytes))

    async def _fetch(self, url: str, what: str, cap: Cap) -> bytes:
        """Download a remote image without credentials, following at most 3 redirects.

        Without credentials means no Authorization header and no `user:pw@` either: URL
        credentials from the server are dropped (and never shown). Never from an address
        closer to this machine than the API's (`connections.Nearest`)."""
        files = self._files_client()
        deadline = Deadline(total=self.settings.total_timeout)
        for _ in range(4):
            url = strip_userinfo(url.strip())
            try:
                parts = urlsplit(url)
                host = clip(parts.hostname or "?", 100)
            except ValueError:
                raise ImageDecodeError(f"{what}: its URL is not valid") from None
            if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
                scheme = clip(parts.scheme, 20)
                raise ImageDecodeError(f"{what}: refusing to fetch {scheme}:// URL on {host}")
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with deadline.scope():
                        response = await stack.enter_async_context(files.stream("GET", url))
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ImageDecodeError(
                            f"{what}: fetching it from {host} gave HTTP {response.status_code}"
                        )
                    return await read_body(response, cap, deadline, f"{what} on {host}")
            except ResponseTooLargeError as exc:  # a bad image, as a 404 there would be
                raise ImageDecodeError(str(exc)) from None
            except AddressRefused as refused:
                raise ImageDecodeError(
                    f"{what}: not fetched, because {refused} (an image may live no closer to "
                    "this machine than the API)"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ImageDecodeError(
                    f"{what}: could not fetch it from {host} ({describe(exc)})"
                ) from None
        raise ImageDecodeError(f"{what}: too many redirects")

    # -- models ----------------------------------------------------------------------

    async def list_models(self, *, image_only: bool = True) -> list[dict[str, Any]]:
        params = {"type": "image"} if image_only else {}
        cap = Cap(MODELS_CAP, "a model list", setting=None)
        payload = await self.call_json(
            "GET", MODELS_PATH, what="the model list", doing="listing models", cap=cap,
            params=params,
        )  # fmt: skip
        models = payload.get("data", []) if isinstance(payload, dict) else payload
        if not isinstance(models, list):
            raise StreamError("the model list is not a list")
        models = [m for m in models if isinstance(m, dict)]
        if image_only:
            models = [m for m in models if _makes_images(m)]
        return models

    # -- any other call -----------------------------------------------------------------

    async def call_json(
        self, method: str, path: str, *, what: str, doing: str, cap: Cap, **options: Any
    ) -> Any:
        """The JSON answer to one request that is not a generation (`/v1/models`, the
        Batch API): never retried, read within `cap` and `total_timeout`; an error status
        is raised as its `APIError`. `what` names the answer, `doing` the call, in
        messages ("the batch", "creating the batch"); `options` go to httpx."""
        raw, response = await self._call(method, path, what=what, doing=doing, cap=cap, **options)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise StreamError(f"{what} ({_described(response)}) is not JSON") from None

    async def call_lines(
        self, path: str, *, what: str, doing: str, line_cap: Cap, cap: Cap
    ) -> AsyncGenerator[bytes, None]:
        """The lines of a GET's body as they arrive (a JSONL file), without their line
        ends: one line at most `line_cap`, the whole body at most `cap`, the whole read
        within `total_timeout`. A caller may stop early; the response is then closed."""
        api = self._require_open()
        deadline = Deadline(total=self.settings.total_timeout)
        try:
            async with contextlib.AsyncExitStack() as stack:
                response = await self._opened(stack, api, "GET", path, deadline, {})
                chunks = aiter(decoded_chunks(response))
                line, total = bytearray(), 0
                while True:
                    async with deadline.scope():  # never held across the yield below
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        break
                    total += len(chunk)
                    if total > cap.limit:
                        raise cap.error(what)
                    line += chunk
                    *whole, rest = line.split(b"\n")
                    if len(rest) > line_cap.limit:
                        raise line_cap.error(f"a line of {what}")
                    line = bytearray(rest)
                    for each in whole:
                        if each.strip():
                            yield bytes(each)
                if line.strip():
                    yield bytes(line)
        except httpx.HTTPError as exc:
            raise self._failed(exc, doing) from None

    async def _call(
        self, method: str, path: str, *, what: str, doing: str, cap: Cap, **options: Any
    ) -> tuple[bytes, httpx.Response]:
        api = self._require_open()
        deadline = Deadline(total=self.settings.total_timeout)
        try:
            async with contextlib.AsyncExitStack() as stack:
                response = await self._opened(stack, api, method, path, deadline, options)
                return await read_body(response, cap, deadline, what), response
        except httpx.HTTPError as exc:
            raise self._failed(exc, doing) from None

    async def _opened(
        self,
        stack: contextlib.AsyncExitStack,
        api: httpx.AsyncClient,
        method: str,
        path: str,
        deadline: Deadline,
        options: dict[str, Any],
    ) -> httpx.Response:
        """A response with a good status, its body still to read; else its error."""
        async with deadline.scope():
            response = await stack.enter_async_context(api.stream(method, path, **options))
        if 300 <= response.status_code < 400:
            raise _redirected(response, method, path)
        if response.status_code >= 400:
            async with deadline.scope():
                raise await error_from_response(response)
        return response

    def _failed(self, exc: httpx.HTTPError, doing: str) -> TransportError:
        where = display_url(self.base_url)
        tls = ssl_error_in(exc)
        if tls is not None:
            reason = getattr(tls, "verify_message", None) or tls.reason or str(tls)
            return TransportError(f"TLS handshake with {where} failed: {clip(str(reason), 160)}")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return TransportError(f"could not connect to {where} ({describe(exc)})")
        return TransportError(f"{doing} failed ({describe(exc)})")

    def _require_open(self) -> httpx.AsyncClient:
        if self._api is None:
            raise RuntimeError("use MeshClient as `async with MeshClient(...) as client`")
        return self._api

    def _files_client(self) -> httpx.AsyncClient:
        """The client for image URLs on other hosts: it has no Authorization header.

        Made on first use: most responses carry their images inline."""
        self._require_open()
        if self._files is None:
            # An image may live no closer to this machine than the API does.
            nearest = place_of(urlsplit(self.base_url).hostname or "")
            transport, self._file_connections = tracked_transport(self._verify, nearest)
            self._files = httpx.AsyncClient(
                headers={
                    "User-Agent": f"mesh-magics/{__version__}",
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                timeout=self._timeouts(),
                transport=transport,
                verify=self._verify,
            )
        return self._files


# -- helpers -------------------------------------------------------------------------------


def _header_safe_key(key: str) -> str:
    """The key as it can go in a header: surrounding whitespace (a pasted newline) goes;
    anything else that a header cannot carry is a configuration error, not a crash."""
    key = key.strip()
    if not _HEADER_SAFE.fullmatch(key):
        raise ConfigError(
            "the API key has characters an HTTP header cannot carry (spaces, line breaks or "
            "non-ASCII): check MESHAPI_API_KEY"
        )
    return key


def _redirected(response: httpx.Response, method: str, path: str) -> ConfigError:
    """The error for a 3xx from the API: its redirects are not followed (the key would go
    along), so say where it pointed and what in the base URL is likely wrong."""
    location = response.headers.get("location", "").strip()
    status = response.status_code
    if not location:
        return ConfigError(
            f"the API answered {method} {path} with a redirect (HTTP {status}) to nowhere (no "
            "Location): check the base URL"
        )
    target = urljoin(str(response.request.url), location)
    hint = "is the base URL right (https rather than http? a missing path prefix?)"
    if urlsplit(target).path.rstrip("/").endswith(path):
        suggested = clip(display_url(target.split("?")[0].rstrip("/")[: -len(path)]), 200)
        hint = f"if that is the API, use --base-url {suggested}"
    return ConfigError(
        f"the API redirected {method} {path} (HTTP {status}) to {clip(display_url(target), 200)}; "
        f"redirects are not followed, so the key never goes elsewhere: {hint}"
    )


def _described(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "no content type").split(";")[0]
    return f"HTTP {response.status_code}, {clip(content_type, 40)}"


def _makes_images(model: dict[str, Any]) -> bool:
    modalities = model.get("output_modalities")
    return not isinstance(modalities, list) or "image" in modalities


async def _read_to_the_end(events: AsyncIterator[object]) -> None:
    """Read what follows `[DONE]` (normally only the end of the body), so that httpcore
    keeps the connection for the next request; a server that goes on sending, or keeps the
    stream open, has it closed instead after `AFTER_DONE_SECONDS`."""

    async def rest() -> None:
        async for _ in events:
            pass

    with contextlib.suppress(asyncio.TimeoutError, MeshError, httpx.HTTPError):
        await asyncio.wait_for(rest(), AFTER_DONE_SECONDS)


def _may_retry(error: APIError, retry_after_header: bool) -> bool:
    """A 429 was refused before any work; a 503 with Retry-After (even one we cannot read,
    then our backoff decides) says when to come back. Any other answer (a 502 or 504
    above all) may come after the job began, and billed."""
    if error.status == 429:
        return True
    return error.status == 503 and (retry_after_header or error.retry_after is not None)


def _parse_frame(data: str, request_id: str) -> dict[str, Any]:
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):  # `[[[[...` nested too deep is a RecursionError
        raise StreamError(
            f"the server sent a malformed frame: {clip(data)} (request {request_id})"
        ) from None
    if not isinstance(frame, dict):
        raise StreamError(
            f"the server sent a frame that is not an object: {clip(data)} (request {request_id})"
        )
    return frame


def _short_reason(error: MeshError) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status}" + (f" {error.code}" if error.code else "")
    return str(error)


def _finite_or(value: float, default: float) -> float:
    """`value` when it is a usable number of seconds (finite, not negative), else `default`."""
    return (
        value if isinstance(value, int | float) and math.isfinite(value) and value >= 0 else default
    )


async def stream_generation(
    settings: ClientSettings, request: ImageRequest
) -> AsyncGenerator[StreamEvent, None]:
    """The events of one generation, with a client of its own (one per run)."""
    async with MeshClient(settings) as client, aclosing(client.generate(request)) as events:
        async for event in events:
            yield event


class SharedClient:
    """One `MeshClient`, one connection pool, for the runs of a sweep: they go to one API
    on one loop, so a run reuses the keep-alive connection an earlier one left (bench/,
    benchmark 7: a client and a connection per run cost a sweep ~18 %).

    Cancelling a run still closes its connection: its response is closed before its body
    was read to the end, and httpcore closes such a connection rather than keep it. The
    client is made by the first run that streams, and closed once every run has settled
    (`release`, a done callback of each), with every connection it opened."""

    def __init__(self, settings: ClientSettings, runs: int | None) -> None:
        """`runs`: how many runs will use it (it closes after the last); None: a client's
        pool, open until `close()`."""
        self.settings = settings
        self._client: MeshClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one its runs are on
        self._left = runs
        self._lock = threading.Lock()  # runs settle on the engine's thread or a caller's

    async def stream(self, request: ImageRequest) -> AsyncGenerator[StreamEvent, None]:
        """The events of one generation, through the shared client."""
        if self._client is None:  # no await before it is set: one client per loop
            self._loop = asyncio.get_running_loop()
            self._client = await MeshClient(self.settings).__aenter__()
        async with aclosing(self._client.generate(request)) as events:
            async for event in events:
                yield event

    async def list_models(self) -> list[dict[str, Any]]:
        """The image models, over the shared connection (what a run's check reads)."""
        if self._client is None:  # as in stream(): no await before it is set
            self._loop = asyncio.get_running_loop()
            self._client = await MeshClient(self.settings).__aenter__()
        return await self._client.list_models()

    def release(self, _run: object = None) -> None:
        """One run has settled; after the last, close the client on the loop it runs on
        (from any thread; a loop that has closed took its connections along)."""
        if self._left is None:
            return  # a client's pool: open until close()
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._close_on_its_loop()

    def close(self, timeout: float = 5.0) -> None:
        """Close the client and its connections, from any thread but the engine's; waits
        up to `timeout` seconds for it."""
        closing = self._close_on_its_loop()
        if closing is not None:
            with contextlib.suppress(Exception):  # a loop that has gone took them along
                closing.result(timeout)

    def _close_on_its_loop(self) -> concurrent.futures.Future[None] | None:
        loop = self._loop
        if self._client is None or loop is None:
            return None
        closing = self.aclose()
        try:
            return asyncio.run_coroutine_threadsafe(closing, loop)
        except RuntimeError:  # the loop closed meanwhile
            closing.close()
            return None

    async def aclose(self) -> None:
        """Close the client, and every connection it opened."""
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)


async def fetch_models(settings: ClientSettings) -> list[dict[str, Any]]:
    """The image models, with a client of its own; their ids are kept for completion."""
    async with MeshClient(settings) as client:
        models = await client.list_models()
    remember(settings.base_url, models)
    return models


__all__ = [
    "MeshClient",
    "SharedClient",
    "fetch_models",
    "new_request_id",
    "stream_generation",
]
