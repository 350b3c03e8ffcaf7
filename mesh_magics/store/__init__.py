"""The local store: every finished generation on disk, for `--history` and `--replay`.

    from mesh_magics.store import open_store, request_key
    store = open_store(configured())          # None when MeshImageMagics.store is False
    store.put(result, api_host=settings.base_url, cell=source)
    store.get(request_key(body, settings.base_url))   # ImageResult (replayed) or None
    store.history("fox", limit=20)
    store.find_image(sha256)                  # the newest run that made that image, lazy

store.py (the Store), index.py (SQLite), files.py (image files), images.py (StoredImage,
lazy bytes), keys.py (request_key), location.py (which folder; open_store).
"""

from __future__ import annotations

from .batches import BatchRecord
from .disk import StoredImageError, StoreError
from .images import StoredImage
from .keys import batch_key, host_of, request_key
from .location import open_store, store_dir
from .store import DEFAULT_MAX_BYTES, Store, StoreWarning

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BatchRecord",
    "Store",
    "StoreError",
    "StoreWarning",
    "StoredImage",
    "StoredImageError",
    "batch_key",
    "host_of",
    "open_store",
    "request_key",
    "store_dir",
]
