"""The store's files: private folders, image files named by their SHA-256, written
atomically, and read back only when their bytes still hash to that name.

Modes are set with chmod, not left to the umask: the store holds prompts and images that
may be private, so folders are 0700 and files 0600 whatever the process's umask is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import MeshError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_EXTENSIONS = {"jpeg": "jpg"}


class StoreError(MeshError):
    """The store cannot be read."""


class StoredImageError(StoreError):
    """A stored image file is missing, or its bytes no longer hash to its name."""

    def __init__(self, path: Path, problem: str, *, damaged: bool = False) -> None:
        super().__init__(f"stored image {path} {problem}")
        self.path = path
        self.damaged = damaged  # there, but not the bytes that were stored


def make_private_folder(path: Path) -> None:
    """Make `path` (0700) if it is missing; its parents get the usual mode. A folder that
    already exists is left as its owner set it (it may be one they chose to share)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, FOLDER_MODE)  # mkdir's mode passes through the umask


def image_path(root: Path, sha256: str, fmt: str) -> Path:
    """`root/ab/abcdef….png`: 256 folders, so none grows to tens of thousands of files."""
    extension = _EXTENSIONS.get(fmt, re.sub(r"[^a-z0-9]", "", fmt.lower()) or "bin")
    return root / sha256[:2] / f"{sha256}.{extension}"


def has_image(path: Path, size: int) -> bool:
    """Whether `path` holds a whole file of `size` bytes (another process may have written
    the same image: same bytes, same name)."""
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def write_image(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: a temporary file in the same folder,
    fsynced, renamed over `path`, then the folder fsynced so the name survives a crash."""
    make_private_folder(path.parent)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            os.chmod(name, FILE_MODE)  # mkstemp makes 0600 already; say so, whatever it does
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    sync_folder(path.parent)


def sync_folder(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder to fsync it; NTFS logs renames
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def read_image(path: Path, sha256: str) -> bytes:
    """The bytes of `path`, checked against the SHA-256 that named it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoredImageError(path, "is missing") from None
    except OSError as exc:
        raise StoredImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoredImageError(
            path, "is damaged (its SHA-256 does not match its name)", damaged=True
        )
    return data


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "StoreError",
    "StoredImageError",
    "has_image",
    "image_path",
    "make_private_folder",
    "read_image",
    "remove",
    "sync_folder",
    "write_image",
]
