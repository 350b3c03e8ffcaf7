"""An async client for MeshAPI's `/v1/images/generations` and `/v1/models`.

It knows nothing of notebooks: it turns an `ImageRequest` into a stream of `events`
(status, retries, previews, and finally `Completed` with checked images) or raises one of
`errors`. The policy it follows is the one in docs/protocol.md:

- retry connection failures and 429/502/503/504 that come before any response body,
  with exponential backoff, honouring `Retry-After` (seconds or an HTTP date, capped);
  never retry a 500 (a repeat can start a second, billed job) nor a started stream;
- no total timeout on a live stream (the caller may impose one); the read timeout only
  fires when the server sends nothing at all, not even a keep-alive ping, for that long;
- the key goes to the API's host only: remote image URLs are fetched by a second client
  that has no Authorization header, over https (or http on loopback), size-capped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import ssl
import uuid
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__
from .envelopes import clip, error_from_envelope, error_from_response
from .errors import (
    APIError,
    ImageDecodeError,
    StreamError,
    StreamFailedError,
    TransportError,
)
from .events import Completed, PartialImage, Retrying, StatusChanged, StreamEvent
from .images import GeneratedImage, check_image, decode_base64, decode_data_url
from .request import ImageRequest
from .settings import ClientSettings, is_loopback, normalize_base_url
from .sse import aiter_sse

log = logging.getLogger("mesh_magics")

GENERATIONS_PATH = "/v1/images/generations"
MODELS_PATH = "/v1/models"
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
NO_STREAM_READ_TIMEOUT = 600.0  # a plain request waits for the whole generation


@functools.cache
def _verified_tls() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~30 ms a client."""
    return httpx.create_ssl_context()


def new_request_id() -> str:
    return f"mm_{uuid.uuid4().hex[:24]}"


class _Retryable(Exception):
    """An attempt failed before any response body; safe to send the same request again."""

    def __init__(self, error: APIError | TransportError) -> None:
        self.error = error


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
        self._files: httpx.AsyncClient | None = None
        self._verify = _verified_tls() if settings.verify is True else settings.verify

    def __repr__(self) -> str:
        return f"MeshClient(base_url={self.base_url!r})"

    def _timeouts(self, read: float | None = None) -> httpx.Timeout:
        connect = self.settings.connect_timeout
        read = self.settings.read_timeout if read is None else read
        return httpx.Timeout(connect=connect, read=read, write=60.0, pool=connect)

    async def __aenter__(self) -> MeshClient:
        headers = {"User-Agent": f"mesh-magics/{__version__}"}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.reveal()}"
        self._api = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeouts(),
            transport=self._transport,
            verify=self._verify,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in (self._api, self._files):
            if client is not None:
                await client.aclose()

    # -- generation ------------------------------------------------------------------

    async def generate(self, request: ImageRequest) -> AsyncGenerator[StreamEvent, None]:
        """Events of one generation, ending with `Completed`; retries as the policy says."""
        headers = {"X-Request-Id": new_request_id()}
        if request.stream:
            headers["Accept"] = "text/event-stream"
        attempt = 1
        while True:
            try:
                async with aclosing(self._attempt(request, headers)) as events:
                    async for event in events:
                        yield event
                return
            except _Retryable as failed:
                if attempt > self.settings.max_retries:
                    raise failed.error from None
                delay = self._backoff(attempt, getattr(failed.error, "retry_after", None))
                attempt += 1
                log.debug(
                    "attempt %d failed (%s); retrying in %.1f s", attempt - 1, failed.error, delay
                )
                yield Retrying(attempt, delay, _short_reason(failed.error))
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.max_retry_wait)
        delay = self.settings.backoff_base * 2 ** (attempt - 1)
        return min(delay * random.uniform(0.75, 1.25), self.settings.max_retry_wait)

    async def _attempt(
        self, request: ImageRequest, headers: dict[str, str]
    ) -> AsyncGenerator[StreamEvent, None]:
        api = self._require_open()
        # Without a stream nothing keeps the connection alive while the image is made.
        read_timeout = self.settings.read_timeout
        if not request.stream:
            read_timeout = max(read_timeout, NO_STREAM_READ_TIMEOUT)
        request_id = ""  # set once the response has begun: then nothing may be retried
        try:
            async with api.stream(
                "POST",
                GENERATIONS_PATH,
                json=request.body,
                headers=headers,
                timeout=self._timeouts(read_timeout),
            ) as response:
                request_id = response.headers.get("x-request-id") or headers["X-Request-Id"]
                log.debug("POST %s -> %d (%s)", GENERATIONS_PATH, response.status_code, request_id)
                if response.status_code >= 400:
                    error = await error_from_response(response)
                    if response.status_code in RETRYABLE_STATUSES:
                        raise _Retryable(error)
                    raise error
                content_type = response.headers.get("content-type", "")
                if content_type.startswith("text/event-stream"):
                    async with aclosing(self._read_stream(response, request, request_id)) as events:
                        async for event in events:
                            yield event
                else:
                    yield await self._read_json(response, request, request_id)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _Retryable(
                    TransportError(f"could not connect to {self.base_url} (timed out)")
                ) from None
            stalled = "the stream stalled" if request.stream else "no response yet"
            raise TransportError(
                f"the server sent nothing for {read_timeout:g} s (read timeout): {stalled}"
            ) from None
        except httpx.ConnectError as exc:
            tls = _ssl_error_in(exc)
            if tls is not None:
                reason = getattr(tls, "verify_message", None) or tls.reason or str(tls)
                raise TransportError(
                    f"TLS handshake with {self.base_url} failed: {reason}"
                ) from None
            raise _Retryable(
                TransportError(f"could not connect to {self.base_url} ({_cause(exc)})")
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if not request_id:
                raise _Retryable(
                    TransportError(f"the connection to {self.base_url} failed ({_cause(exc)})")
                ) from None
            raise StreamError(
                f"the connection dropped before the response was complete ({_cause(exc)})"
                + (f" (request {request_id})" if request_id else "")
            ) from None

    async def _read_json(
        self, response: httpx.Response, request: ImageRequest, request_id: str
    ) -> Completed:
        raw = await response.aread()
        try:
            payload = json.loads(raw)
        except ValueError:
            raise StreamError(f"the server's response is not JSON (request {request_id})") from None
        del raw
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise StreamError(f"the server's response has no image list (request {request_id})")
        items = payload.pop("data")
        usage = payload.pop("usage", None)
        return await self._completed(items, request, request_id, usage, payload)

    async def _read_stream(
        self, response: httpx.Response, request: ImageRequest, request_id: str
    ) -> AsyncGenerator[StreamEvent, None]:
        items: list[dict[str, Any]] = []
        usage: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        done = False
        last_status = None
        async with aclosing(aiter_sse(_body_chunks(response))) as events:
            async for sse in events:
                if sse.data == "[DONE]":
                    done = True
                    break
                frame = _parse_frame(sse.data, request_id)
                if frame.get("error"):
                    raise error_from_envelope(frame, None, request_id, StreamFailedError)
                kind = frame.get("type")
                if kind == "image_generation.partial_image":
                    preview = _partial_image(frame)
                    if preview is not None:  # a broken preview is not worth failing for
                        yield preview
                elif kind == "image_generation.completed":
                    items.append(frame)
                    usage = frame.get("usage") or usage
                elif frame.get("data"):
                    items.extend(frame["data"])
                    usage = frame.get("usage") or usage
                    extra = {k: v for k, v in frame.items() if k not in ("data", "usage")}
                elif frame.get("status") and frame["status"] != last_status:
                    last_status = frame["status"]
                    yield StatusChanged(str(last_status))
        if not items:
            if done:
                raise StreamError(f"the stream finished without any image (request {request_id})")
            raise StreamError(
                "the stream ended before any image arrived (no [DONE]): the server or a proxy "
                f"cut it short (request {request_id})"
            )
        yield await self._completed(items, request, request_id, usage, extra)

    async def _completed(
        self,
        items: list[Any],
        request: ImageRequest,
        request_id: str,
        usage: Any,
        extra: dict[str, Any],
    ) -> Completed:
        images: list[GeneratedImage] = []
        for index, item in enumerate(items):
            what = f"image {index + 1} of {len(items)}"
            if not isinstance(item, dict):
                raise StreamError(f"{what} is not an object (request {request_id})")
            revised = item.get("revised_prompt")
            try:
                data = await self._image_bytes(item, what)
                images.append(check_image(data, what=what, revised_prompt=revised))
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{exc} (request {request_id})") from None
            item.clear()  # drop the base64 text as soon as its bytes exist
            await asyncio.sleep(0)  # a cancel (interrupt) takes effect between images
        if not images:
            raise StreamError(f"the server returned no images (request {request_id})")
        return Completed(
            images=images,
            request_id=request_id,
            usage=usage if isinstance(usage, dict) else None,
            model=str(extra.get("model") or request.model),
            extra=extra,
        )

    async def _image_bytes(self, item: dict[str, Any], what: str) -> bytes:
        if item.get("b64_json"):
            return decode_base64(str(item["b64_json"]), what=what)
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise ImageDecodeError(f"{what} has neither b64_json nor url")
        if url.startswith("data:"):
            return decode_data_url(url, what=what)
        return await self._fetch(url, what)

    async def _fetch(self, url: str, what: str) -> bytes:
        """Download a remote image without credentials, following at most 3 redirects."""
        files = self._files_client()
        cap = self.settings.max_image_bytes
        for _ in range(4):
            parts = urlsplit(url)
            host = parts.hostname or "?"
            if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
                raise ImageDecodeError(f"{what}: refusing to fetch {parts.scheme}:// URL on {host}")
            try:
                async with files.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ImageDecodeError(
                            f"{what}: fetching it from {host} gave HTTP {response.status_code}"
                        )
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > cap:
                        raise ImageDecodeError(
                            f"{what} on {host} is {int(declared):,} bytes, over the {cap:,} cap"
                        )
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > cap:
                            raise ImageDecodeError(f"{what} on {host} is over the {cap:,} byte cap")
                    return bytes(body)
            except httpx.HTTPError as exc:
                raise ImageDecodeError(
                    f"{what}: could not fetch it from {host} ({_cause(exc)})"
                ) from None
        raise ImageDecodeError(f"{what}: too many redirects")

    # -- models ----------------------------------------------------------------------

    async def list_models(self, *, image_only: bool = True) -> list[dict[str, Any]]:
        api = self._require_open()
        params = {"type": "image"} if image_only else {}
        try:
            response = await api.get(MODELS_PATH, params=params)
        except httpx.ConnectError as exc:
            raise TransportError(f"could not connect to {self.base_url} ({_cause(exc)})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"listing models failed ({_cause(exc)})") from None
        if response.status_code >= 400:
            raise await error_from_response(response)
        payload = response.json()
        models = payload.get("data", []) if isinstance(payload, dict) else payload
        if not isinstance(models, list):
            raise StreamError("the model list is not a list")
        if image_only:
            models = [m for m in models if "image" in (m.get("output_modalities") or ["image"])]
        return models

    def _require_open(self) -> httpx.AsyncClient:
        if self._api is None:
            raise RuntimeError("use MeshClient as `async with MeshClient(...) as client`")
        return self._api

    def _files_client(self) -> httpx.AsyncClient:
        """The client for image URLs on other hosts: it has no Authorization header.

        Made on first use: most responses carry their images inline."""
        self._require_open()
        if self._files is None:
            self._files = httpx.AsyncClient(
                headers={"User-Agent": f"mesh-magics/{__version__}"},
                timeout=self._timeouts(),
                verify=self._verify,
            )
        return self._files


# -- error mapping -----------------------------------------------------------------------


def _body_chunks(response: httpx.Response) -> AsyncIterable[bytes]:
    """The response body as it arrives.

    `aiter_bytes()` puts three generator layers (decoder, chunker, byte counter) over every
    HTTP chunk: ~14 µs each, 140 ms for a 40 MB frame relayed in 4 KB chunks (bench/). A
    body with no Content-Encoding needs none of them, so read the transport's stream.
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity") and isinstance(response.stream, httpx.AsyncByteStream):
        return response.stream
    return response.aiter_bytes()


def _partial_image(frame: dict[str, Any]) -> PartialImage | None:
    index = frame.get("partial_image_index", 0)
    try:
        data = decode_base64(str(frame.get("b64_json", "")), what="a preview")
    except ImageDecodeError:
        return None
    return PartialImage(index if isinstance(index, int) else 0, data)


def _parse_frame(data: str, request_id: str) -> dict[str, Any]:
    try:
        frame = json.loads(data)
    except ValueError:
        raise StreamError(
            f"the server sent a malformed frame: {clip(data)} (request {request_id})"
        ) from None
    if not isinstance(frame, dict):
        raise StreamError(f"the server sent a frame that is not an object: {clip(data)}")
    return frame


def _short_reason(error: APIError | TransportError) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status}" + (f" {error.code}" if error.code else "")
    return str(error)


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return clip(text, 160)


def _ssl_error_in(exc: BaseException | None) -> ssl.SSLError | None:
    """The `ssl.SSLError` behind an httpx error, if a TLS failure is what it is."""
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


async def stream_generation(
    settings: ClientSettings, request: ImageRequest
) -> AsyncGenerator[StreamEvent, None]:
    """The events of one generation with a client of its own (one per job and loop)."""
    async with MeshClient(settings) as client, aclosing(client.generate(request)) as events:
        async for event in events:
            yield event


async def fetch_models(settings: ClientSettings) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The image models, as the single event of a job."""
    async with MeshClient(settings) as client:
        yield await client.list_models()
