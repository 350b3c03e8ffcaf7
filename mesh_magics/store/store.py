"""`Store`: every finished generation, kept on disk so it can be looked at again
(`history`) or answered again without a request (`get`, for `--replay`).

    store = Store(Path("~/.cache/mesh-magics").expanduser())
    store.put(result, api_host="https://api.meshapi.ai", cell=source)
    store.get(request_key(body, "https://api.meshapi.ai"))   # ImageResult | None
    store.history("fox")                                       # newest first
    store.find_image(sha256)                  # the newest run that made that image
    store.set_rating(run_id, None, 4)         # a user's marks: `result.rate(4)` calls it

The folder holds `index.db` (index.py) and `images/ab/abcdef….png`, each image file named
by the SHA-256 of its bytes (files.py): the same image stored twice is one file, and a
file that changed is known by its hash. Nothing stored holds the API key: it is a header,
never in the body, and every text kept (body, cell, usage, revised prompts, the names of
an edit's inputs) is redacted against the registered secrets anyway, in case a user typed
the key into a cell.

An edit is stored with its inputs (`ImageResult.inputs`: role, SHA-256, name, size of each
image sent) and keyed by its endpoint too, so `find_image` can tell which stored run made
an input, and `ImageResult.parents` walk an edit back to its first generation.

The store serves the notebook and never stands in its way: a generation that cannot be
stored (disk full, a read-only folder) is a `StoreWarning`, not a failed cell, and a
stored image that has gone or changed is a miss with a warning, not a crash. So is a
damaged row (JSON that does not parse, a time that is no time, a hash that is no SHA-256):
it is skipped with a one-line warning, and the other rows are served.

A result it stores or rebuilds knows its run (`ImageResult.stored`), so the user's
ratings and tags (`result.rate`, `result.tag`) are written to the store, and `history()`
can filter by them (filters.py).

Opening a store reclaims what a killed process left behind: temporary files, and image
files no row names (written, then killed before the row was committed), once they are
older than `ORPHAN_AGE`, so a file another process is about to index is never taken.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..images import GeneratedImage
from ..redact import one_line, redact, redact_value
from ..results.marks import Marks, StoredRun, check_stars, check_tags
from ..results.result import ImageResult, Lineage
from . import batches as batch_rows
from . import index
from .batches import BatchRecord
from .disk import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    StoredImageError,
    StoreError,
    StoreWarning,
    UnsafePathError,
    has_image,
    image_name,
    image_path,
    is_image_name,
    make_private_folder,
    read_image,
    remove,
    warn,
    write_image,
    write_images,
)
from .filters import HistoryFilter
from .images import StoredImage
from .keys import host_of, request_key

DEFAULT_MAX_BYTES = 2 * 1024**3
HISTORY_MAX = 1_000_000  # runs one history() may list
ORPHAN_AGE = 3600.0  # seconds: far longer than writing a file and committing its row takes


def history_limit(limit: object) -> int:
    """`limit` if it is a number of runs `history()` can list, else a one-line
    `OptionError` saying what is (SQLite itself would overflow past 2**63 - 1)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX:
        raise OptionError(
            f"history limit must be a whole number from 1 to {HISTORY_MAX:,}, "
            f"not {one_line(repr(limit), 40)}"
        )
    return limit


class _DamagedRow(Exception):
    """A row of the index that cannot be turned back into a result (says which part)."""


@dataclass(frozen=True)
class _File:
    sha256: str
    path: Path
    data: bytes


class Store:
    """The local store in `directory`: SQLite index, image files, a size cap of
    `max_bytes` (the oldest generations go first). Safe to share between threads, and
    between processes that open the same folder."""

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory).expanduser()
        self.max_bytes = max_bytes
        # The folder itself may be reached through a link the user made; nothing inside it.
        root = self.directory.resolve()
        make_private_folder(root)
        self._images = root / "images"
        make_private_folder(self._images)
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        # Results of this process that read their images from here: their runs are not
        # evicted while they live (other processes know nothing of them).
        self._held: weakref.WeakValueDictionary[int, ImageResult] = weakref.WeakValueDictionary()
        self._db = index.connect(root / "index.db")
        try:
            self._reclaim()
        except (OSError, sqlite3.Error) as exc:  # a store that cannot be tidied still works
            warn(f"could not reclaim left-over files in {self.directory} ({_reason(exc)})")

    # -- storing -------------------------------------------------------------------------

    def put(
        self,
        result: ImageResult,
        *,
        api_host: str,
        cell: str | None = None,
        keep_bytes: bool = True,
    ) -> None:
        """Write the images and the row; return only when everything is on disk.

        `keep_bytes=False` (a sweep's run): once they are on disk, the result reads its
        images from their files when asked, and lets go of the bytes it held. If the write
        fails, it keeps them: nothing else holds them then.

        A replayed result is in the store already, and one without images answers
        nothing: both are left out. A failure to write is a `StoreWarning`."""
        if result.replayed or len(result) == 0:
            return
        if result.lineage is None:  # the store that holds it finds its parents
            result.lineage = self
        try:
            self._put(result, host_of(api_host), cell, keep_bytes)
        except (OSError, sqlite3.Error, TypeError, ValueError, StoreError) as exc:
            warn(f"this generation was not stored in {self.directory} ({_reason(exc)})")

    def _put(self, result: ImageResult, host: str, cell: str | None, keep_bytes: bool) -> None:
        body = json.dumps(_redacted(result.request), ensure_ascii=False, default=str)
        usage = None if result.usage is None else json.dumps(redact_value(result.usage))
        cell = None if cell is None else redact(cell)
        inputs = _inputs_text(result.inputs) if result.is_edit else None
        rows = []
        files: dict[str, _File] = {}
        lazy: list[StoredImage] = []  # the same images, read from their files when asked
        for position, (data, fmt, (width, height), revised) in enumerate(
            zip(result.data, result.formats, result.sizes, result.revised_prompts, strict=True)
        ):
            sha256 = hashlib.sha256(data).hexdigest()
            files[sha256] = _File(sha256, image_path(self._images, sha256, fmt), data)
            path = files[sha256].path
            lazy.append(StoredImage(None, fmt, width, height, revised, path=path, sha256=sha256))
            revised = None if revised is None else redact(revised)
            rows.append([position, sha256, fmt, width, height, len(data), revised])
        # The slow part, fsyncs and all, before taking the database's lock; a file another
        # process wrote already (same bytes, same name) is used as it is.
        write_images(
            [
                (file.path, file.data)
                for file in files.values()
                if not has_image(file.path, len(file.data))
            ]
        )
        texts = (body, usage, cell, result.model, result.request_id, result.prompt, inputs)
        total = sum(len(file.data) for file in files.values()) + sum(
            len(text.encode("utf-8")) for text in texts if text
        )
        created = time.time() if result.created is None else result.created
        endpoint = "edits" if result.is_edit else "generations"
        run = (
            request_key(result.request, host, endpoint),
            host,
            body,
            redact(result.prompt),
            redact(result.model),
            None if result.request_id is None else redact(result.request_id),
            usage,
            created,
            result.elapsed,
            cell,
            total,
            inputs,
        )
        run_id = None
        try:
            with self._lock, index.writing(self._db) as db:
                for file in files.values():  # evicted by another process since written?
                    if not has_image(file.path, len(file.data)):
                        write_image(file.path, file.data)
                run_id = db.execute(index.INSERT_RUN, run).lastrowid
                db.executemany(index.INSERT_IMAGE, ([run_id, *row] for row in rows))
                if not keep_bytes and run_id is not None:  # its images will be read from
                    self._held[run_id] = result  # here: under the lock, before any eviction
                self._evict(db)
        except BaseException:
            if run_id is not None:  # rolled back: the id may be another run's next
                with self._lock:
                    self._held.pop(run_id, None)
            raise
        if run_id is not None:
            result.stored = StoredRun(self, run_id)
            if not keep_bytes:
                result.rest_on(lazy)

    def _hold(self, run_id: int, result: ImageResult) -> None:
        """Keep run `run_id` from eviction while `result`, which reads its files, lives."""
        with self._lock:
            self._held[run_id] = result

    def _evict(self, db: sqlite3.Connection) -> None:
        """While the store holds more than `max_bytes`, delete the oldest runs (a run whose
        time is damaged counts as oldest), then the files no run uses any more; never a
        run a live result of this process reads its images from (`_held`). Inside the
        writer's transaction: no other process can store a run that uses a file between
        the check and the delete."""
        (total,) = db.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM runs").fetchone()
        if total <= self.max_bytes:
            return
        going = []
        held = set(self._held.keys())
        oldest_first = db.execute(
            "SELECT id, total_bytes FROM runs "
            "ORDER BY typeof(created) IN ('integer', 'real'), created, id"
        )
        for run_id, size in oldest_first:
            if run_id in held:
                continue  # a live result reads its images from it
            going.append(run_id)
            total -= size if isinstance(size, int | float) else 0  # damaged: counts nothing
            if total <= self.max_bytes:
                break
        oldest_first.close()
        unused: set[tuple[Any, Any]] = set()
        for run_id in going:
            unused.update(db.execute(_IMAGES_OF_RUN, (run_id,)))
            db.execute("DELETE FROM images WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        for sha256, fmt in unused:
            if db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha256,)).fetchone():
                continue  # a newer run has the same image
            try:
                remove(image_path(self._images, sha256, fmt))
            except UnsafePathError as exc:  # an edited row: its "file" is not the store's
                warn(f"{exc}; not deleted")

    def _reclaim(self) -> None:
        """Delete what a killed process left in the image folders: temporary files, and
        image files no row names, older than `ORPHAN_AGE`. Under the write lock, so no
        other process commits a row for a file between the check and the delete; links
        are neither followed nor deleted."""
        cutoff = time.time() - ORPHAN_AGE
        with self._lock, index.writing(self._db) as db:
            named: set[str] = set()
            for sha256, fmt in db.execute("SELECT DISTINCT sha256, format FROM images"):
                try:
                    named.add(image_name(sha256, fmt))  # no resolving: thousands of rows
                except UnsafePathError:
                    continue  # a damaged row: reading it says so
            with os.scandir(self._images) as shards:
                for shard in shards:
                    if shard.is_dir(follow_symlinks=False):
                        self._reclaim_in(Path(shard.path), named, cutoff)

    def _reclaim_in(self, shard: Path, named: set[str], cutoff: float) -> None:
        with os.scandir(shard) as entries:
            for entry in entries:
                left_over = entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)
                orphan = is_image_name(entry.name) and entry.name not in named
                if (
                    (left_over or orphan)
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    remove(Path(entry.path))

    # -- reading -------------------------------------------------------------------------

    def holds(self, key: str) -> bool:
        """Whether a run of `key` is stored: one query, no file read."""
        return bool(self._rows(index.NEWEST_OF_KEY, key))

    def get(
        self, key: str, *, preview_max_px: int = 1024, keep_bytes: bool = True
    ) -> ImageResult | None:
        """The stored result for `key` (the newest one), or None (a miss). A missing or
        corrupted image file (its SHA-256 doesn't match) is a miss, with a one-line
        warning (`StoreWarning`) naming the file.

        One query, then each file read and hashed once; its bytes stay in memory, since a
        replay is shown at once, unless `keep_bytes=False` (a sweep's run: its images are
        read again when asked)."""
        rows = self._rows(index.NEWEST_OF_KEY, key)
        try:
            result = self._run(
                rows, preview_max_px=preview_max_px, replayed=True, load=True, keep=keep_bytes
            )
            if result is not None and not keep_bytes:
                self._hold(rows[0][0], result)
            return result
        except StoredImageError as exc:
            self._lost(exc, run_id=rows[0][0])
            return None

    def find_image(
        self, sha256: str, *, request_id: str | None = None, preview_max_px: int = 1024
    ) -> ImageResult | None:
        """The stored run with an image whose bytes hash to `sha256`: the one with
        `request_id` if there is one (several runs can make the same bytes), else the
        newest; None if none. Lazy like `history()`: it reads no image file until a byte
        is asked for."""
        rows = self._rows(index.NEWEST_WITH_IMAGE, sha256, request_id)
        return self._run(rows, preview_max_px=preview_max_px, replayed=False)

    def _rows(self, query: str, *values: str | None) -> list[Any]:
        """The rows of a one-run query; none (with a warning) when the index can't be read."""
        try:
            with self._lock:
                return self._db.execute(query, values).fetchall()
        except sqlite3.Error as exc:
            warn(f"cannot read {self.directory} ({_reason(exc)})")
            return []

    def _run(
        self,
        rows: Sequence[Sequence[Any]],
        *,
        preview_max_px: int,
        replayed: bool,
        load: bool = False,
        keep: bool = True,
    ) -> ImageResult | None:
        """The result of `rows` (one run's, with its images); None if there are none, or
        (with a warning) they are damaged. Its images read their files now with `load`
        (a `StoredImageError` if one has gone or changed), and keep the bytes unless not
        `keep`; else they read them only when asked."""
        if not rows:
            return None
        try:
            images = [self._image(row[_IMAGE_AT:]) for row in rows]
        except (_DamagedRow, UnsafePathError) as exc:
            self._damaged(rows[0][0], exc)
            return None
        if load:  # a replay is shown at once: read (and check) every file once, now
            images = [_read(image) if keep else _checked(image) for image in images]
        try:
            result = _result(
                rows[0], images, replayed=replayed, preview_max_px=preview_max_px, lineage=self
            )
        except _DamagedRow as exc:
            self._damaged(rows[0][0], exc)
            return None
        result.stored = StoredRun(self, rows[0][0])
        return result

    def _damaged(self, run_id: object, problem: Exception) -> None:
        warn(f"run {run_id} in {self.directory} is damaged ({problem}); skipped")

    def _image(self, columns: Sequence[Any]) -> StoredImage:
        sha256, fmt, width, height, revised = columns
        path = image_path(self._images, sha256, fmt)
        for name, size in (("width", width), ("height", height)):
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise _DamagedRow(f"its image's {name} is {one_line(repr(size), 40)}")
        if not isinstance(fmt, str) or not (revised is None or isinstance(revised, str)):
            raise _DamagedRow("its image's format or revised prompt is not text")
        return StoredImage(None, fmt, width, height, revised, path=path, sha256=sha256)

    def _lost(self, problem: StoredImageError, *, run_id: int) -> None:
        if problem.damaged:
            remove(problem.path)  # the next run with these bytes writes it anew
        elif not problem.path.exists() and not self._has_run(run_id):
            return  # evicted by another process since the query: a plain miss
        warn(f"{problem}; not replayed")

    def _has_run(self, run_id: int) -> bool:
        try:
            with self._lock:
                return bool(
                    self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
                )
        except sqlite3.Error:
            return True  # cannot tell: say what was seen

    def history(
        self,
        text: str | None = None,
        limit: int = 20,
        *,
        where: HistoryFilter | None = None,
        preview_max_px: int = 1024,
    ) -> list[ImageResult]:
        """The latest stored generations, newest first, filtered by `text` in the prompt,
        model or request id (case-insensitive), and by `where` (model, size, seed, time,
        tags, rating: filters.py). Their images read their files only when their bytes
        are asked for. `limit`: 1 to `HISTORY_MAX` (else an `OptionError`). A damaged run
        is left out, with a one-line warning."""
        limit = history_limit(limit)
        if text is not None:
            where = HistoryFilter(**{**vars(where or HistoryFilter()), "text": text})
        conditions, values = (where or HistoryFilter()).where()
        try:
            with self._lock:
                rows = self._db.execute(index.latest(conditions), (*values, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store in {self.directory} ({exc})") from None
        runs: dict[int, list[Sequence[Any]]] = {}
        for row in rows:
            runs.setdefault(row[0], []).append(row)
        found = (
            self._run(run, preview_max_px=preview_max_px, replayed=False) for run in runs.values()
        )
        return [result for result in found if result is not None]

    # -- the user's marks ------------------------------------------------------------

    def marks_of(self, run_id: int) -> Marks:
        """The run's rating and tags, and its images' (by index)."""
        try:
            with self._lock:
                ratings = self._db.execute(index.RATINGS_OF_RUN, (run_id,)).fetchall()
                tagged = self._db.execute(index.TAGS_OF_RUN, (run_id,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store in {self.directory} ({exc})") from None
        run_tags = tuple(tag for position, tag in tagged if position == index.RUN_POSITION)
        image_tags: dict[int, tuple[str, ...]] = {}
        for position, tag in tagged:
            if position != index.RUN_POSITION:
                image_tags[position] = (*image_tags.get(position, ()), tag)
        stars = {position: rating for position, rating in ratings if rating in range(1, 6)}
        return Marks(
            rating=stars.pop(index.RUN_POSITION, None),
            tags=run_tags,
            image_ratings=stars,
            image_tags=image_tags,
        )

    def set_rating(self, run_id: int, position: int | None, stars: int | None) -> None:
        """Rate the run (`position` None) or one of its images; None clears the rating."""
        stars = None if stars is None else check_stars(stars)
        sql = "UPDATE images SET rating = ?1 WHERE run_id = ?2 AND position = ?3"
        if position is None:
            sql = "UPDATE runs SET rating = ?1 WHERE id = ?2 AND ?3 IS NULL"
        values = (stars, run_id, position)
        with self._writing() as db:
            if db.execute(sql, values).rowcount != 1:
                raise StoreError(self._gone(run_id, position))

    def change_tags(
        self, run_id: int, position: int | None, tags: Sequence[str], *, add: bool
    ) -> None:
        """Add (`add`) or remove `tags` on the run (`position` None) or one of its images."""
        tags = check_tags(tags)
        where = index.RUN_POSITION if position is None else position
        with self._writing() as db:
            found = (
                db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,))
                if position is None
                else db.execute(
                    "SELECT 1 FROM images WHERE run_id = ? AND position = ?", (run_id, position)
                )
            ).fetchone()
            if not found:
                raise StoreError(self._gone(run_id, position))
            sql = (
                "INSERT OR IGNORE INTO tags (run_id, position, tag) VALUES (?, ?, ?)"
                if add
                else "DELETE FROM tags WHERE run_id = ? AND position = ? AND tag = ?"
            )
            db.executemany(sql, ((run_id, where, tag) for tag in tags))

    # -- batches -------------------------------------------------------------------------

    def add_batch(self, record: BatchRecord) -> None:
        """Remember a batch just submitted (a `StoreError` if it cannot be written)."""
        with self._writing() as db:
            db.execute(batch_rows.INSERT, record.row())

    def batch_of_key(self, key: str) -> BatchRecord | None:
        """The newest batch of the requests whose `batch_key` is `key`, or None."""
        rows = self._rows(batch_rows.NEWEST_OF_KEY, key)
        return BatchRecord.of_row(tuple(rows[0])) if rows else None

    def update_batch(self, record: BatchRecord) -> None:
        """Keep a batch's status, counts and whether its results are in the store."""
        with self._writing() as db:
            db.execute(
                batch_rows.UPDATE,
                (record.status, record.completed, record.failed, int(record.collected), record.id),
            )

    def batches(self, limit: int = 50) -> list[BatchRecord]:
        """The batches remembered, newest first (damaged rows skipped)."""
        try:
            with self._lock:
                rows = self._db.execute(batch_rows.NEWEST, (history_limit(limit),)).fetchall()
        except sqlite3.Error as exc:
            warn(f"cannot read {self.directory} ({_reason(exc)})")
            return []
        return [record for row in rows if (record := BatchRecord.of_row(tuple(row)))]

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._lock, index.writing(self._db) as db:
                yield db
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the store in {self.directory} ({exc})") from None

    def _gone(self, run_id: int, position: int | None) -> str:
        what = "this run" if position is None else f"image {position} of this run"
        return f"{what} is no longer in the store in {self.directory} (evicted or deleted)"

    def total_bytes(self) -> int:
        """What the size cap counts: every stored run's image bytes and texts."""
        with self._lock:
            (total,) = self._db.execute("SELECT COALESCE(SUM(total_bytes), 0) FROM runs").fetchone()
        return int(total)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"<Store {self.directory}>"


_IMAGES_OF_RUN = "SELECT sha256, format FROM images WHERE run_id = ?"
_IMAGE_AT = 8  # where a row's image columns start, after index.RUN_COLUMNS


def _read(image: StoredImage) -> StoredImage:
    """`image` with its bytes in memory: its file read, and checked, now."""
    assert image.path is not None and image.sha256 is not None
    data = read_image(image.path, image.sha256)
    size = (image.width, image.height)
    return StoredImage(
        data, image.format, *size, image.revised_prompt, path=image.path, sha256=image.sha256
    )


def _checked(image: StoredImage) -> StoredImage:
    """`image`, its file read and checked now, its bytes not kept."""
    assert image.path is not None and image.sha256 is not None
    read_image(image.path, image.sha256)
    return image


def _result(
    row: Sequence[Any],
    images: Sequence[GeneratedImage],
    *,
    replayed: bool,
    preview_max_px: int,
    lineage: Lineage | None = None,
) -> ImageResult:
    """The result of a run's row; `_DamagedRow` naming the first column that is wrong."""
    _, request, model, request_id, usage, created, elapsed, inputs = row[:_IMAGE_AT]
    if not isinstance(model, str) or not (request_id is None or isinstance(request_id, str)):
        raise _DamagedRow("its model or request id is not text")
    return ImageResult(
        list(images),
        request=_json(request, dict, "request"),
        model=model,
        request_id=request_id,
        usage=None if usage is None else _json(usage, dict, "usage"),
        elapsed=_seconds(elapsed, "elapsed"),
        preview_max_px=preview_max_px,
        created=_time(created),
        replayed=replayed,
        inputs=None if inputs is None else _json(inputs, list, "inputs"),
        lineage=lineage,
    )


def _json(text: object, kind: type[dict[str, Any]] | type[list[Any]], column: str) -> Any:
    """A JSON column: an object (`kind` dict), or a list of objects (`kind` list)."""
    try:
        value: Any = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        value = None
    if not isinstance(value, kind) or (
        isinstance(value, list) and not all(isinstance(entry, dict) for entry in value)
    ):
        what = "object" if kind is dict else "list of objects"
        raise _DamagedRow(f"its {column} is not a JSON {what}")
    return value


def _seconds(value: object, column: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _DamagedRow(f"its {column} is {one_line(repr(value), 40)}, not a number")
    return float(value)


def _time(value: object) -> float:
    """A row's `created`, if it is a time the result can show (a date, in local time)."""
    created = _seconds(value, "created")
    try:
        datetime.fromtimestamp(created)
    except (OverflowError, OSError, ValueError):
        raise _DamagedRow(f"its created is {created!r}, not a date") from None
    return created


def _inputs_text(inputs: Sequence[Mapping[str, Any]]) -> str:
    """An edit's inputs as JSON, with each name (a variable's, typed by the user) redacted."""
    cleaned = [
        {**entry, "name": redact(entry["name"])} if isinstance(entry.get("name"), str) else entry
        for entry in inputs
    ]
    return json.dumps(cleaned, ensure_ascii=False)


def _redacted(body: Mapping[str, Any]) -> Any:
    """The body with every secret masked in its texts. `data:` URLs (input images, many
    megabytes) are left alone: base64 holds no key, and scanning it would slow `put`."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value if value.startswith("data:") else redact(value)
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(body)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


__all__ = [
    "DEFAULT_MAX_BYTES",
    "HISTORY_MAX",
    "ORPHAN_AGE",
    "Store",
    "StoreWarning",
    "history_limit",
]
