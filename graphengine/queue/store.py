"""SQLite (WAL) persistence for pending/running queue items, history entries and the priority counter.

One connection guarded by a lock: the HTTP threads submit, the dispatcher thread moves items to
history. Every state change is one transaction, so a ``kill -9`` at any point leaves either the old
or the new state, never a prompt missing from both the queue and the history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphengine.queue.items import QueueItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    prompt_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    item TEXT NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    requeued INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT UNIQUE NOT NULL,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RestoredState:
    """What a previous process left: pending items (crashed running ones included), history, counter."""

    pending: list[QueueItem]
    interrupted: list[QueueItem]  # were running at the crash and have already been re-queued once
    history: list[tuple[str, str]]  # (prompt_id, entry JSON text), oldest first
    counter: int
    seq: int


class QueueStore:
    """The queue database at ``path`` (created on first use)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process kills (WAL), fast commits
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- start-up ---

    def restore(self, *, max_requeues: int = 1) -> RestoredState:
        """Load the state; items that were running are re-queued (at most ``max_requeues`` times)."""
        with self._lock:
            rows = self._db.execute("SELECT prompt_id, seq, item, running, requeued FROM queue ORDER BY seq").fetchall()
            pending: list[QueueItem] = []
            interrupted: list[QueueItem] = []
            self._db.execute("BEGIN")
            for prompt_id, seq, item_text, running, requeued in rows:
                item = QueueItem.from_record(json.loads(item_text), seq=seq, requeued=requeued)
                if running:
                    if requeued >= max_requeues:
                        interrupted.append(item)
                        continue
                    item.requeued = requeued + 1
                    self._db.execute(
                        "UPDATE queue SET running = 0, requeued = ? WHERE prompt_id = ?", (item.requeued, prompt_id)
                    )
                pending.append(item)
            self._db.execute("COMMIT")
            history = self._db.execute("SELECT prompt_id, entry FROM history ORDER BY seq").fetchall()
            counter = int(self._meta("counter") or 0)
            seq = max([item.seq for item in pending + interrupted], default=0)
            seq = max(seq, int(self._meta("seq") or 0))
        return RestoredState(pending=pending, interrupted=interrupted, history=history, counter=counter, seq=seq)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # --- changes ---

    def set_counter(self, counter: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('counter', ?)", (str(counter),))

    def add(self, item: QueueItem, *, counter: int) -> None:
        """Persist a newly accepted item together with the priority counter it advanced."""
        text = json.dumps(item.to_record(), separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO queue (prompt_id, seq, item, running, requeued) VALUES (?, ?, ?, 0, ?)",
                    (item.prompt_id, item.seq, text, item.requeued),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (("counter", str(counter)), ("seq", str(item.seq))),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_running(self, prompt_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE queue SET running = 1 WHERE prompt_id = ?", (prompt_id,))

    def mark_pending(self, prompt_id: str) -> None:
        """A running prompt goes back to waiting (graceful stop); unlike a crash, no re-queue is counted."""
        with self._lock:
            self._db.execute("UPDATE queue SET running = 0 WHERE prompt_id = ?", (prompt_id,))

    def remove(self, prompt_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM queue WHERE prompt_id = ?", ((pid,) for pid in prompt_ids))

    def clear_pending(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM queue WHERE running = 0")

    def finish(self, prompt_id: str, entry_text: str, *, evict: Iterable[str] = ()) -> None:
        """Move a prompt from the queue to the history in one transaction (and drop evicted entries)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM queue WHERE prompt_id = ?", (prompt_id,))
                self._db.execute(
                    "INSERT OR REPLACE INTO history (prompt_id, entry) VALUES (?, ?)", (prompt_id, entry_text)
                )
                self._db.executemany("DELETE FROM history WHERE prompt_id = ?", ((pid,) for pid in evict))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM history WHERE prompt_id = ?", ((pid,) for pid in prompt_ids))

    def clear_history(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM history")


def dumps_entry(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"))
