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
is skipped and counted. A file SQLite finds malformed, or whose WAL has
committed frames after one that fails its checksum (which SQLite would drop
without a word), is read page by page (``salvage``): its whole entries go to a
fresh file, the damaged one is moved aside, and what was lost is counted. So
corruption never becomes a crash loop.

A full disk must not wedge the queue. Deleting a delivered entry and
checkpointing the WAL both need a little room, so the queue refuses new
entries while the disk has less than ``RESERVE`` free (beyond what the entry
itself needs), rather than filling it to the last byte; if something else
fills the disk anyway, deletes that fail are kept in memory and retried by
``maintain``, and a file that cannot be opened at start is opened there later.
While entries remain, the pages freed by deletes take new entries; once the
queue is empty they are given back to the file system (VACUUM), and the WAL
is truncated.

The file is held in SQLite's exclusive locking mode: no shared-memory WAL
index, which a full disk can refuse and so fail the open of a file that only
needs reading, and a second process pointed at the same directory fails to
open the file ("database is locked") instead of replaying the same entries.

Every call here blocks; the queue runs them on one worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from relay.errors import QueueFullError, RetryableError
from relay.signals import Signal
from relay.sqlitefile import is_corruption, is_full, is_io_error, move_aside
from relay.storage.salvage import Salvage, read_wal, salvage

MIB = 1024 * 1024
# Room kept free on the disk: the WAL up to its checkpoint size, and the database
# growing by as much when that is checkpointed. Deletes need no more than that.
RESERVE = 2 * MIB
WAL_PAGES = 256                # checkpoint once the WAL holds this many pages (1 MiB of 4 KiB)
COMPACT_AT = 256               # free pages worth giving back once the queue is empty
COMPACT_INTERVAL = 1.0         # seconds between compactions forced by a short disk

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queue (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL,
    items INTEGER NOT NULL,
    size INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    payload BLOB NOT NULL)""",
    # How many entries the file holds, kept in the same transactions: a salvage compares
    # what it could read with it, so what a damaged page took is counted, not guessed.
    "CREATE TABLE IF NOT EXISTS tally (pending INTEGER NOT NULL)",
    "INSERT INTO tally SELECT count(*) FROM queue WHERE NOT EXISTS (SELECT 1 FROM tally)",
    "CREATE TRIGGER IF NOT EXISTS queue_put AFTER INSERT ON queue BEGIN UPDATE tally SET pending = pending + 1; END",
    "CREATE TRIGGER IF NOT EXISTS queue_take AFTER DELETE ON queue BEGIN UPDATE tally SET pending = pending - 1; END",
)
_OBJECTS = {"queue", "tally", "queue_put", "queue_take"}
_INSERT = "INSERT INTO queue (signal, items, size, crc, payload) VALUES (?, ?, ?, ?, ?)"

_SIGNALS = {signal.value: signal for signal in Signal}


class CorruptEntry(Exception):
    """A stored entry that cannot be delivered: bad checksum, unknown signal or unparsable."""


@dataclass(slots=True)
class Stored:
    key: int
    signal: Signal
    items: int
    size: int


@dataclass
class Damage:
    """A damaged file that was moved aside: what was kept from it and what was not."""

    moved_to: Path
    kept: int
    lost: int | None               # None: the file no longer says how many it held
    lost_is_upper_bound: bool
    reasons: list[str] = field(default_factory=list)

    def fields(self) -> dict:
        lost = "unknown" if self.lost is None else (f"at most {self.lost}" if self.lost_is_upper_bound and self.lost
                                                    else self.lost)
        return {"moved_to": str(self.moved_to), "entries_kept": self.kept, "entries_lost": lost,
                "damage": "; ".join(self.reasons)}


def free_bytes(directory: Path) -> int | None:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


class DiskQueueFile:
    def __init__(self, path: Path, *, fsync: bool = False, max_bytes: int = 0, free=free_bytes,
                 clock=time.monotonic):
        self.path = Path(path)
        self.fsync = fsync
        # A bound on the file, in SQLite pages: past it writes fail as on a full disk.
        self.max_bytes = max_bytes
        self.free = free               # free bytes on the disk under a directory; injectable for tests
        self.clock = clock
        self.log = None                # the owning exporter's logger, for what happens between requests
        self.on_damage = None          # told of each damaged file moved aside, to count what it lost
        self.db: sqlite3.Connection | None = None
        self.damage: Damage | None = None
        self.moved_aside: Path | None = None
        self.salvaged = 0
        self.lost: int | None = 0
        self.unavailable: str | None = None   # why the file could not be opened (a full disk); retried
        self.short: str | None = None         # why the disk is short of room, while it is
        self.pending = 0
        self._unremoved: list[int] = []       # delivered, but a full disk refused the delete
        self._next_compact = 0.0
        self._compact_due = False
        self._short_need = 0                  # the size of the entry a short disk last refused
        self._page = 4096

    # --- opening --------------------------------------------------------------------------

    def open(self) -> list[Stored]:
        """Open (creating or recovering) the file; returns the entries waiting in it, oldest first.

        On a disk too full to open or create it, returns nothing and leaves ``unavailable``
        saying why; ``maintain`` tries again. Any other failure to open raises OSError.
        """
        self._settle_interrupted_salvage()
        wal = self._read_wal()
        if wal is not None and wal.damaged:
            return self._rebuild(wal, "the WAL is damaged")
        if wal is not None and wal.torn:
            self._say("warning", "the persistent queue's WAL ends in frames that fail their checksum: "
                                 "a write cut short by a crash (never acknowledged), or damage to the last "
                                 "transaction", {"file": str(self.path), "frames": wal.torn,
                                                 "byte_offset": wal.bad_offset})
        try:
            self.db = self._connect(self.path)
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            entries = self._entries()
        except sqlite3.DatabaseError as error:
            self._drop_connection()
            if not isinstance(error, sqlite3.OperationalError) or is_corruption(error):
                return self._rebuild(self._read_wal(), str(error))
            if self._no_room(error):
                self._cannot_open(str(error))
                return []
            raise OSError(f"cannot open the persistent queue {self.path}: {error}") from None
        return self._opened(entries)

    def _opened(self, entries: list[Stored]) -> list[Stored]:
        if self.unavailable is not None:
            self._say("info", "the persistent queue is open: it accepts data again",
                      {"file": str(self.path), "requests": len(entries)})
        self.unavailable = None
        self.pending = len(entries)
        return entries

    def _cannot_open(self, why: str) -> None:
        if self.unavailable is None:
            self._say("error", "the persistent queue cannot be opened: its data is refused with "
                               "UNAVAILABLE until it can", {"file": str(self.path), "error": why})
        self.unavailable = f"cannot open {self.path.name}: {why}"

    def _read_wal(self):
        try:
            return read_wal(Path(str(self.path) + "-wal"))
        except OSError:
            return None

    def _connect(self, path: Path, bounded: bool = True) -> sqlite3.Connection:
        # Autocommit mode: each statement is its own transaction, with no implicit BEGINs.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # No shared-memory WAL index: a full disk cannot refuse one (an existing file
            # still opens and delivers), and no other process has any business in this file.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA temp_store=MEMORY")   # VACUUM of an empty queue: kept off a full disk
            # Zeroing each freed page (this SQLite's default) writes a delete's whole payload to the
            # WAL again: a full disk could then not delete, and so never drain. FAST zeroes only
            # the pages a delete writes anyway.
            db.execute("PRAGMA secure_delete=FAST")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            self._page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * self._page}")
            names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if not _OBJECTS <= names:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute("COMMIT")
                except sqlite3.OperationalError as error:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    # A file from before the tally still works without it; a new file does not.
                    if "queue" not in names or not is_full(error):
                        raise
            if self.max_bytes and bounded:
                db.execute(f"PRAGMA max_page_count={max(2, self.max_bytes // self._page)}")
        except BaseException:
            db.close()
            raise
        return db

    def _drop_connection(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _entries(self) -> list[Stored]:
        out = []
        for key, signal, items, size in self.db.execute("SELECT key, signal, items, size FROM queue ORDER BY key"):
            out.append(Stored(key, _SIGNALS.get(signal, Signal.TRACES), items, size))
        return out

    # --- a damaged file -------------------------------------------------------------------

    def _salvage_path(self) -> Path:
        return self.path.with_name(self.path.name + ".salvage")

    def _settle_interrupted_salvage(self) -> None:
        # A rebuilt file is complete before the damaged one moves aside: with the original
        # gone it is the queue; with the original still there it may be half written.
        rebuilt = self._salvage_path()
        if not rebuilt.exists():
            return
        if self.path.exists():
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(rebuilt) + suffix).unlink(missing_ok=True)
        else:
            os.replace(rebuilt, self.path)

    def _rebuild(self, wal, reason: str) -> list[Stored]:
        """Copy every whole entry to a fresh file, move the damaged one aside, count what was lost."""
        free = self.free(self.path.parent)
        if free is not None and free < RESERVE:
            # Reading a large file again every second, only to fail writing the copy, helps nobody.
            self._cannot_open(f"{reason}, and salvaging it needs room: only {_mib(free)} free")
            return []
        try:
            found = salvage(self.path, wal, _SIGNALS)
        except OSError as error:
            found = Salvage(lost=None, reasons=[f"the file cannot be read: {error}"])
        rebuilt = self._salvage_path()
        db = None
        try:
            db = self._connect(rebuilt, bounded=False)   # its rows fitted the bound once already
            db.execute("BEGIN")
            db.executemany("INSERT INTO queue (key, signal, items, size, crc, payload) VALUES (?, ?, ?, ?, ?, ?)",
                           found.rows)
            db.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if db is not None:
                db.close()
                db = None
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(rebuilt) + suffix).unlink(missing_ok=True)
            if self._no_room(error):
                self._cannot_open(f"a damaged file needs room to be salvaged: {error}")
                return []
            raise OSError(f"cannot salvage the persistent queue {self.path}: {error}") from None
        finally:
            if db is not None:
                db.close()
        self.moved_aside = move_aside(self.path)
        os.replace(rebuilt, self.path)
        self.salvaged = len(found.rows)
        self.lost = found.lost
        self.damage = Damage(self.moved_aside, len(found.rows), found.lost, found.lost_is_upper_bound,
                             [reason] + found.reasons)
        if self.on_damage is not None:
            self.on_damage(self.damage)
        try:
            self.db = self._connect(self.path)
        except sqlite3.OperationalError as error:
            if not self._no_room(error):
                raise OSError(f"cannot open the persistent queue {self.path}: {error}") from None
            self._cannot_open(str(error))    # the rebuilt file is in place for the next attempt
            return []
        return self._opened(self._entries())

    # --- entries --------------------------------------------------------------------------

    def put(self, signal: Signal, items: int, payload: bytes) -> int:
        if self.db is None:
            raise QueueFullError(f"persistent queue cannot grow: {self.unavailable}")
        self._make_room(len(payload))
        try:
            cursor = self.db.execute(_INSERT, (signal.value, items, len(payload), zlib.crc32(payload), payload))
        except sqlite3.OperationalError as error:
            if is_full(error):
                self._note_short(str(error), len(payload))
                raise QueueFullError(f"persistent queue cannot grow: {error}") from None
            raise RetryableError(f"persistent queue cannot write: {error}") from None
        self.pending += 1
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
        try:
            self.db.execute("DELETE FROM queue WHERE key = ?", (key,))
        except sqlite3.OperationalError as error:
            if not is_full(error):
                raise
            # Delivered all the same: deleted once there is room (sent again if the relay
            # restarts before then, which at-least-once delivery allows).
            self._unremoved.append(key)
            self.pending -= 1
            self._note_short(str(error), 0)
            return
        self.pending -= 1
        if self._unremoved:
            self._delete_unremoved()
        if self.pending <= 0 and not self._unremoved and self._free_pages() >= COMPACT_AT:
            now = self.clock()
            if now >= self._next_compact:
                self._next_compact = now + COMPACT_INTERVAL
                self._compact()
            else:
                self._compact_due = True       # left to ``maintain``, so a burst of drains costs one

    # --- room -----------------------------------------------------------------------------

    def _free_pages(self) -> int:
        try:
            return self.db.execute("PRAGMA freelist_count").fetchone()[0]
        except sqlite3.Error:
            return 0

    def _fits(self, free: int, size: int) -> bool:
        """Whether an entry of ``size`` bytes leaves the reserve free: it goes into the WAL, then
        into the database at the checkpoint, which grows unless free pages inside take it."""
        if free - 2 * size >= RESERVE:
            return True
        # The WAL file's own length is room too: after a checkpoint it is written over from the start.
        try:
            free += os.stat(str(self.path) + "-wal").st_size
        except OSError:
            pass
        spare = self._free_pages() * self._page
        return free - size - max(0, size - spare) >= RESERVE

    def _make_room(self, size: int) -> None:
        free = self.free(self.path.parent)
        if free is None or self._fits(free, size):
            return
        now = self.clock()
        if now >= self._next_compact:
            self._next_compact = now + COMPACT_INTERVAL
            self._compact()
            free = self.free(self.path.parent)
            if free is None or self._fits(free, size):
                return
        why = (f"its disk is full: {_mib(free)} free, and the queue keeps {_mib(RESERVE)} free so that "
               "it can still deliver and delete what it holds")
        self._note_short(why, size, measured=True)
        raise QueueFullError(f"persistent queue cannot grow: {why}")

    def _note_short(self, why: str, size: int, measured: bool = False) -> None:
        """Enter (and log, once) the state where the disk is short of room, retried by ``maintain``."""
        if not measured:
            free = self.free(self.path.parent)
            if free is not None and free >= RESERVE and not self._unremoved:
                return                 # SQLite said full with room on the disk: the file's own bound
        if self.short is None:
            self._say("warning", "the disk under the persistent queue is full: new data is refused with "
                                 "UNAVAILABLE until there is room", {"file": str(self.path), "error": why})
        self.short = why
        self._short_need = size

    def _delete_unremoved(self) -> None:
        while self._unremoved:
            keys = self._unremoved[:500]
            try:
                self.db.execute(f"DELETE FROM queue WHERE key IN ({', '.join('?' * len(keys))})", keys)
            except sqlite3.OperationalError as error:
                if is_full(error):
                    return
                raise
            del self._unremoved[:len(keys)]

    def _compact(self) -> None:
        """Empty the WAL, and give the free pages of a file that holds no entries back to the
        file system. Best effort: on a full disk it fails, and is tried again later."""
        try:
            if self.pending <= 0 and not self._unremoved and self._free_pages():
                # Rebuilding an empty table writes a handful of pages. Incremental vacuum was
                # measured writing about as much WAL as it freed, which a full disk cannot take.
                self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass   # nothing is lost: the free pages still take new entries, the WAL still works

    def _no_room(self, error: sqlite3.Error) -> bool:
        if is_full(error):
            return True
        free = self.free(self.path.parent)
        return is_io_error(error) and free is not None and free < RESERVE

    # --- between requests -----------------------------------------------------------------

    @property
    def needs_maintenance(self) -> bool:
        return self.db is None or bool(self._unremoved) or self.short is not None or self._compact_due

    def maintain(self) -> list[Stored]:
        """Retry what a full disk stopped: opening the file, deletes, the checkpoint.

        Returns the entries found in a file opened only now (the queue takes them up).
        """
        if self.db is None:
            return self.open()
        self._delete_unremoved()
        if self.short is not None or self._compact_due:
            self._compact_due = False
            self._next_compact = self.clock() + COMPACT_INTERVAL
            self._compact()
        if self.short is not None:
            free = self.free(self.path.parent)
            # Room for what was refused, not merely the reserve: else one request too big for
            # what is left would flip the state (and its log lines) every second.
            if not self._unremoved and (free is None or self._fits(free, self._short_need)):
                self._say("info", "the disk under the persistent queue has room again",
                          {"file": str(self.path), "free": _mib(free) if free is not None else "unknown"})
                self.short = None
        return []

    def close(self) -> None:
        if self.db is not None:
            try:
                self._delete_unremoved()
            except sqlite3.Error:
                pass
            if self._unremoved:
                self._say("warning", "delivered entries could not be deleted for want of disk room: "
                                     "they are sent again at the next start", {"requests": len(self._unremoved)})
            self.db.close()
            self.db = None

    def _say(self, level: str, message: str, fields: dict) -> None:
        if self.log is not None:
            getattr(self.log, level)(message, fields=fields)
