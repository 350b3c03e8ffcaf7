"""The store's files: private folders, image files named by their SHA-256, written
atomically, and read back only when their bytes still hash to that name.

Modes are set with chmod, not left to the umask: the store holds prompts and images that
may be private, so folders are 0700 and files 0600 whatever the process's umask is. A
folder found open to others is made private again (or refused, if it is someone else's).

Nothing inside the store is reached through a symlink: folders are checked with `lstat`,
files opened with `O_NOFOLLOW`, and every path an index row names must resolve inside the
store (`inside`), so an edited row or a planted link cannot make the store read, write or
delete a file elsewhere.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import StoredImageError, StoreError, StoreWarning, UnsafePathError
from ..redact import one_line

TEMP_PREFIX, TEMP_SUFFIX = ".", ".part"  # write_image's temporary files: `.abc123.part`
FOLDER_MODE = 0o700
FILE_MODE = 0o600
_EXTENSIONS = {"jpeg": "jpg"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none (and no symlinks by default)
# The warnings registry of `warn`: under the "default" filter each text shows once.
_WARNED: dict[str | tuple[str, type[Warning], int], int] = {}


def warn(text: str) -> None:
    """A `StoreWarning` shown as one line. `warnings.warn` would add the source line of
    its caller (a thread of asyncio's, for a run's `put`) under the message."""
    warnings.warn_explicit(
        one_line(f"mesh-magics store: {text}", 1000),
        StoreWarning,
        filename="mesh-magics",  # not a file, so no source line is looked up and printed
        lineno=0,
        module="mesh_magics.store",
        registry=_WARNED,
    )


def make_private_folder(path: Path) -> None:
    """Make `path` (0700) if it is missing; its parents get the usual mode. One that exists
    must be a real folder, not a symlink; if others can read or write it, it is made 0700
    again (with a warning), or refused when it belongs to someone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise StoreError(f"{path} is a symlink; the store does not follow symlinks") from None
        if not stat.S_ISDIR(info.st_mode):
            raise
        if info.st_mode & 0o077 and os.name == "posix":
            _make_private(path, info)
        return
    os.chmod(path, FOLDER_MODE)  # mkdir's mode passes through the umask


def _make_private(path: Path, info: os.stat_result) -> None:
    mode = f"{stat.S_IMODE(info.st_mode):04o}"
    if info.st_uid != os.geteuid():
        raise StoreError(
            f"{path} is open to other users (mode {mode}) and is not yours: set "
            "MeshImageMagics.store_dir to a folder of your own"
        )
    os.chmod(path, FOLDER_MODE)
    warn(f"{path} was open to other users (mode {mode}); made it private (0700)")


def image_path(root: Path, sha256: str, fmt: str) -> Path:
    """`root/ab/abcdef….png`: 256 folders, so none grows to tens of thousands of files.
    `root` is resolved; the path must lie inside it (an `UnsafePathError` if a damaged
    row's hash is no SHA-256, or a symlink leads out)."""
    return inside(root, root / sha256[:2] / image_name(sha256, fmt))


def image_name(sha256: str, fmt: str) -> str:
    """`abcdef….png`, the file name of an image (an `UnsafePathError` for a bad hash)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise UnsafePathError(
            f"the index names an image {one_line(repr(sha256), 80)}, not a SHA-256"
        )
    fmt = fmt if isinstance(fmt, str) else ""
    extension = _EXTENSIONS.get(fmt, re.sub(r"[^a-z0-9]", "", fmt.lower()) or "bin")
    return f"{sha256}.{extension}"


def inside(root: Path, path: Path) -> Path:
    """`path`, if it resolves (symlinks followed) to a place inside the resolved `root`."""
    if not path.resolve().is_relative_to(root):
        raise UnsafePathError(f"{path} leads outside the store {root}")
    return path


def is_image_name(name: str) -> bool:
    """Whether `name` is what `image_path` names a file: `<sha256>.<extension>`."""
    stem, _, extension = name.partition(".")
    return bool(_SHA256.fullmatch(stem) and re.fullmatch(r"[a-z0-9]+", extension))


def has_image(path: Path, size: int) -> bool:
    """Whether `path` is a whole file (not a symlink) of `size` bytes (another process may
    have written the same image: same bytes, same name)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def write_image(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: a temporary file in the same folder,
    fsynced, renamed over `path`, then the folder fsynced so the name survives a crash.
    The rename replaces a symlink at `path`, never writes through it."""
    make_private_folder(path.parent)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
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


def write_images(files: Sequence[tuple[Path, bytes]]) -> None:
    """`write_image` of each (path, data), side by side, each as durable as alone; returns
    once all are on disk, raising the first failure. Concurrent fsyncs share the file
    system's journal commits: four 18 KiB images take ~2 ms where one after the other
    take ~15 ms (ext4, bench/ row 13)."""
    if len(files) <= 1:
        for path, data in files:
            write_image(path, data)
        return
    writes = [_writers().submit(write_image, path, data) for path, data in files]
    concurrent.futures.wait(writes)
    for write in writes:
        write.result()  # the first failure, once every write has ended


@functools.cache
def _writers() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="mesh-store")


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
        handle = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0))
        with os.fdopen(handle, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise StoredImageError(path, "is missing") from None
    except OSError as exc:
        if os.path.islink(path):  # ELOOP: the file was swapped for a link
            raise StoredImageError(path, "is a symlink", damaged=True) from None
        raise StoredImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoredImageError(
            path, "is damaged (its SHA-256 does not match its name)", damaged=True
        )
    return data


def remove(path: Path) -> None:
    """Delete `path` itself (a symlink there is unlinked, its target left alone)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "StoreError",
    "StoreWarning",
    "StoredImageError",
    "UnsafePathError",
    "has_image",
    "image_name",
    "image_path",
    "inside",
    "is_image_name",
    "make_private_folder",
    "read_image",
    "remove",
    "sync_folder",
    "warn",
    "write_image",
    "write_images",
]
