"""The store's index: one SQLite database in WAL mode, shared by every process (kernel)
that uses the same folder.

WAL lets readers go on while one process writes; writers take the lock up front
(`BEGIN IMMEDIATE`), hold it for a few small statements, and wait for each other up to a
busy timeout, so two kernels storing at once both succeed. `synchronous=FULL`: a commit is
on disk when it returns (in WAL mode, NORMAL may lose the last commits on a power cut).

Each generation is a row of `runs`; its images are rows of `images`, in order, naming
their files by SHA-256. `images_by_hash` tells, in one index lookup, whether any run still
uses a file, which is what eviction asks before deleting it, and which run made an edit's
input image.

A store made by an earlier version is brought up to this one when it is opened: missing
columns are added (`ALTER TABLE ... ADD COLUMN`, nullable), its rows are kept, and
`user_version` says which version it is (1: before edits, 2: `runs.inputs`, 3: ratings
and tags, 4: `batches`).

A user's marks: a run's rating is `runs.rating`, an image's `images.rating` (1 to 5, NULL:
none); tags are rows of `tags`, position -1 for the run itself. A trigger deletes a run's
tags with the run, so eviction by an older version (which knows no tags) leaves none behind
for a later run that gets the same id.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from .disk import FILE_MODE, StoreError

SCHEMA_VERSION = 4  # 2: runs.inputs; 3: runs.rating, images.rating, tags; 4: batches
RUN_POSITION = -1  # a tag's position when it marks the run, not one image
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction

_TABLES = (
    """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,            -- request_key(body, api_host, endpoint)
    api_host TEXT NOT NULL,       -- scheme://host:port, never credentials
    request TEXT NOT NULL,        -- the body as sent (JSON); the API key is a header, not in it
    prompt TEXT NOT NULL,         -- the body's prompt, for searching
    model TEXT NOT NULL,
    request_id TEXT,
    usage TEXT,                   -- JSON
    created REAL NOT NULL,        -- epoch seconds
    elapsed REAL NOT NULL,        -- seconds
    cell TEXT,                    -- the cell's source, when it came from one
    total_bytes INTEGER NOT NULL, -- its image bytes and the text above: what the cap counts
    inputs TEXT,                  -- an edit's input images (JSON list); NULL: a generation
    rating INTEGER                -- 1 to 5 stars the user gave; NULL: none
)""",
    "CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, created)",
    "CREATE INDEX IF NOT EXISTS runs_by_age ON runs (created)",
    "CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, created)",
    """
CREATE TABLE IF NOT EXISTS images (
    run_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    sha256 TEXT NOT NULL,         -- names the file: images/ab/abcdef....png
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    revised_prompt TEXT,
    rating INTEGER,               -- 1 to 5 stars the user gave this image; NULL: none
    PRIMARY KEY (run_id, position)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS images_by_hash ON images (sha256)",
    """
CREATE TABLE IF NOT EXISTS tags (
    run_id INTEGER NOT NULL,
    position INTEGER NOT NULL,    -- the image's; -1 (RUN_POSITION): the run's own tag
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, position, tag)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (tag, run_id)",
    """
CREATE TRIGGER IF NOT EXISTS tags_go_with_their_run AFTER DELETE ON runs
BEGIN DELETE FROM tags WHERE run_id = old.id; END""",
    """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,          -- the server's batch id
    key TEXT NOT NULL,            -- batch_key(its requests, api_host): what a rerun matches
    api_host TEXT NOT NULL,
    created REAL NOT NULL,        -- epoch seconds, when it was submitted
    runs INTEGER NOT NULL,
    images INTEGER NOT NULL,
    prompt TEXT NOT NULL,         -- its first prompt, to recognise it in a list
    cell TEXT,
    status TEXT NOT NULL,         -- as last seen: validating ... completed, failed, cancelled
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    collected INTEGER NOT NULL DEFAULT 0  -- 1: its results are in the store
)""",
    "CREATE INDEX IF NOT EXISTS batches_by_key ON batches (key, created)",
)
# Columns later versions added to a table that `CREATE TABLE IF NOT EXISTS` leaves as an
# earlier version made it. Each is nullable, so older versions still insert their rows.
_ADDED_COLUMNS = (
    ("runs", "inputs", "TEXT"),
    ("runs", "rating", "INTEGER"),
    ("images", "rating", "INTEGER"),
)

RUN_COLUMNS = "r.id, r.request, r.model, r.request_id, r.usage, r.created, r.elapsed, r.inputs"
IMAGE_COLUMNS = "i.sha256, i.format, i.width, i.height, i.revised_prompt"

# The newest run of a key with its images, in one query: what a replay costs.
NEWEST_OF_KEY = f"""
SELECT {RUN_COLUMNS}, {IMAGE_COLUMNS}
FROM runs r JOIN images i ON i.run_id = r.id
WHERE r.id = (SELECT id FROM runs WHERE key = ? ORDER BY created DESC, id DESC LIMIT 1)
ORDER BY i.position
"""


def latest(where: str) -> str:
    """The latest runs that match `where` (conditions on `r`, the runs table; its `?`
    values first, then the limit), with their images, newest first."""
    return f"""
WITH chosen AS (
    SELECT * FROM runs r WHERE {where} ORDER BY created DESC, id DESC LIMIT ?
)
SELECT {RUN_COLUMNS}, {IMAGE_COLUMNS}
FROM chosen r JOIN images i ON i.run_id = r.id
ORDER BY r.created DESC, r.id DESC, i.position
"""


# A run's marks: its rating, its images' ratings, and every tag (position -1: the run's).
RATINGS_OF_RUN = """
SELECT -1, rating FROM runs WHERE id = ?1 AND rating IS NOT NULL
UNION ALL SELECT position, rating FROM images WHERE run_id = ?1 AND rating IS NOT NULL
"""
TAGS_OF_RUN = "SELECT position, tag FROM tags WHERE run_id = ? ORDER BY position, tag"

# The newest run with an image of that SHA-256 (one lookup in images_by_hash), with its
# images: the run that made an edit's input.
NEWEST_WITH_IMAGE = f"""
SELECT {RUN_COLUMNS}, {IMAGE_COLUMNS}
FROM runs r JOIN images i ON i.run_id = r.id
WHERE r.id = (
    SELECT made.id FROM images found JOIN runs made ON made.id = found.run_id
    WHERE found.sha256 = ?1
    ORDER BY made.request_id IS ?2 DESC, made.created DESC, made.id DESC LIMIT 1
)
ORDER BY i.position
"""

INSERT_RUN = """
INSERT INTO runs (key, api_host, request, prompt, model, request_id, usage, created, elapsed,
                  cell, total_bytes, inputs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_IMAGE = """
INSERT INTO images (run_id, position, sha256, format, width, height, bytes, revised_prompt)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def connect(path: Path) -> sqlite3.Connection:
    """The index at `path` (0600, as are its -wal and -shm files), made if missing."""
    _create_private(path)
    for suffix in ("-wal", "-shm"):  # SQLite would write through a link planted there
        if os.path.islink(f"{path}{suffix}"):
            raise StoreError(f"{path}{suffix} is a symlink; the store does not follow symlinks")
    # One connection per Store, used under its lock from whichever thread stores or reads.
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        _use_wal(connection)
        connection.execute("PRAGMA synchronous = FULL")
        connection.create_function("mm_contains", 4, _contains, deterministic=True)
        _make_schema(connection)
    except BaseException:
        connection.close()
        raise
    for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; make sure
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", FILE_MODE)
    return connection


def _use_wal(connection: sqlite3.Connection) -> None:
    """Switch the database to WAL (it stays set in the file). Two processes making the
    store at once both try; SQLite answers the loser "locked" at once, without waiting on
    the busy timeout, so wait here (briefly, and only the first time a store is made)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return  # (a file system without shared memory keeps another mode: still usable)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _make_schema(connection: sqlite3.Connection) -> None:
    """Make the tables, or bring a store an earlier version made up to this one, in one
    write transaction: two processes opening an old store at once take turns, and the
    second finds the columns the first added."""
    with writing(connection) as db:
        for statement in _TABLES:
            db.execute(statement)
        for table, column, kind in _ADDED_COLUMNS:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA_VERSION:  # a newer version's store keeps its own number
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


@contextlib.contextmanager
def writing(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the database's write lock from its first statement,
    so it never fails half way for a lock another process took meanwhile."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        _rollback(connection)
        raise
    connection.execute("COMMIT")


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:  # SQLite may have rolled back already (disk full)
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _create_private(path: Path) -> None:
    try:
        handle = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    except OSError:
        if os.path.islink(path):  # ELOOP
            raise StoreError(f"{path} is a symlink; the store does not follow symlinks") from None
        raise
    try:
        if os.name == "posix":
            os.fchmod(handle, FILE_MODE)  # open's mode passes through the umask
        else:
            os.chmod(path, FILE_MODE)
    finally:
        os.close(handle)


def _contains(needle: str, *texts: object) -> bool:
    wanted = needle.casefold()  # a damaged row may hold a number where text belongs
    return any(isinstance(text, str) and wanted in text.casefold() for text in texts)


__all__ = [
    "INSERT_IMAGE",
    "INSERT_RUN",
    "NEWEST_OF_KEY",
    "NEWEST_WITH_IMAGE",
    "RATINGS_OF_RUN",
    "RUN_POSITION",
    "SCHEMA_VERSION",
    "TAGS_OF_RUN",
    "connect",
    "latest",
    "writing",
]
