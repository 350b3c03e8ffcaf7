"""Which store a run uses: one `Store` per folder per process, opened on first use.

The folder is `store_dir` if set, else `$MESH_MAGICS_STORE`, else
`$XDG_CACHE_HOME/mesh-magics`, else `~/.cache/mesh-magics`. The store is on by default,
so a folder that cannot be opened (a read-only home) is a `StoreWarning` and no store,
never a failed generation.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..settings import store_dir
from .disk import StoreError, warn
from .store import DEFAULT_MAX_BYTES, Store

_stores: dict[Path, Store] = {}
_lock = threading.Lock()


def open_store(config: Mapping[str, Any]) -> Store | None:
    """The store `config` asks for, or None when `store` is off (or the folder cannot be
    opened: then with a `StoreWarning`). `store_max_bytes` is its size cap."""
    if not config.get("store", True):
        return None
    directory = store_dir(config)
    max_bytes = config.get("store_max_bytes") or DEFAULT_MAX_BYTES
    where = directory.resolve()  # `~/x`, `./x` and a symlink to it are one folder
    with _lock:
        store = _stores.get(where)
        if store is None:
            try:
                store = _stores[where] = Store(directory, max_bytes=max_bytes)
            except (OSError, sqlite3.Error, StoreError) as exc:
                warn(
                    f"cannot open {directory} ({exc}); generations are not stored. Set "
                    "MeshImageMagics.store_dir to a folder you can write to, or "
                    "MeshImageMagics.store = False"
                )
                return None
        store.max_bytes = max_bytes  # %config may have changed it since
    return store


__all__ = ["open_store", "store_dir"]
