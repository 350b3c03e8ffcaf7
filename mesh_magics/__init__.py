"""mesh-magics: generate images through MeshAPI from a notebook cell or from Python.

    %load_ext mesh_magics                     # the %meshimage / %%meshimage magics
    import mesh_magics as mm
    r = mm.generate("A fox", size="1024x1024")
    night = mm.edit(r, "The same fox at night")

Names are imported on first use, not here: `%load_ext mesh_magics` and `import
mesh_magics` stay fast, and a script that never touches the magics never imports IPython.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import agenerate, edit, generate
    from .errors import (
        APIError,
        ConfigError,
        GenerationCancelled,
        GenerationTimeout,
        MeshError,
        OptionError,
        RunInterrupted,
        StillRunning,
    )
    from .forms.widget import form
    from .ipython.magic import MeshImageMagics
    from .research import history, sweep
    from .results.metadata import read_metadata
    from .results.result import ImageResult
    from .results.sweep import ImageSweep, SweepError
    from .run.generation import Generation

_LAZY = {
    "generate": "api",
    "agenerate": "api",
    "edit": "api",
    "sweep": "research",
    "history": "research",
    "form": "forms.widget",
    "ImageSweep": "results.sweep",
    "SweepError": "results.sweep",
    "Generation": "run.generation",
    "StillRunning": "errors",
    "RunInterrupted": "errors",
    "ImageResult": "results.result",
    "read_metadata": "results.metadata",
    "MeshImageMagics": "ipython.magic",
    "MeshError": "errors",
    "APIError": "errors",
    "ConfigError": "errors",
    "OptionError": "errors",
    "GenerationCancelled": "errors",
    "GenerationTimeout": "errors",
}


def load_ipython_extension(ipython: Any) -> None:
    from .ipython.magic import MeshImageMagics

    ipython.register_magics(MeshImageMagics)


def unload_ipython_extension(ipython: Any) -> None:
    from .ipython.magic import unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mesh_magics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "APIError",
    "ConfigError",
    "Generation",
    "GenerationCancelled",
    "GenerationTimeout",
    "ImageResult",
    "ImageSweep",
    "MeshError",
    "MeshImageMagics",
    "OptionError",
    "RunInterrupted",
    "StillRunning",
    "SweepError",
    "__version__",
    "agenerate",
    "edit",
    "form",
    "generate",
    "history",
    "load_ipython_extension",
    "read_metadata",
    "sweep",
    "unload_ipython_extension",
]
