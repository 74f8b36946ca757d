"""The persistent sending queue's storage: one SQLite database per exporter.

Why SQLite in WAL mode rather than an append-only log of our own: each
enqueue and each acknowledgement is one transaction, so a kill -9 in the
middle of a write leaves either the whole entry or none of it (WAL recovery
discards a torn transaction) and never a half-framed record to resync past;
deleting acknowledged entries needs no compaction code; and it ships with
Python. Committed transactions survive the process being killed even with
``synchronous=NORMAL`` (the WAL is in the page cache); ``fsync: true`` on the
``file_storage`` extension selects ``synchronous=FULL`` to survive power loss.

Each payload carries a CRC-32. An entry that fails it, or does not parse,
is skipped and counted; a database file that SQLite finds malformed is moved
aside (its readable rows copied to a fresh file first), so corruption never
becomes a crash loop.

Every call here blocks; the queue runs them on one worker thread.
"""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

from relay.errors import QueueFullError, RetryableError
from relay.signals import Signal
from relay.sqlitefile import is_corruption, move_aside

_SCHEMA = """CREATE TABLE IF NOT EXISTS queue (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL,
    items INTEGER NOT NULL,
    size INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    payload BLOB NOT NULL)"""

_SIGNALS = {signal.value: signal for signal in Signal}


class CorruptEntry(Exception):
    """A stored entry that cannot be delivered: bad checksum, unknown signal or unparsable."""


@dataclass(slots=True)
class Stored:
    key: int
    signal: Signal
    items: int
    size: int


class DiskQueueFile:
    def __init__(self, path: Path, *, fsync: bool = False, max_bytes: int = 0):
        self.path = Path(path)
        self.fsync = fsync
        # A bound on the file, in SQLite pages: past it writes fail as on a full disk.
        self.max_bytes = max_bytes
        self.moved_aside: Path | None = None
        self.salvaged = 0
        self.db: sqlite3.Connection | None = None

    def open(self) -> list[Stored]:
        """Open (creating or recovering) the file; returns the entries waiting in it, oldest first."""
        try:
            self.db = self._connect()
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            return self._entries()
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and not is_corruption(error):
                raise OSError(f"cannot open the persistent queue {self.path}: {error}") from None
            self._recover()
            return self._entries()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: each statement is its own transaction, with no implicit BEGINs.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            db.execute(_SCHEMA)
            if self.max_bytes:
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={max(2, self.max_bytes // page)}")
        except BaseException:
            db.close()
            raise
        return db

    def _entries(self) -> list[Stored]:
        out = []
        for key, signal, items, size in self.db.execute("SELECT key, signal, items, size FROM queue ORDER BY key"):
            out.append(Stored(key, _SIGNALS.get(signal, Signal.TRACES), items, size))
        return out

    def _recover(self) -> None:
        """Move a malformed file aside, keeping whatever rows can still be read."""
        if self.db is not None:
            self.db.close()
        rows = []
        try:
            old = sqlite3.connect(self.path, isolation_level=None)
            try:
                for key in _readable_keys(old):
                    try:
                        rows.append(old.execute("SELECT signal, items, size, crc, payload FROM queue "
                                                "WHERE key = ?", (key,)).fetchone())
                    except sqlite3.DatabaseError:
                        continue
            finally:
                old.close()
        except sqlite3.DatabaseError:
            pass
        self.moved_aside = move_aside(self.path)
        self.db = self._connect()
        good = [row for row in rows if row is not None]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO queue (signal, items, size, crc, payload) VALUES (?, ?, ?, ?, ?)", good)
        self.db.execute("COMMIT")
        self.salvaged = len(good)

    def put(self, signal: Signal, items: int, payload: bytes) -> int:
        try:
            cursor = self.db.execute("INSERT INTO queue (signal, items, size, crc, payload) VALUES (?, ?, ?, ?, ?)",
                                     (signal.value, items, len(payload), zlib.crc32(payload), payload))
        except sqlite3.OperationalError as error:
            if "full" in str(error):
                raise QueueFullError(f"persistent queue cannot grow: {error}") from None
            raise RetryableError(f"persistent queue cannot write: {error}") from None
        return cursor.lastrowid

    def get(self, key: int) -> bytes:
        # By key, as ``put`` returns it and ``remove`` takes it (the queue stores only the key).
        row = self.db.execute("SELECT signal, crc, payload FROM queue WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise CorruptEntry(f"entry {key} vanished")
        signal, crc, payload = row
        if signal not in _SIGNALS or zlib.crc32(payload) != crc:
            raise CorruptEntry(f"entry {key} fails its checksum")
        return payload

    def remove(self, key: int) -> None:
        self.db.execute("DELETE FROM queue WHERE key = ?", (key,))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _readable_keys(db: sqlite3.Connection) -> list[int]:
    """The keys a scan reaches from either end, oldest first.

    A damaged page ends a scan with "malformed"; scanning from both ends keeps
    the rows on either side of it, where one scan in key order would lose all.
    """
    keys: set[int] = set()
    for order in ("ASC", "DESC"):
        try:
            for (key,) in db.execute(f"SELECT key FROM queue ORDER BY key {order}"):
                keys.add(key)
        except sqlite3.DatabaseError:
            pass
    return sorted(keys)
