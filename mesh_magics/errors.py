"""Every error mesh-magics raises, in one hierarchy rooted at `MeshError`:

    MeshError
    ├── OptionError (a ValueError)      a bad option, value, field, name or prompt
    │   └── SettingError (a TraitError)  %config MeshImageMagics.<name> refused
    ├── ConfigError                     no key, a bad base URL, plain http, a redirect
    ├── GenerationCancelled             an interrupt in a cell, or Cancel; .partial
    ├── GenerationTimeout               --timeout or total_timeout passed
    ├── TransportError                  refused, TLS, timeouts, idle_timeout, cut off
    ├── StreamError                     a stream dropped, cut short or malformed
    │   └── ResponseTooLargeError       past its cap, or a MemoryError
    ├── ImageDecodeError                not an image, truncated, a bomb, a failed fetch
    ├── SaveError (an OSError)          save() or --save could not write
    ├── StillRunning                    a run's images asked for before it finished
    ├── WaitInterrupted                 an interrupt stopped %mesh wait
    ├── BlockingOnTheEngine             a done-callback waited for another run
    ├── MissingDependency (ImportError) an optional package is not installed
    ├── StoreError                      the store cannot be read
    │   ├── UnsafePathError             a row names a file outside the store
    │   └── StoredImageError            a stored image has gone or changed
    ├── SweepError                      some runs of a sweep failed; .sweep
    ├── BatchError                      a batch refused, failed, expired or cancelled
    ├── IncompleteResultError           fewer good images than asked; .result
    └── APIError                        the API said no: .status .code .request_id
        ├── BadRequestError 400, AuthenticationError 401, PaymentRequiredError 402,
        │   PermissionDeniedError 403, NotFoundError 404, RequestTooLargeError 413,
        │   UnprocessableRequestError 422, RateLimitError 429, InternalServerError 5xx,
        │   ServiceUnavailableError 502/503/504
        └── StreamFailedError           an error frame inside a started stream
    RunInterrupted (a KeyboardInterrupt) Ctrl-C in Python; .partial: what had finished
    StoreWarning (a UserWarning)         the store could not keep a generation

User-facing errors render as one short line in IPython (via `_render_traceback_`, the
hook IPython and ipykernel call instead of printing a traceback), and they still fail the
cell, so "Run All" stops. Bugs are not `MeshError`s and keep their full traceback.
No error message ever contains the API key: none of these classes is given it, and
`str`/`repr` mask it (and URL credentials) should a server echo them (`redact.py`).

The line starts with the class name, the name to catch (`except OptionError:`). This
module does not import IPython: scripts use these errors too. The name is red only when a
running IPython's colour scheme has colours (`--colors=NoColor` gets plain text).
"""

from __future__ import annotations

import functools
import sys
import warnings
from typing import TYPE_CHECKING, Any

from .redact import redact


class MeshError(Exception):
    """Base class of every error raised by mesh-magics on purpose."""

    def __init__(self, *args: Any) -> None:
        # Masked as made, so not even `.args` keeps a secret some text brought along.
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))

    def __str__(self) -> str:
        return redact(super().__str__())  # the last guard: a server may echo a secret

    def __repr__(self) -> str:
        return redact(super().__repr__())

    def _render_traceback_(self) -> list[str]:
        # The class name, so the error is caught by the name the cell shows.
        return [f"{_coloured(type(self).__name__)}: {self}"]


def _coloured(label: str) -> str:
    """`label` in red, unless IPython is not running or its colour scheme is NoColor."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or str(getattr(shell, "colors", "nocolor")).lower() == "nocolor":
        return label
    return f"\x1b[0;31m{label}\x1b[0m"


class OptionError(MeshError, ValueError):
    """A bad option, value or setting; found before any request. Also a `ValueError`, so
    code calling the function API can catch it as one."""


class ConfigError(MeshError):
    """Missing key, unusable base URL or a bad configuration value."""


class GenerationCancelled(MeshError):
    """The user interrupted the kernel or pressed Cancel. What had finished (a sweep's
    finished runs) is kept: bound, shown, and on the error as `.partial` (or None)."""

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class GenerationTimeout(MeshError):
    """The whole generation took longer than `--timeout`."""


class TransportError(MeshError):
    """The HTTP exchange failed below the API: connection refused, TLS, reads timing out."""


class StreamError(MeshError):
    """The server's stream broke the protocol: cut short, dropped, or malformed."""


class ResponseTooLargeError(StreamError):
    """A response passed its size cap (derived from the request: n, size, previews), or
    did not fit in memory; the message says which cap and how to raise it."""


class ImageDecodeError(MeshError):
    """An image in the response could not be fetched or is not a usable image."""


class SaveError(MeshError, OSError):
    """`ImageResult.save()` could not write a file; the message names the path and what to
    do. An `OSError` too, so `except OSError` around a save keeps working."""


class StillRunning(MeshError):
    """The images of a run (or a sweep's `save()`, `retry()`) were asked for before it
    finished."""


class WaitInterrupted(MeshError):
    """An interrupt stopped a wait for background runs (`%mesh wait`); the runs go on."""


class BlockingOnTheEngine(MeshError):
    """A run's done-callback tried to wait for another run, on the engine's own thread."""


class MissingDependency(MeshError, ImportError):
    """An optional package a method needs is not installed."""


class StoreError(MeshError):
    """The store cannot be read."""


class UnsafePathError(StoreError):
    """An index row names a file that is not the store's: no SHA-256, or a path that
    leads outside the store (`..`, a symlink)."""


class StoredImageError(StoreError):
    """A stored image file is missing, or its bytes no longer hash to its name."""

    def __init__(self, path: Any, problem: str, *, damaged: bool = False) -> None:
        super().__init__(f"stored image {path} {problem}")
        self.path = path
        self.damaged = damaged  # there, but not the bytes that were stored


class SweepError(MeshError):
    """Some runs of a sweep failed. The sweep (with every image that did come) is
    `.sweep`; `.sweep.retry()` runs only the failed runs again. Its message says how many
    failed and why (`results.image_sweep.sweep_error` writes it)."""

    def __init__(self, message: str, sweep: Any, hint: str | None = None) -> None:
        super().__init__(message)
        self.sweep = sweep
        self.hint = hint


class BatchError(MeshError):
    """A batch (`--batch`, `mm.batch`) that gives no images: the server does not take image
    batches, or the batch failed, expired or was cancelled before any run finished. Runs
    of a batch that fail one by one are a sweep's failed runs, not this."""


class IncompleteResultError(MeshError):
    """Fewer good images came back than were asked for (some missing, or not decodable).
    The images that did come are kept: stored, bound and shown as any result, and on the
    error as `.result`."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class APIError(MeshError):
    """MeshAPI answered with an error (a status >= 400, or an `error` frame in a stream)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.details = details or []

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part)
        text = (
            f"{head}: {self.message}"
            if head and not self.message.startswith(head)
            else self.message
        )
        for detail in self.details[:5]:
            text += f"\n  - {_describe_detail(detail)}"
        if self.request_id:
            text += f" (request {self.request_id})"
        return redact(text)


class BadRequestError(APIError):
    """400: the API refused the request as malformed."""


class AuthenticationError(APIError):
    """401: the key is missing, wrong or revoked."""


class PaymentRequiredError(APIError):
    """402: the account's spend limit or balance stops the request."""


class PermissionDeniedError(APIError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(APIError):
    """404: no such model or endpoint."""


class RequestTooLargeError(APIError):
    """413: the request body is too large for the server."""


class UnprocessableRequestError(APIError):
    """422: a field failed the API's validation; `.details` says which."""


class RateLimitError(APIError):
    """429: too many requests; `.retry_after` says when to try again."""


class InternalServerError(APIError):
    """500 (and any other 5xx not below): the server failed."""


class ServiceUnavailableError(APIError):
    """502, 503, 504: the service or a gateway is unavailable."""


class StreamFailedError(APIError):
    """The server reported an error inside an already started stream."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: UnprocessableRequestError,
    429: RateLimitError,
    500: InternalServerError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def api_error_class(status: int) -> type[APIError]:
    """The exception class for an HTTP status, falling back on the nearest family."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return InternalServerError if status >= 500 else BadRequestError


def _describe_detail(detail: Any) -> str:
    if isinstance(detail, dict):
        loc = detail.get("loc")
        where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
        msg = detail.get("msg") or detail.get("message") or detail
        return f"{where}: {msg}" if where else str(msg)
    return str(detail)


class RunInterrupted(KeyboardInterrupt):
    """A `KeyboardInterrupt` (Ctrl-C, a kernel interrupt) that stopped a blocking run or
    sweep from Python. It stays a `KeyboardInterrupt`, so scripts stop as they expect;
    what had finished and was billed rides on it as `.partial` (an `ImageSweep` of the
    finished and cancelled runs, or None), and is already in the store."""

    def __init__(self, message: str, partial: Any = None) -> None:
        super().__init__(redact(message))
        self.partial = partial


class StoreWarning(UserWarning):
    """The store could not keep or give back a generation; the run itself went on."""


if TYPE_CHECKING:

    class SettingError(OptionError):
        """A `MeshImageMagics` setting was given a value its option would refuse."""

else:

    def __getattr__(name: str) -> Any:
        if name == "SettingError":
            return _setting_error()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _setting_error() -> type[OptionError]:
    """`SettingError`: a `MeshImageMagics` setting was given a value its option would
    refuse; the old value is kept (`%config`, a profile). Also a traitlets `TraitError`,
    which is what makes traitlets put the old value back; made on first use, so that only
    the magic, which has traitlets, pays for importing it."""
    from traitlets import TraitError

    return type(
        "SettingError",
        (OptionError, TraitError),
        {"__doc__": _setting_error.__doc__, "__module__": __name__},
    )


def warn_caller(message: str) -> None:
    """A `UserWarning` that points at the user's line: the first frame outside this
    package (a fixed stacklevel breaks whenever the road to the warning changes)."""
    frame, level = sys._getframe(1), 2  # 1 is this function, 2 its caller
    package = __name__.rpartition(".")[0]
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package + "."):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(message, UserWarning, stacklevel=level)


class TooDeep(ValueError):
    """JSON nested deeper than `value_kinds.MAX_JSON_DEPTH` (turned into an `OptionError`)."""
