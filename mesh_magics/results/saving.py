"""Writing a result's images to disk: where, under which names, and never half or over.

`save(path)` reads `path` as a FILE name when it ends in an image suffix (`.png`, `.jpg`,
`.jpeg`, `.webp`, `.gif`): one image goes there, several go to `fox-1.png`, `fox-2.png`...
in that format (convert.py). A path ending in another image format's suffix (`.bmp`,
`.tiff`: anything Pillow knows) is refused, naming the suffixes that are written, unless
it is a folder already: it would not hold the provenance. Any other path is a FOLDER,
made if missing, and the names come from the prompt (names.py).

Symlinks are not followed: a folder to save into that is a symlink, or a manifest that
is one, is refused before anything is written (an append would land wherever it points,
`~/.ssh/authorized_keys` say), and the manifest is opened with `O_NOFOLLOW`. Image files
are given their names by link or rename, which replace a symlink rather than write
through it.

Nothing is overwritten unless `overwrite=True`: in a folder a taken name gets a `-v2`,
`-v3`... name instead; a file name that is taken is an error, so the path you asked for
never silently holds an older image. Each file is written to a temporary file in the
same folder, fsynced, then hard-linked to its name, which fails rather than replace a
file that appeared since the name was checked (on file systems without hard links it is
checked and renamed). Every failure is a one-line `SaveError` naming the path and what
to do, never a raw `OSError` traceback.

Each file carries its provenance (metadata.py), and gets one line in `manifest.jsonl` in
its folder once it is in place: `{"file": name, "sha256": of the bytes written,
"metadata": what read_metadata returns}` (whose own `sha256` is the image's as it was made,
before metadata, and whose `inputs` are an edit's input images). Lines are appended with
O_APPEND, each in one write, then fsynced, so two processes saving into one folder
interleave whole lines; a file saved again with `overwrite=True` gets a new line (the last
line of a name is its current one).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import SaveError
from ..images import GeneratedImage
from ..redact import one_line
from .convert import convert
from .metadata import dumps, flatten, needs_sidecar, provenance, sidecar, with_metadata
from .names import safe_stem

if TYPE_CHECKING:
    from .result import ImageResult

Fields = Mapping[str, str | None]  # one image's provenance, as metadata.provenance makes it
MANIFEST = "manifest.jsonl"

FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif"}
EXTENSION = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif"}
_SUFFIXES = ", ".join(sorted(FORMAT_OF_SUFFIX))
# Image suffixes Pillow does not know, but a user may still hope for.
_OTHER_IMAGE_SUFFIXES = {".svg", ".heic", ".heif", ".jxl", ".raw", ".exr", ".hdr"}
# What os.link raises where the file system has no hard links (FAT, some shares, FUSE).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # Windows has none (and no symlinks by default)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_REASONS = {
    errno.EROFS: "the file system is read-only. Choose another folder",
    errno.ENAMETOOLONG: "the name is too long. Pass a shorter one",
    errno.ENOSPC: "no space left on the device. Free some space or choose another disk",
}


def save_result(
    result: ImageResult,
    path: str | os.PathLike[str],
    *,
    stem: str | None = None,
    overwrite: bool = False,
    embed_prompt: bool | None = None,
) -> list[Path]:
    """`ImageResult.save`: each image with its provenance; without the prompt (in the
    metadata, the manifest and the names) when `embed_prompt` is false, which defaults to
    the `MeshImageMagics.embed_prompt` setting."""
    if embed_prompt is None:
        from ..settings import configured

        embed_prompt = bool(configured()["embed_prompt"])
    epoch = getattr(result, "created", None)
    created = datetime.fromtimestamp(time.time() if epoch is None else epoch, timezone.utc)
    images = result._images
    metadata = [
        provenance(
            result.request,
            model=result.model,
            revised_prompt=image.revised_prompt,
            request_id=result.request_id,
            created=created,
            embed_prompt=embed_prompt,
            sha256=_sha256_of(image),
            inputs=getattr(result, "inputs", None) or None,
        )
        for image in images
    ]
    prompt = result.prompt if embed_prompt else ""  # no prompt: `image.png`, `image-1.png`
    return save_images(
        images, path, prompt=prompt, stem=stem, metadata=metadata, overwrite=overwrite
    )


def _sha256_of(image: GeneratedImage) -> str:
    """The hex SHA-256 of the image's bytes as made; a stored one knows it without reading."""
    known = getattr(image, "sha256", None)
    return known if isinstance(known, str) else hashlib.sha256(image.data).hexdigest()


def save_images(
    images: Sequence[GeneratedImage],
    path: str | os.PathLike[str],
    *,
    prompt: str,
    stem: str | None,
    metadata: Sequence[Fields],
    overwrite: bool,
) -> list[Path]:
    """Write `images` (with `metadata[i]` inside image i) to `path`; return their paths."""
    target = Path(path).expanduser()
    folder_meant = str(path).endswith(("/", os.sep))  # `out/fox.png/`: Path drops the slash
    fmt = None if folder_meant else FORMAT_OF_SUFFIX.get(target.suffix.lower())
    with _reported(target):  # the steps below name their own paths; this catches the rest
        if fmt is None and not folder_meant and not target.is_dir():
            _refuse_other_format(target)
        if fmt is None:
            folder_stem = safe_stem(stem if stem is not None else prompt)
            return _save_in_folder(images, target, folder_stem, metadata, overwrite)
        if stem is not None:
            raise SaveError(
                f"{target} is a file name, and stem= names files in a folder: pass one or the other"
            )
        return _save_as_files(images, target, fmt, metadata, overwrite)


def _refuse_other_format(target: Path) -> None:
    """A `SaveError` if `target` names an image format that is not written (`x.bmp`)."""
    suffix = target.suffix.lower()
    if suffix in Image.registered_extensions() or suffix in _OTHER_IMAGE_SUFFIXES:
        raise SaveError(
            f"cannot save as {target.name}: {suffix} files are not written. End the name in "
            f"{_SUFFIXES}, or in / to save into a folder of that name"
        )


def _save_in_folder(
    images: Sequence[GeneratedImage],
    folder: Path,
    stem: str,
    metadata: Sequence[Fields],
    overwrite: bool,
) -> list[Path]:
    _make_folder(folder)
    paths = []
    for index, (image, meta) in enumerate(zip(images, metadata, strict=True)):
        name = f"{stem}-{index + 1}" if len(images) > 1 else stem
        paths.append(_write_free(folder, name, image, meta, overwrite))
    return paths


def _save_as_files(
    images: Sequence[GeneratedImage],
    target: Path,
    fmt: str,
    metadata: Sequence[Fields],
    overwrite: bool,
) -> list[Path]:
    folder = target.parent
    if target.is_dir():
        raise SaveError(
            f"{target} is a folder: pass another file name, or {str(target) + os.sep!r} to "
            "save into the folder"
        )
    if len(images) == 1:
        paths = [target]
    else:
        paths = [folder / f"{target.stem}-{i}{target.suffix}" for i in range(1, len(images) + 1)]
    taken = [path for path in paths if os.path.lexists(path)]
    if taken and not overwrite:  # checked before writing any, so nothing is half saved
        raise SaveError(_exists(taken[0]))
    _make_folder(folder)
    for image, meta, path in zip(images, metadata, paths, strict=True):
        converted = convert(image, fmt)
        data = with_metadata(converted, meta)
        with _reported(path):
            _write(folder, data, path, overwrite)
            if needs_sidecar(fmt):
                _write(folder, sidecar(meta), _sidecar_of(path), overwrite=True)
        _record(folder, path, data, meta)
    return paths


def _write_free(
    folder: Path, name: str, image: GeneratedImage, meta: Fields, overwrite: bool
) -> Path:
    """Write `image` as `name.ext`, or the first free `name-vN.ext`; return the path."""
    extension = EXTENSION[image.format]
    path = folder / f"{name}.{extension}"
    data = with_metadata(image, meta)
    with _reported(path):
        temp = _temporary(folder, data)
        try:
            for version in itertools.count(1):
                versioned = name if version == 1 else f"{name}-v{version}"
                path = folder / f"{versioned}.{extension}"
                if not overwrite and needs_sidecar(image.format) and _sidecar_of(path).exists():
                    continue  # an image's sidecar marks its name as taken too
                try:
                    _publish(temp, path, overwrite)
                    break
                except FileExistsError:
                    continue
        finally:
            temp.unlink(missing_ok=True)
        if needs_sidecar(image.format):
            _write(folder, sidecar(meta), _sidecar_of(path), overwrite=True)
    _record(folder, path, data, meta)
    return path


def write_file(folder: Path, name: str, suffix: str, data: bytes, *, overwrite: bool) -> Path:
    """Write `data` as `folder/name.suffix`, or (unless `overwrite`) the first free
    `name-vN.suffix`, with no manifest line: a file that is not an image of the result (a
    sweep's `grid.png`). Returns its path; failures are a `SaveError`."""
    _make_folder(folder)
    path = folder / f"{name}{suffix}"
    with _reported(path):
        temp = _temporary(folder, data)
        try:
            for version in itertools.count(1):
                path = folder / f"{name if version == 1 else f'{name}-v{version}'}{suffix}"
                try:
                    _publish(temp, path, overwrite)
                    return path
                except FileExistsError:
                    continue
        finally:
            temp.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # itertools.count never ends


def _record(folder: Path, path: Path, data: bytes, meta: Fields) -> None:
    """The manifest line of the file just written at `path` (its bytes: `data`)."""
    entry = {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "metadata": flatten(meta),
    }
    manifest = folder / MANIFEST
    with _reported(manifest):
        append_line(manifest, dumps(entry).encode("utf-8"))


def append_line(path: Path, line: bytes) -> None:
    """Append `line` and a newline to `path` in one write with O_APPEND, then fsync: a
    reader, or another process appending too, never sees half a line of it. A line a
    crashed writer left without its newline gets one first (read through the same
    descriptor, so it is the same file), so ours starts on its own. A symlink at `path`
    is not followed (an `OSError`, ELOOP)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line + b"\n")
        while view:  # one call in practice; more only if the disk fills up halfway
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(folder: Path, data: bytes, path: Path, overwrite: bool) -> None:
    temp = _temporary(folder, data)
    try:
        _publish(temp, path, overwrite)
    finally:
        temp.unlink(missing_ok=True)


def _publish(temp: Path, path: Path, overwrite: bool) -> None:
    """Give the finished `temp` its name: replace with `overwrite`, else only if free."""
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)  # FileExistsError if taken, even by a file made just now
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(temp, path)


def _temporary(folder: Path, data: bytes) -> Path:
    """`data` in a new hidden file in `folder`, on disk (fsynced), with the usual mode."""
    handle, name = tempfile.mkstemp(dir=folder, prefix=".mesh-", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _make_folder(folder: Path) -> None:
    """Make `folder` if missing. It must not be a symlink, nor hold a manifest that is one:
    refused before any image is written."""
    for path in (folder, folder / MANIFEST):
        if os.path.islink(path):
            raise SaveError(_symlink(path))
    with _reported(folder):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SaveError(
                f"cannot save into {folder}: it is a file, not a folder. Pass a folder, "
                f"or a file name ending in {_SUFFIXES}"
            ) from None


def _sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@contextmanager
def _reported(path: Path) -> Iterator[None]:
    """Turn an `OSError` while writing `path` into a `SaveError` that says what to do."""
    try:
        yield
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(_describe(exc, path)) from exc


def _describe(exc: OSError, path: Path) -> str:
    if isinstance(exc, FileExistsError):
        return _exists(path)
    if isinstance(exc, IsADirectoryError):
        return f"cannot save to {path}: that is a folder. Pass a file name, or save into it"
    if isinstance(exc, NotADirectoryError):
        return f"cannot save to {path}: part of that path is a file, not a folder"
    if exc.errno == errno.ELOOP and os.path.islink(path):  # O_NOFOLLOW met a link
        return _symlink(path)
    if exc.errno in _REASONS:
        return f"cannot save to {path}: {_REASONS[exc.errno]}"
    if isinstance(exc, PermissionError):
        return f"cannot save to {path}: permission denied. Choose a folder you can write to"
    return f"cannot save to {path}: {exc.strerror or exc}"


def _symlink(path: Path) -> str:
    target = one_line(os.readlink(path), 200)
    return f"cannot save to {path}: it is a symlink to {target}, and saving follows no symlinks"


def _exists(path: Path) -> str:
    return f"{path} already exists: pass overwrite=True to replace it, or another name"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "EXTENSION",
    "FORMAT_OF_SUFFIX",
    "MANIFEST",
    "append_line",
    "save_images",
    "save_result",
    "write_file",
]
