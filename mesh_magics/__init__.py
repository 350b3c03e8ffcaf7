"""mesh-magics: `%%meshimage` generates images through MeshAPI from a notebook cell.

`%load_ext mesh_magics` registers the magics. Heavy modules (httpx, Pillow, ipywidgets)
are imported on first use, not here, so loading the extension stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .errors import APIError, MeshError, OptionError
    from .ipython.magic import MeshImageMagics
    from .results.result import ImageResult

_LAZY = {
    "MeshImageMagics": "ipython.magic",
    "ImageResult": "results.result",
    "MeshError": "errors",
    "APIError": "errors",
    "OptionError": "errors",
}


def load_ipython_extension(ipython: Any) -> None:
    from .ipython.magic import MeshImageMagics

    ipython.register_magics(MeshImageMagics)


def unload_ipython_extension(ipython: Any) -> None:
    from .ipython.magic import unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mesh_magics' has no attribute {name!r}")


__all__ = [
    "APIError",
    "ImageResult",
    "MeshError",
    "MeshImageMagics",
    "OptionError",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]
