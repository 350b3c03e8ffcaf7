"""The batches a store remembers (`batches` table): a batch runs for hours at the server and
outlives the kernel that made it, so its id is kept here, found again by the key of its
requests when the same cell runs again, and listed by `%mesh batches`.

    store.add_batch(BatchRecord(id="batch_...", key=batch_key(keys), ...))
    store.batch_of_key(key)       # the newest batch of those requests, or None
    store.update_batch(id, status="completed", completed=12, failed=0, collected=True)
    store.batches(limit=20)       # newest first
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COLUMNS = (
    "id, key, api_host, created, runs, images, prompt, cell, status, completed, failed, collected"
)
INSERT = f"INSERT OR REPLACE INTO batches ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
NEWEST_OF_KEY = f"SELECT {COLUMNS} FROM batches WHERE key = ? ORDER BY created DESC LIMIT 1"
NEWEST = f"SELECT {COLUMNS} FROM batches ORDER BY created DESC LIMIT ?"
UPDATE = "UPDATE batches SET status = ?, completed = ?, failed = ?, collected = ? WHERE id = ?"


@dataclass
class BatchRecord:
    """One batch as the store keeps it: its status and counts as last seen."""

    id: str
    key: str
    api_host: str
    created: float
    runs: int
    images: int
    prompt: str
    cell: str | None = None
    status: str = "validating"
    completed: int = 0
    failed: int = 0
    collected: bool = False  # its results are in the store

    def row(self) -> tuple[object, ...]:
        return (
            self.id, self.key, self.api_host, self.created, self.runs, self.images,
            self.prompt, self.cell, self.status, self.completed, self.failed,
            int(self.collected),
        )  # fmt: skip

    @classmethod
    def of_row(cls, row: tuple[Any, ...]) -> BatchRecord | None:
        """The record of a row, or None when the row is damaged (a wrong type)."""
        if len(row) != len(_KINDS) or not all(map(isinstance, row, _KINDS)):
            return None
        id_, key, host, created, runs, images, prompt, cell, status, done, failed, got = row
        return cls(
            id_, key, host, float(created), runs, images, prompt, cell, status, done, failed,
            bool(got),
        )  # fmt: skip


_KINDS = (str, str, str, int | float, int, int, str, str | None, str, int, int, int)


__all__ = ["BatchRecord"]
