"""mesh-magics: generate images through MeshAPI from a notebook cell or from Python.

    %load_ext mesh_magics                     # the %meshimage / %%meshimage magics
    import mesh_magics as mm
    r = mm.generate("A fox", size="1024x1024")
    fox = mm.cell("--size 1024x1024\nA fox")  # a %%meshimage cell, without magics (marimo)
    night = mm.edit(r, "The same fox at night")

Names are imported on first use, not here: `%load_ext mesh_magics` and `import
mesh_magics` stay fast, and a script that never touches the magics never imports IPython.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .client.batches import ImageBatch, batches
    from .client.cells import cell
    from .client.clients import AsyncClient, Client, Handle
    from .client.fields import ImageFields
    from .client.functions import (
        aedit,
        agenerate,
        asweep,
        batch,
        edit,
        generate,
        start,
        sweep,
    )
    from .client.history import history
    from .client.provenance import fields_of
    from .engine.generation import Generation
    from .errors import (
        APIError,
        AuthenticationError,
        BadRequestError,
        BatchError,
        BlockingOnTheEngine,
        ConfigError,
        GenerationCancelled,
        GenerationTimeout,
        ImageDecodeError,
        IncompleteResultError,
        InternalServerError,
        MeshError,
        MissingDependency,
        NotFoundError,
        OptionError,
        PaymentRequiredError,
        PermissionDeniedError,
        RateLimitError,
        RequestTooLargeError,
        ResponseTooLargeError,
        RunInterrupted,
        SaveError,
        ServiceUnavailableError,
        SettingError,
        StillRunning,
        StoredImageError,
        StoreError,
        StoreWarning,
        StreamError,
        StreamFailedError,
        SweepError,
        TransportError,
        UnprocessableRequestError,
        UnsafePathError,
        WaitInterrupted,
    )
    from .forms.widget import form
    from .ipython.magic import MeshImageMagics
    from .results.image_sweep import ImageSweep
    from .results.metadata import read_metadata
    from .results.result import ImageResult

_LAZY = {
    "generate": "client.functions",
    "agenerate": "client.functions",
    "edit": "client.functions",
    "aedit": "client.functions",
    "sweep": "client.functions",
    "asweep": "client.functions",
    "start": "client.functions",
    "batch": "client.functions",
    "ImageBatch": "client.batches",
    "batches": "client.batches",
    "Client": "client.clients",
    "AsyncClient": "client.clients",
    "Handle": "client.clients",
    "ImageFields": "client.fields",
    "history": "client.history",
    "fields_of": "client.provenance",
    "form": "forms.widget",
    "ImageSweep": "results.image_sweep",
    "Generation": "engine.generation",
    "ImageResult": "results.result",
    "read_metadata": "results.metadata",
    "MeshImageMagics": "ipython.magic",
    "MeshError": "errors",
    "OptionError": "errors",
    "SettingError": "errors",
    "ConfigError": "errors",
    "GenerationCancelled": "errors",
    "GenerationTimeout": "errors",
    "TransportError": "errors",
    "StreamError": "errors",
    "ResponseTooLargeError": "errors",
    "ImageDecodeError": "errors",
    "SaveError": "errors",
    "StillRunning": "errors",
    "WaitInterrupted": "errors",
    "BlockingOnTheEngine": "errors",
    "MissingDependency": "errors",
    "StoreError": "errors",
    "UnsafePathError": "errors",
    "StoredImageError": "errors",
    "SweepError": "errors",
    "BatchError": "errors",
    "IncompleteResultError": "errors",
    "APIError": "errors",
    "BadRequestError": "errors",
    "AuthenticationError": "errors",
    "PaymentRequiredError": "errors",
    "PermissionDeniedError": "errors",
    "NotFoundError": "errors",
    "RequestTooLargeError": "errors",
    "UnprocessableRequestError": "errors",
    "RateLimitError": "errors",
    "InternalServerError": "errors",
    "ServiceUnavailableError": "errors",
    "StreamFailedError": "errors",
    "RunInterrupted": "errors",
    "StoreWarning": "errors",
}


def load_ipython_extension(ipython: Any) -> None:
    from .ipython import completion
    from .ipython.magic import MeshImageMagics

    ipython.register_magics(MeshImageMagics)
    completion.register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .ipython import completion
    from .ipython.magic import unload

    unload(ipython)
    completion.unregister(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension `mesh_magics` lives in `serverext.py` (its pre-save
    hook lets a reopened notebook show images); nothing is imported here."""
    return [{"module": "mesh_magics.serverext"}]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mesh_magics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "cell"])


class _Package(types.ModuleType):
    """`mm.cell` is the function (`client/cells.py`), though `mesh_magics.cell` is also the
    module of the grammar: importing a submodule binds it as an attribute of its package,
    which would hide the function. A property on the package's class wins over that."""

    @property
    def cell(self) -> Any:
        from .client.cells import cell

        return cell

    @cell.setter
    def cell(self, module: Any) -> None:
        pass  # the import system binding the submodule; `sys.modules` still holds it


sys.modules[__name__].__class__ = _Package


__all__ = [
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BlockingOnTheEngine",
    "Client",
    "ConfigError",
    "Generation",
    "GenerationCancelled",
    "GenerationTimeout",
    "Handle",
    "ImageBatch",
    "ImageDecodeError",
    "ImageFields",
    "ImageResult",
    "ImageSweep",
    "IncompleteResultError",
    "InternalServerError",
    "MeshError",
    "MeshImageMagics",
    "MissingDependency",
    "NotFoundError",
    "OptionError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "RunInterrupted",
    "SaveError",
    "ServiceUnavailableError",
    "SettingError",
    "StillRunning",
    "StoreError",
    "StoreWarning",
    "StoredImageError",
    "StreamError",
    "StreamFailedError",
    "SweepError",
    "TransportError",
    "UnprocessableRequestError",
    "UnsafePathError",
    "WaitInterrupted",
    "__version__",
    "aedit",
    "agenerate",
    "asweep",
    "batch",
    "batches",
    "cell",
    "edit",
    "fields_of",
    "form",
    "generate",
    "history",
    "load_ipython_extension",
    "read_metadata",
    "start",
    "sweep",
    "unload_ipython_extension",
]
