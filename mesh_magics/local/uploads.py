"""The files of the Batch API (``/v1/files``): the JSONL inputs clients upload, and the
output and error files that batches write.

Their ids are ``file-`` and 24 letters and digits, never a dot, so they cannot be taken
for the published images of ``/files/NAME.FORMAT`` (``published.py``), which share the
path. Bounded: at most ``keep_files`` files and ``keep_bytes`` bytes in all, the oldest
dropped first, except a file that an unfinished batch still has to read (pinned). The
shelf has no lock of its own: ``batches.py`` uses it under its lock.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KEEP_FILES = 200
KEEP_FILE_BYTES = 256 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024  # one file; an upload is within max_body_bytes too
_ID_CHARS = string.ascii_letters + string.digits


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(_ID_CHARS) for _ in range(24))


def is_file_id(name: str) -> bool:
    """NAME could be a file's id (a published image's name has a dot: ``TOKEN.png``)."""
    return name.startswith("file-") and "." not in name


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str  # "batch" (an input), "batch_output" (what a batch wrote)
    data: bytes
    created_at: int
    requests: int = 0  # lines of a batch input

    def as_object(self) -> dict[str, Any]:
        """The OpenAI ``FileObject``."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class NoRoom(Exception):
    """A new file does not fit beside the pinned ones."""


class FileShelf:
    """Files by id, oldest first."""

    def __init__(self, keep_files: int = KEEP_FILES, keep_bytes: int = KEEP_FILE_BYTES) -> None:
        self.keep_files = keep_files
        self.keep_bytes = keep_bytes
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._files)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def files(self) -> list[StoredFile]:
        return list(self._files.values())

    def put(
        self,
        purpose: str,
        filename: str,
        data: bytes,
        pinned: Iterable[str],
        *,
        force: bool,
        requests: int = 0,
    ) -> StoredFile:
        """Keep a new file, dropping the oldest unpinned ones to make room.

        Raises NoRoom, having dropped nothing, if even then it would not fit. With FORCE
        (what a batch wrote: its status already names it) it is kept all the same, and
        the next file put drops it first if need be.
        """
        stored = StoredFile(new_file_id(), filename, purpose, data, int(time.time()), requests)
        keep = set(pinned)
        victims: list[str] = []
        count, size = len(self._files) + 1, self._bytes + len(data)
        for file_id, old in self._files.items():
            if count <= self.keep_files and size <= self.keep_bytes:
                break
            if file_id not in keep:
                victims.append(file_id)
                count, size = count - 1, size - len(old.data)
        if (count > self.keep_files or size > self.keep_bytes) and not force:
            raise NoRoom
        for file_id in victims:
            self._bytes -= len(self._files.pop(file_id).data)
        self._files[stored.id] = stored
        self._bytes += len(data)
        return stored
