"""Reading a damaged queue file byte by byte: its WAL, its pages, the rows still whole.

Why not through SQLite: it refuses a file shorter than its header says ("malformed")
and so keeps none of a truncated file; it stops replaying the WAL at the first frame
that fails its checksum and says nothing of the committed frames after it; and a
connection closed on a damaged file checkpoints into it, changing what the operator
is left to investigate. Here the files are only read.

The SQLite file format and the WAL format are public and stable. Rows are reached
from the queue table's root page, so that only live rows come back (a freed page
still holds the rows that were on it); where an interior page is lost, pages that
no walk reached are scanned for the rows of the key range it covered. Every row
is kept only with its CRC-32 intact.

What was lost is counted against the ``tally`` table (the number of entries the
queue held at its last commit, kept by triggers in the same transactions) and,
for a damaged WAL, against ``sqlite_sequence`` as the frames after the damage
left it (how many keys were handed out after it).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

WAL_MAGIC = (0x377F0682, 0x377F0683)  # little-endian, big-endian checksums
_WAL_HEADER, _FRAME_HEADER = 32, 24
_INTERIOR, _LEAF = 0x05, 0x0D
_MAX_DEPTH = 32                        # a b-tree of 4 KiB pages is far shallower; a loop is not


# --- the WAL -----------------------------------------------------------------------------

def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for first, second in zip(words[0::2], words[1::2]):
        s0 = (s0 + first + s1) & 0xFFFFFFFF
        s1 = (s1 + second + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass
class Wal:
    """Which frame holds each page: as SQLite replays the WAL, and as the frames after its
    first bad one (when they are intact) left it."""

    page_size: int = 0
    frames: int = 0                    # frames in the file with the header's salts
    replayed: int = 0                  # frames SQLite replays: up to the last commit before a bad frame
    bad_offset: int | None = None      # byte offset of the first frame (or header) that fails its checksum
    lost_frames: int = 0               # intact frames after it, which SQLite does not replay
    lost_commits: int = 0              # transactions among them
    bad_frames: int = 0                # frames with the header's salts that fail their checksum
    replay: dict[int, int] = field(default_factory=dict)   # page -> offset of its page image
    after: dict[int, int] = field(default_factory=dict)    # page -> offset, frames past the replayed ones

    @property
    def damaged(self) -> bool:
        """Committed transactions that SQLite would drop without a word."""
        return self.lost_commits > 0

    @property
    def torn(self) -> int:
        """Bad frames with no commit after them: a write a crash cut short (never acknowledged),
        or damage to the last transaction, which nothing here can tell apart."""
        return 0 if self.damaged else self.bad_frames


def read_wal(path: Path) -> Wal | None:
    """The WAL at ``path``, or None when there is none worth reading (absent, empty, no header)."""
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        header = handle.read(_WAL_HEADER)
        if len(header) < _WAL_HEADER:
            return None
        magic, _, page_size, _, salt1, salt2, c0, c1 = struct.unpack(">8I", header)
        if not (512 <= page_size <= 65536 and page_size & (page_size - 1) == 0):
            return None
        big = magic == WAL_MAGIC[1]
        wal = Wal(page_size=page_size)
        header_ok = magic in WAL_MAGIC and _checksum(header[:24], 0, 0, big) == (c0, c1)
        if not header_ok:
            wal.bad_offset = 0
        seed = (c0, c1)                # each frame's checksum continues from the one before it
        chained = header_ok            # still on the unbroken chain SQLite follows
        frame_size = _FRAME_HEADER + page_size
        offset = _WAL_HEADER
        pending: dict[int, int] = {}   # frames of a transaction whose commit frame is not read yet
        index = 0
        while True:
            frame = handle.read(frame_size)
            if len(frame) < frame_size:
                break
            index += 1
            page, commit, s1, s2, f0, f1 = struct.unpack(">6I", frame[:_FRAME_HEADER])
            if (s1, s2) != (salt1, salt2):
                # A frame of an earlier generation of the file, left past the end of this one
                # (or one whose salt was damaged: then intact frames follow it).
                if chained:
                    chained = False
                    wal.bad_offset = offset
                    wal.after.update(pending)
                    wal.lost_frames += len(pending)
                    pending.clear()
                seed = (f0, f1)
                offset += frame_size
                continue
            wal.frames += 1
            intact = page != 0 and _checksum(frame[:8] + frame[_FRAME_HEADER:], *seed, big) == (f0, f1)
            seed = (f0, f1)
            image = offset + _FRAME_HEADER
            if chained and intact:
                pending[page] = image
                if commit:
                    wal.replay.update(pending)
                    pending.clear()
                    wal.replayed = index
            else:
                if chained:
                    chained = False
                    wal.bad_offset = offset
                    wal.after.update(pending)      # an open transaction that may commit past the damage
                    wal.lost_frames += len(pending)
                    pending.clear()
                if intact:
                    wal.after[page] = image
                    wal.lost_frames += 1
                    wal.lost_commits += bool(commit)
                else:
                    wal.bad_frames += 1
            offset += frame_size
        if chained:
            pending.clear()            # an unfinished transaction: never acknowledged, rightly dropped
        return wal


# --- pages -------------------------------------------------------------------------------

class Pages:
    """Page images of the database file with the WAL's frames laid over it."""

    def __init__(self, path: Path, wal: Wal | None, past_damage: bool = False):
        self.wal = wal
        self.past_damage = past_damage     # lay the intact frames after the WAL's damage over too
        self.handle = open(path, "rb")
        try:
            self.wal_handle = open(str(path) + "-wal", "rb") if wal is not None else None
        except OSError:
            self.handle.close()
            raise
        head = self.handle.read(100)
        size, self.reserved = 0, 0
        if len(head) >= 100 and head.startswith(b"SQLite format 3\x00"):
            size = struct.unpack(">H", head[16:18])[0]
            size = 65536 if size == 1 else size
            self.reserved = head[20]
        if not (512 <= size <= 65536 and size & (size - 1) == 0):
            # A header too damaged to say: the WAL's page size, else SQLite's default.
            size = wal.page_size if wal is not None and wal.page_size else 4096
        self.size = size
        self.usable = size - self.reserved
        self.file_pages = os.fstat(self.handle.fileno()).st_size // size   # a torn last page is lost

    def close(self) -> None:
        self.handle.close()
        if self.wal_handle is not None:
            self.wal_handle.close()

    def last_page(self) -> int:
        numbers = [self.file_pages]
        if self.wal is not None:
            numbers += self.wal.replay
            if self.past_damage:
                numbers += self.wal.after
        return max(numbers)

    def get(self, number: int) -> bytes | None:
        if number < 1:
            return None
        if self.wal is not None:
            offset = (self.wal.after.get(number) if self.past_damage else None) or self.wal.replay.get(number)
            if offset is not None:
                self.wal_handle.seek(offset)
                return self.wal_handle.read(self.size)
        if number > self.file_pages:
            return None                # past the end of a truncated file
        return os.pread(self.handle.fileno(), self.size, (number - 1) * self.size)


# --- b-tree pages and records ------------------------------------------------------------

def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


class Damaged(Exception):
    """A page or a row that does not read as what it should be."""


def _header(page: bytes, number: int) -> tuple[int, int, int]:
    """(kind, cell count, offset of the cell pointers) of a table b-tree page."""
    base = 100 if number == 1 else 0
    kind = page[base]
    if kind not in (_INTERIOR, _LEAF):
        raise Damaged(f"page {number} is not a table b-tree page")
    cells = struct.unpack(">H", page[base + 3:base + 5])[0]
    pointers = base + (12 if kind == _INTERIOR else 8)
    if pointers + 2 * cells > len(page):
        raise Damaged(f"page {number} claims {cells} cells")
    return kind, cells, pointers


def _cell_offsets(page: bytes, cells: int, pointers: int, usable: int) -> list[int]:
    offsets = list(struct.unpack(f">{cells}H", page[pointers:pointers + 2 * cells]))
    if any(not pointers + 2 * cells <= at < usable for at in offsets):
        raise Damaged("a cell pointer points outside its page")
    return offsets


def interior_cells(page: bytes, number: int, usable: int) -> tuple[list[tuple[int, int]], int]:
    """([(child, highest key in it)], right-most child) of an interior table page."""
    kind, cells, pointers = _header(page, number)
    if kind != _INTERIOR:
        raise Damaged(f"page {number} is a leaf")
    base = 100 if number == 1 else 0
    right = struct.unpack(">I", page[base + 8:base + 12])[0]
    out = []
    for at in _cell_offsets(page, cells, pointers, usable):
        child = struct.unpack(">I", page[at:at + 4])[0]
        key, _ = _varint(page, at + 4)
        out.append((child, key))
    keys = [key for _, key in out]
    if keys != sorted(keys):
        raise Damaged(f"page {number} has its keys out of order")
    return out, right


def leaf_cells(page: bytes, number: int, pages: Pages) -> list[tuple[int, bytes | None]]:
    """[(key, record or None where its overflow chain is broken)] of a leaf table page."""
    kind, cells, pointers = _header(page, number)
    if kind != _LEAF:
        raise Damaged(f"page {number} is an interior page")
    usable = pages.usable
    most = usable - 35
    least = ((usable - 12) * 32 // 255) - 23
    out = []
    for at in _cell_offsets(page, cells, pointers, usable):
        size, at = _varint(page, at)
        key, at = _varint(page, at)
        local = size
        if size > most:
            local = least + (size - least) % (usable - 4)
            local = local if local <= most else least
        if at + local > usable:
            raise Damaged(f"a cell of page {number} runs past its end")
        record = page[at:at + local]
        if local < size:
            record = _overflow(record, size, struct.unpack(">I", page[at + local:at + local + 4])[0], pages)
        out.append((key, record))
    return out


def _overflow(record: bytes, size: int, first: int, pages: Pages) -> bytes | None:
    parts, have, number, seen = [record], len(record), first, set()
    while have < size:
        if number in seen:
            return None
        seen.add(number)
        page = pages.get(number)
        if page is None:
            return None
        chunk = page[4:pages.usable][:size - have]
        parts.append(chunk)
        have += len(chunk)
        number = struct.unpack(">I", page[:4])[0]
    return b"".join(parts)


def decode_record(record: bytes) -> list:
    header, at = _varint(record, 0)
    if not 1 <= header <= len(record):
        raise Damaged("a record header runs past the record")
    types = []
    while at < header:
        kind, at = _varint(record, at)
        types.append(kind)
    values, at = [], header
    for kind in types:
        if kind == 0:
            values.append(None)
        elif kind in (8, 9):
            values.append(kind - 8)
        elif 1 <= kind <= 6:
            width = (1, 2, 3, 4, 6, 8)[kind - 1]
            values.append(int.from_bytes(record[at:at + width], "big", signed=True))
            at += width
        elif kind == 7:
            values.append(struct.unpack(">d", record[at:at + 8])[0])
            at += 8
        elif kind >= 12:
            width = (kind - 12) // 2
            chunk = record[at:at + width]
            values.append(chunk if kind % 2 == 0 else chunk.decode("utf-8", "replace"))
            at += width
        else:
            raise Damaged("a record uses a reserved serial type")
        if at > len(record):
            raise Damaged("a record runs past its end")
    return values


# --- walking a table ---------------------------------------------------------------------

@dataclass
class Table:
    rows: dict[int, bytes | None] = field(default_factory=dict)   # key -> record (None: unreadable)
    holes: list[tuple[int, int]] = field(default_factory=list)     # key ranges (low, high] under lost pages
    visited: set[int] = field(default_factory=set)


def walk(pages: Pages, root: int) -> Table:
    table = Table()
    # (page, keys above, keys up to, depth); bounded by the visited set and the depth cap.
    stack = [(root, -(1 << 63), (1 << 63) - 1, 0)]
    while stack:
        number, low, high, depth = stack.pop()
        page = pages.get(number) if number not in table.visited and depth < _MAX_DEPTH else None
        table.visited.add(number)
        try:
            if page is None:
                raise Damaged(f"page {number} is missing")
            kind = page[100 if number == 1 else 0]
            if kind == _INTERIOR:
                children, right = interior_cells(page, number, pages.usable)
                bounds = [low] + [key for _, key in children]
                for (child, key), above in zip(children, bounds):
                    stack.append((child, above, min(key, high), depth + 1))
                stack.append((right, max(bounds[-1], low), high, depth + 1))
            else:
                for key, record in leaf_cells(page, number, pages):
                    if low < key <= high:   # a misplaced page does not speak for other ranges
                        table.rows.setdefault(key, record)
        except (Damaged, IndexError, struct.error, ValueError):
            table.holes.append((low, high))
    return table


def free_pages(pages: Pages) -> set[int]:
    """The freelist (trunk and leaf pages) as page 1 records it; best effort."""
    first = pages.get(1)
    if first is None:
        return set()
    trunk, count = struct.unpack(">II", first[32:40])
    out: set[int] = set()
    while trunk and trunk not in out and len(out) <= count:
        out.add(trunk)
        page = pages.get(trunk)
        if page is None:
            break
        following, leaves = struct.unpack(">II", page[:8])
        leaves = min(leaves, (pages.usable - 8) // 4)
        out.update(struct.unpack(f">{leaves}I", page[8:8 + 4 * leaves]))
        trunk = following
    return out


def orphan_rows(pages: Pages, table: Table, skip: set[int]) -> dict[int, bytes | None]:
    """Rows in the key ranges under lost interior pages, from leaf pages no walk reached."""
    found: dict[int, bytes | None] = {}
    if not table.holes:
        return found
    for number in range(2, pages.last_page() + 1):
        if number in table.visited or number in skip:
            continue
        page = pages.get(number)
        if page is None or page[0] != _LEAF:
            continue
        try:
            cells = leaf_cells(page, number, pages)
        except (Damaged, IndexError, struct.error, ValueError):
            continue
        for key, record in cells:
            if key not in table.rows and any(low < key <= high for low, high in table.holes):
                found.setdefault(key, record)
    return found


# --- the queue file ----------------------------------------------------------------------

@dataclass
class Salvage:
    rows: list[tuple] = field(default_factory=list)   # (key, signal, items, size, crc, payload), oldest first
    lost: int | None = 0           # entries known to be lost; None when the file no longer says
    lost_is_upper_bound: bool = False
    reasons: list[str] = field(default_factory=list)  # what was wrong, for the log


def _schema(pages: Pages) -> dict[str, int]:
    roots = {}
    for record in walk(pages, 1).rows.values():
        try:
            values = decode_record(record) if record is not None else []
        except (Damaged, IndexError, struct.error):
            continue
        if len(values) == 5 and values[0] == "table" and isinstance(values[3], int):
            roots[values[1]] = values[3]
    return roots


def _queue_row(key: int, record: bytes | None, signals) -> tuple | None:
    if record is None:
        return None
    try:
        values = decode_record(record)
    except (Damaged, IndexError, struct.error):
        return None
    if len(values) != 6 or values[0] is not None:
        return None
    _, signal, items, size, crc, payload = values
    if (signal not in signals or not isinstance(items, int) or not isinstance(payload, bytes)
            or size != len(payload) or zlib.crc32(payload) != crc):
        return None
    return (key, signal, items, size, crc, payload)


def _single_value(pages: Pages, root: int | None, column: int, where=None) -> int | None:
    """An integer from a one-page table (``sqlite_sequence``, ``tally``) as ``pages`` show it."""
    if root is None:
        return None
    page = pages.get(root)
    if page is None:
        return None
    try:
        for _, record in leaf_cells(page, root, pages):
            values = decode_record(record) if record is not None else []
            if len(values) > column and (where is None or where(values)) and isinstance(values[column], int):
                return values[column]
    except (Damaged, IndexError, struct.error, ValueError):
        return None
    return None


def salvage(path: Path, wal: Wal | None, signals) -> Salvage:
    """Every whole queue entry in the file at ``path`` (and its WAL), and what could not be read."""
    result = Salvage()
    pages = Pages(path, wal)
    try:
        roots = _schema(pages)
        kept: dict[int, tuple] = {}
        if "queue" not in roots and wal is not None and wal.damaged:
            # Nothing was checkpointed before the damage, not even the schema: the queue held
            # nothing then, and all there is lies in the frames after it.
            later = Pages(path, wal, past_damage=True)
            try:
                roots = _schema(later)
            finally:
                later.close()
            if "queue" in roots:
                _past_damage(path, wal, roots, kept, result, signals, pages)
                result.rows = [kept[key] for key in sorted(kept)]
                return result
        if "queue" not in roots:
            result.lost = None
            result.reasons.append("the schema page is unreadable: no entry can be found")
            return result
        _before_damage(pages, roots, kept, result, signals)
        if wal is not None and wal.damaged:
            _past_damage(path, wal, roots, kept, result, signals, pages)
        result.rows = [kept[key] for key in sorted(kept)]
        return result
    finally:
        pages.close()


def _before_damage(pages: Pages, roots: dict, kept: dict, result: Salvage, signals) -> None:
    """The entries of the database as SQLite would show it, counted against its tally."""
    table = walk(pages, roots["queue"])
    table.rows.update(orphan_rows(pages, table, free_pages(pages)))
    broken = 0
    for key, record in table.rows.items():
        row = _queue_row(key, record, signals)
        if row is None:
            broken += 1
        else:
            kept[key] = row
    if table.holes:
        result.reasons.append(f"{len(table.holes)} page(s) of the queue table are missing or unreadable")
    if broken:
        result.reasons.append(f"{broken} entr{'y fails' if broken == 1 else 'ies fail'} to read whole "
                              "(a damaged overflow page or checksum)")
    tally = _single_value(pages, roots.get("tally"), 0)
    if tally is not None and tally >= len(kept):
        result.lost = tally - len(kept)
    elif table.holes:
        result.lost = None
    else:
        result.lost = broken


def _past_damage(path, wal: Wal, roots: dict, kept: dict, result: Salvage, signals, before: Pages) -> None:
    """Entries committed after the WAL's first bad frame, read from the intact frames there."""
    def is_queue(values):
        return values and values[0] == "queue"

    start = _single_value(before, roots.get("sqlite_sequence"), 1, is_queue)
    start = start if start is not None else max(kept, default=0)
    tally_before = _single_value(before, roots.get("tally"), 0)
    after = Pages(path, wal, past_damage=True)
    try:
        end = _single_value(after, roots.get("sqlite_sequence"), 1, is_queue)
        tally_after = _single_value(after, roots.get("tally"), 0)
        found = 0
        for number in sorted(wal.after):
            page = after.get(number)
            if page is None or page[100 if number == 1 else 0] != _LEAF:
                continue
            try:
                cells = leaf_cells(page, number, after)
            except (Damaged, IndexError, struct.error, ValueError):
                continue
            for key, record in cells:
                if key > start and key not in kept:
                    row = _queue_row(key, record, signals)
                    if row is not None:
                        kept[key] = row
                        found += 1
    finally:
        after.close()
    written = (end - start) if end is not None and end >= start else None
    result.reasons.append(
        f"the WAL fails its checksum at byte {wal.bad_offset}: {wal.lost_frames} intact frame(s) "
        f"({wal.lost_commits} transaction(s)) after it are not replayed by SQLite; "
        f"{found} entr{'y' if found == 1 else 'ies'} recovered from them")
    if written is None:
        result.lost = None
        return
    missing = max(0, written - found)
    # Deletions after the damage may have taken some of these keys already (delivered):
    # then ``missing`` counts them too, and is a bound rather than a count.
    removed = None
    if tally_before is not None and tally_after is not None:
        removed = written - (tally_after - tally_before)
    result.lost_is_upper_bound = result.lost_is_upper_bound or removed != 0
    if result.lost is not None:
        result.lost += missing
