"""The persistent sending queue: one SQLite file per exporter, kept in a file_storage directory.

What is checked is the promise to the operator: an acknowledged request is on
disk, survives a restart and a kill -9, is replayed oldest first and deleted
once delivered; a damaged entry or file costs that entry (or file), counted,
never the relay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import zlib
from pathlib import Path

import grpc
import pytest

from relay.component import ComponentID, Host, Settings
from relay.errors import QueueFullError, RetryableError
from relay.exporters.helper.queue import DiskStore, QueueSender, sizer
from relay.extensions import file_storage
from relay.retry import RetrySender, Stopper
from relay.signals import Signal, signal_of
from relay.storage.disk_queue import DiskQueueFile
from tests.support import kill_after_commit, logs_request, metrics_request, traces_request
from tests.test_exporter_helper import (
    EXPORTER,
    GatedTransport,
    Harness,
    records,
    retry_config,
    until,
)

KEPT = "undelivered requests kept on disk for the next start"
LOST = "undelivered requests lost at shutdown (the queue is in memory)"


# --- helpers ----------------------------------------------------------------------------


class Storage:
    """A started file_storage extension in ``tmp_path`` and the Host that exposes it."""

    def __init__(self, tmp_path: Path, name: str = "file_storage"):
        self.id = ComponentID.parse(name)
        self.extension = file_storage.create(Settings(self.id, None), file_storage.Config(directory=str(tmp_path / "queues"), create_directory=True))
        asyncio.run(self.extension.start())
        self.host = Host({self.id: self.extension})
        self.path = self.extension.queue_file(ComponentID.parse(EXPORTER)).path

    def harness(self, endpoint: str = "127.0.0.1:1", *, queue: dict | None = None, **settings) -> Harness:
        return Harness(endpoint, host=self.host,
                       sending_queue={"storage": str(self.id), "num_consumers": 1, **(queue or {})}, **settings)


def rows(path: Path) -> list[tuple]:
    """(key, signal, items) of every row, read with sqlite3 directly."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT key, signal, items FROM queue ORDER BY key").fetchall()
    finally:
        db.close()


def fill(path: Path, requests: list) -> list[int]:
    """Enqueue ``requests`` into the file at ``path`` as an earlier run would have; returns their keys."""
    file = DiskQueueFile(path)
    file.open()
    try:
        return [file.put(signal_of(r), signal_of(r).count(r), r.SerializeToString()) for r in requests]
    finally:
        file.close()


class AlwaysDown:
    """A transport-level sender that refuses every attempt, retryably."""

    def __init__(self):
        self.attempts = 0

    async def send(self, request) -> None:
        self.attempts += 1
        raise RetryableError("downstream is down")


class DiskQueue:
    """A QueueSender over a DiskQueueFile, with retry in front of a downstream that is down.

    Closed as ``Stack.shutdown`` does it (stop retrying, then drain), so every request
    accepted stays on disk; ``left`` records what the queue said it kept.
    """

    def __init__(self, file: DiskQueueFile, capacity: int = 1000, sizer_kind: str = "requests"):
        self.down = AlwaysDown()
        self.stopper = Stopper()
        retry = RetrySender(self.down, retry_config(initial_interval=3600, max_interval=3600, max_elapsed_time=0),
                            self.stopper)
        self.left: list = []
        self.reports: list = []
        self.queue = QueueSender(retry.send, DiskStore(file, sizer(sizer_kind)), capacity=capacity,
                                 sizer_kind=sizer_kind, consumers=1,
                                 report=lambda entry, error: self.reports.append((entry, error)),
                                 skipped=lambda entry, reason: self.reports.append((entry, reason)),
                                 left=lambda entries, persistent: self.left.append((len(entries), persistent)))

    async def close(self) -> None:
        self.stopper.stop()
        await self.queue.close()


# --- the file ---------------------------------------------------------------------------

def test_the_file_is_in_wal_mode(tmp_path):
    file = DiskQueueFile(tmp_path / "q.sqlite")
    file.open()
    file.close()
    db = sqlite3.connect(tmp_path / "q.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_entries_survive_reopen_oldest_first(tmp_path):
    path = tmp_path / "q.sqlite"
    requests = [traces_request(spans=3), metrics_request(), logs_request(), traces_request(spans=1)]
    keys = fill(path, requests)
    assert keys == sorted(keys)

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert [(s.key, s.signal, s.items) for s in stored] == [
            (keys[0], Signal.TRACES, 3), (keys[1], Signal.METRICS, 5), (keys[2], Signal.LOGS, 4),
            (keys[3], Signal.TRACES, 1)]
        assert [s.size for s in stored] == [r.ByteSize() for r in requests]
        for entry, request in zip(stored, requests):
            assert entry.signal.request_type.FromString(file.get(entry.key)) == request
        assert file.moved_aside is None
    finally:
        file.close()


def test_the_exporter_replays_the_disk_queue_oldest_first_and_deletes_what_it_delivered(tmp_path, component_log):
    storage = Storage(tmp_path)
    requests = [traces_request(spans=3), metrics_request(), logs_request(), traces_request(spans=1)]
    fill(storage.path, requests)
    transport = GatedTransport()
    h = storage.harness(transport=transport)

    async def run():
        async with h:
            transport.gate.set()
            assert await until(lambda: len(transport.delivered) == 4)
            assert await until(lambda: h.queue_size() == 0)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert transport.delivered == requests
    assert (h.sent(Signal.TRACES), h.sent(Signal.METRICS), h.sent(Signal.LOGS)) == (4, 5, 4)
    [record] = records(component_log, "replaying the persistent queue")
    assert record.fields == {"requests": 4, "items": 13}
    assert rows(storage.path) == []
    assert not records(component_log, KEPT)


def test_an_altered_payload_is_skipped_and_counted_and_the_rest_delivered(tmp_path, component_log):
    storage = Storage(tmp_path)
    requests = [traces_request(spans=1), traces_request(spans=2), traces_request(spans=3)]
    keys = fill(storage.path, requests)
    db = sqlite3.connect(storage.path)
    payload = bytearray(db.execute("SELECT payload FROM queue WHERE key = ?", (keys[1],)).fetchone()[0])
    payload[-1] ^= 0x01  # one flipped bit: still parses, so only the checksum can tell
    assert signal_of(requests[1]).request_type.FromString(bytes(payload)) != requests[1]
    db.execute("UPDATE queue SET payload = ? WHERE key = ?", (bytes(payload), keys[1]))
    db.commit()
    db.close()
    transport = GatedTransport()
    h = storage.harness(transport=transport)

    async def run():
        async with h:
            transport.gate.set()
            assert await until(lambda: h.skipped() == 1 and len(transport.delivered) == 2)
            assert await until(lambda: h.queue_size() == 0)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert transport.delivered == [requests[0], requests[2]]
    assert h.sent(Signal.TRACES) == 4
    assert h.failed(Signal.TRACES, True) == h.failed(Signal.TRACES, False) == 0
    [record] = records(component_log, "skipped a persistent-queue entry")
    assert record.levelno == logging.ERROR
    assert "checksum" in record.fields["reason"] and record.fields["signal"] == "traces"
    assert rows(storage.path) == []   # skipped once, not again at every start


def test_a_payload_that_does_not_parse_is_skipped(tmp_path, component_log):
    storage = Storage(tmp_path)
    keys = fill(storage.path, [logs_request(), logs_request()])
    garbled = b"\x0a\xff"  # field 1, length 255, then nothing: a truncated message, with a valid CRC
    db = sqlite3.connect(storage.path)
    db.execute("UPDATE queue SET payload = ?, crc = ? WHERE key = ?", (garbled, zlib.crc32(garbled), keys[0]))
    db.commit()
    db.close()
    transport = GatedTransport()
    h = storage.harness(transport=transport)

    async def run():
        async with h:
            transport.gate.set()
            assert await until(lambda: h.skipped() == 1 and len(transport.delivered) == 1)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert transport.delivered == [logs_request()]
    [record] = records(component_log, "skipped a persistent-queue entry")
    assert "does not parse" in record.fields["reason"]


def test_a_garbage_file_is_moved_aside_and_the_queue_starts_empty(tmp_path):
    storage = Storage(tmp_path)
    garbage = b"this is not an SQLite database\n" * 300
    storage.path.write_bytes(garbage)
    transport = GatedTransport()
    h = storage.harness(transport=transport)

    async def run():
        async with h:  # starts: no exception
            assert not h.exporter.queue.pending
            transport.gate.set()
            assert await h.consume(traces_request(spans=2)) is None
            assert await until(lambda: h.sent(Signal.TRACES) == 2)

    asyncio.run(asyncio.wait_for(run(), 10))
    # The operator hears of it: one error line and the skipped counter.
    assert h.registry.get_sample_value("otelcol_exporter_queue_skipped_entries_total",
                                       {"exporter": EXPORTER}) == 1
    [aside] = [p for p in storage.path.parent.iterdir()
               if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert re.fullmatch(re.escape(storage.path.name) + r"\.corrupt-\d+", aside.name)
    assert aside.read_bytes() == garbage  # kept, untouched, for whoever investigates
    file = DiskQueueFile(storage.path)
    assert file.open() == []
    file.close()
    db = sqlite3.connect(storage.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_damaged_page_keeps_the_readable_rows(tmp_path):
    path = tmp_path / "q.sqlite"
    file = DiskQueueFile(path)
    file.open()
    for n in range(40):  # about two rows per 4 KiB page
        file.put(Signal.LOGS, n, bytes([n]) * 1500)
    file.close()
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page) // 2
    data[middle * page:(middle + 1) * page] = b"\xde\xad\xbe\xef" * (page // 4)
    path.write_bytes(bytes(data))

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert file.moved_aside is not None and file.moved_aside.exists()
        # Rows on either side of the damaged page are kept; a scan from one end stops at it.
        assert 30 <= file.salvaged < 40 and len(stored) == file.salvaged
        assert file.lost == 40 - file.salvaged     # counted against the tally, not guessed
        items = [s.items for s in stored]
        assert items == sorted(items) and items[0] == 0 and items[-1] == 39   # oldest first, both ends kept
        for entry in stored:
            assert file.get(entry.key) == bytes([entry.items]) * 1500
    finally:
        file.close()


def test_a_full_file_refuses_with_queue_full(tmp_path):
    # How SQLite reports a full disk ("database or disk is full"), without filling one.
    path = tmp_path / "q.sqlite"
    file = DiskQueueFile(path, max_bytes=64 * 1024)
    file.open()
    accepted = []
    try:
        with pytest.raises(QueueFullError) as caught:
            for n in range(100):
                accepted.append(file.put(Signal.LOGS, n, bytes([n]) * 10_000))
        assert isinstance(caught.value, RetryableError)
        assert "full" in str(caught.value)
        assert 2 <= len(accepted) < 7
        # Room comes back once an entry is delivered and removed.
        file.remove(accepted.pop(0))
        accepted.append(file.put(Signal.LOGS, 99, bytes([99]) * 10_000))
    finally:
        file.close()
    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert [s.key for s in stored] == accepted
        assert all(file.get(s.key) == bytes([s.items]) * 10_000 for s in stored)
    finally:
        file.close()


def test_the_queue_refuses_when_the_disk_is_full_and_keeps_what_it_accepted(tmp_path):
    path = tmp_path / "q.sqlite"
    disk = DiskQueue(DiskQueueFile(path, max_bytes=64 * 1024))
    big = traces_request(spans=1, attribute_bytes=10_000)

    async def run():
        await disk.queue.start()
        accepted = 0
        for _ in range(100):
            try:
                await disk.queue.send(big)
            except QueueFullError:
                break
            accepted += 1
        else:
            raise AssertionError("the bounded file never filled up")
        used = disk.queue.used
        await disk.close()
        return accepted, used

    accepted, used = asyncio.run(asyncio.wait_for(run(), 10))
    assert 2 <= accepted and used == accepted      # the refused request reserved nothing
    assert disk.left == [(accepted, True)]         # all kept, none reported lost
    assert disk.reports == []
    assert len(rows(path)) == accepted


def test_concurrent_senders_never_overshoot_the_capacity(tmp_path):
    path = tmp_path / "q.sqlite"
    disk = DiskQueue(DiskQueueFile(path), capacity=5)

    async def run():
        await disk.queue.start()
        outcomes = await asyncio.gather(*(disk.queue.send(logs_request()) for _ in range(20)),
                                        return_exceptions=True)
        await disk.close()
        return outcomes

    outcomes = asyncio.run(asyncio.wait_for(run(), 10))
    assert outcomes.count(None) == 5
    assert all(isinstance(o, QueueFullError) for o in outcomes if o is not None)
    assert len(rows(path)) == 5


# --- shutdown and restart ---------------------------------------------------------------

LONG_BACKOFF = {"initial_interval": "1h", "max_interval": "1h", "max_elapsed_time": 0}


def test_shutdown_keeps_the_request_on_disk_and_the_next_exporter_replays_it(tmp_path, sink, component_log):
    storage = Storage(tmp_path)
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    request = traces_request(spans=3)
    first = storage.harness(sink.endpoint, retry_on_failure=LONG_BACKOFF)

    async def before_restart():
        async with first:
            assert await first.consume(request) is None
            assert await until(lambda: sink.refused == 1)   # now in its hour-long backoff

    asyncio.run(asyncio.wait_for(before_restart(), 10))
    assert sink.refused == 2                       # the drain's one attempt
    [record] = records(component_log, KEPT)
    assert record.fields == {"requests": 1, "items": 3}
    assert not records(component_log, LOST)
    assert first.failed(Signal.TRACES, True) == first.failed(Signal.TRACES, False) == 0
    assert [(signal, items) for _, signal, items in rows(storage.path)] == [("traces", 3)]

    sink.fail_with(None)
    second = storage.harness(sink.endpoint, retry_on_failure=LONG_BACKOFF)

    async def after_restart():
        async with second:
            assert await until(lambda: second.sent(Signal.TRACES) == 3)

    asyncio.run(asyncio.wait_for(after_restart(), 10))
    assert sink.requests[Signal.TRACES] == [request]
    assert rows(storage.path) == []


def test_a_drain_cut_off_at_the_deadline_keeps_everything_on_disk(tmp_path, component_log):
    storage = Storage(tmp_path)
    transport = GatedTransport()
    h = storage.harness(transport=transport, timeout="1h")

    async def run():
        await h.exporter.start()
        for _ in range(3):
            assert await h.consume(logs_request()) is None
        assert await until(lambda: transport.calls == 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.exporter.shutdown(), 0.2)

    asyncio.run(asyncio.wait_for(run(), 10))
    [record] = records(component_log, KEPT)
    assert record.fields == {"requests": 3, "items": 12}   # the one in flight too
    assert h.failed(Signal.LOGS, True) == 0
    assert [(signal, items) for _, signal, items in rows(storage.path)] == [("logs", 4)] * 3


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    """kill -9 right after the writer says its entries are committed: all of them are there."""
    path = tmp_path / "q.sqlite"
    count = 200
    child = (
        "import sys\n"
        "from pathlib import Path\n"
        "from relay.storage.disk_queue import DiskQueueFile\n"
        "from relay.signals import Signal\n"
        "from tests.support import traces_request\n"
        "file = DiskQueueFile(Path(sys.argv[1]))\n"
        "file.open()\n"
        "for n in range(int(sys.argv[2])):\n"
        "    file.put(Signal.TRACES, n % 7 + 1, traces_request(spans=n % 7 + 1).SerializeToString())\n"
        "print('committed', flush=True)\n"
        "sys.stdin.read()  # hold the connection open: only the kill ends this process\n"
    )
    kill_after_commit(child, str(path), str(count))
    # Never checkpointed: the entries live only in the WAL, which the reopen must recover.
    assert os.path.getsize(str(path) + "-wal") > 0

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert file.moved_aside is None
        assert [s.items for s in stored] == [n % 7 + 1 for n in range(count)]
        for entry in stored:
            assert Signal.TRACES.request_type.FromString(file.get(entry.key)) == traces_request(spans=entry.items)
    finally:
        file.close()


def test_a_request_larger_than_the_whole_queue_is_refused_as_too_large(tmp_path):
    from relay.errors import TooLargeError
    from relay.status import to_grpc

    file = DiskQueueFile(tmp_path / "q.sqlite")
    queue = DiskQueue(file, capacity=5, sizer_kind="items")

    async def run():
        await queue.queue.start()
        try:
            with pytest.raises(TooLargeError) as refused:
                await queue.queue.send(traces_request(spans=6))
            await queue.queue.send(traces_request(spans=5))  # exactly the capacity still fits
            return refused.value
        finally:
            await queue.close()

    error = asyncio.run(asyncio.wait_for(run(), 10))
    # Not retryable: waiting can never make room for it.
    assert to_grpc(error)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [r[2] for r in rows(file.path)] == [5]


def test_an_entry_that_cannot_be_read_stays_on_disk(tmp_path):
    path = tmp_path / "q.sqlite"
    fill(path, [traces_request(spans=3)])
    file = DiskQueueFile(path)
    queue = DiskQueue(file)

    def failing_get(key):
        raise sqlite3.OperationalError("disk I/O error")

    async def run():
        await queue.queue.start()
        file.get = failing_get
        assert await until(lambda: queue.reports)
        await queue.close()

    asyncio.run(asyncio.wait_for(run(), 10))
    [(entry, reason)] = queue.reports
    assert "kept for the next start" in reason and "disk I/O error" in reason
    assert [r[2] for r in rows(path)] == [3]  # a read that failed is not corruption: nothing deleted


# --- salvage, measured -------------------------------------------------------------------

class Said:
    """A stand-in for a component logger: keeps (level, message, fields)."""

    def __init__(self):
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda message, fields: self.lines.append((level, message, fields))

    def messages(self, level: str) -> list[str]:
        return [message for said_level, message, _ in self.lines if said_level == level]


def payload(n: int, size: int) -> bytes:
    return bytes([n % 251]) * size


def test_a_file_cut_to_half_keeps_the_entries_before_the_cut_and_counts_the_rest(tmp_path):
    path = tmp_path / "q.sqlite"
    file = DiskQueueFile(path)
    file.open()
    for n in range(60):
        file.put(Signal.LOGS, n, payload(n, 3000))
    file.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)   # SQLite itself refuses the whole file now ("malformed")

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        # The oldest entries lie before the cut, and every one of them is kept.
        assert [s.items for s in stored] == list(range(len(stored)))
        assert 25 <= len(stored) < 60 and file.lost == 60 - len(stored)
        assert all(file.get(s.key) == payload(s.items, 3000) for s in stored)
        assert file.damage.moved_to.stat().st_size == size // 2
        assert file.damage.fields()["entries_lost"] == 60 - len(stored)
    finally:
        file.close()


def test_a_file_with_a_page_gone_missing_from_an_interior_level_still_finds_the_leaves_under_it(tmp_path):
    path = tmp_path / "q.sqlite"
    file = DiskQueueFile(path)
    file.open()
    for n in range(3000):   # three or four rows a page: a b-tree three levels deep
        file.put(Signal.LOGS, n, payload(n, 1000))
    file.close()
    db = sqlite3.connect(path)
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'queue'").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert data[(root - 1) * page] == 0x05                     # the root is an interior page
    child = int.from_bytes(data[(root - 1) * page + 8:(root - 1) * page + 12], "big")  # its right-most child
    assert data[(child - 1) * page] == 0x05                    # an interior page too, over many leaves
    data[(child - 1) * page:child * page] = bytes(page)
    path.write_bytes(bytes(data))

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        # The leaves under the lost interior page are found by scanning for them.
        assert len(stored) == 3000 and file.lost == 0
        assert [s.items for s in stored] == list(range(3000))
    finally:
        file.close()


KILLED_WRITER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from relay.storage.disk_queue import DiskQueueFile\n"
    "from relay.signals import Signal\n"
    "file = DiskQueueFile(Path(sys.argv[1]))\n"
    "file.open()\n"
    "for n in range(int(sys.argv[2])):\n"
    "    file.put(Signal.LOGS, n, bytes([n % 251]) * int(sys.argv[3]))\n"
    "print('committed', flush=True)\n"
    "sys.stdin.read()  # hold the file open: only the kill ends this process\n"
)


def wal_frames(wal: Path) -> tuple[int, list[tuple[int, int, int]]]:
    """(page size, [(offset, page, commit size)]) of the frames with the WAL header's salts."""
    data = wal.read_bytes()
    size = int.from_bytes(data[8:12], "big")
    frames = []
    for offset in range(32, len(data) - 24 - size + 1, 24 + size):
        if data[offset + 8:offset + 16] == data[16:24]:
            frames.append((offset, int.from_bytes(data[offset:offset + 4], "big"),
                           int.from_bytes(data[offset + 4:offset + 8], "big")))
    return size, frames


def garble(path: Path, start: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    data[start:start + length] = bytes(b ^ 0x5A for b in data[start:start + length])
    path.write_bytes(bytes(data))


def test_a_wal_damaged_after_kill_9_is_reported_and_the_entries_after_the_damage_are_recovered(tmp_path):
    path = tmp_path / "q.sqlite"
    wal = Path(str(path) + "-wal")
    count = 30
    kill_after_commit(KILLED_WRITER, str(path), str(count), "10000")
    size, frames = wal_frames(wal)
    pages = [page for _, page, _ in frames]
    # An overflow page in the middle, written once: the one entry it belongs to is lost.
    offset = next(offset for offset, page, commit in frames[len(frames) // 2:]
                  if pages.count(page) == 1 and not commit)
    garble(wal, offset + 24, size)
    damaged = wal.read_bytes()
    copy = tmp_path / "copy"           # a connection closed on it checkpoints, and deletes the WAL
    copy.mkdir()
    for suffix in ("", "-wal"):
        (copy / f"q.sqlite{suffix}").write_bytes(Path(str(path) + suffix).read_bytes())
    db = sqlite3.connect(copy / "q.sqlite")
    sqlite_alone = db.execute("SELECT count(*) FROM queue").fetchone()[0]
    db.close()
    assert 0 < sqlite_alone < count           # SQLite stops at the damage and says nothing

    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert file.damage is not None and "WAL" in " ".join(file.damage.reasons)
        assert Path(str(file.moved_aside) + "-wal").read_bytes() == damaged   # kept as found
        assert file.lost == 1 and len(stored) == count - 1
        items = [s.items for s in stored]
        assert items[:sqlite_alone] == list(range(sqlite_alone))       # everything before the damage
        assert len(set(range(count)) - set(items)) == 1 and max(items) == count - 1
        assert all(file.get(s.key) == payload(s.items, 10000) for s in stored)
    finally:
        file.close()
    # The rebuilt file is whole: the next start finds nothing to salvage.
    again = DiskQueueFile(path)
    assert len(again.open()) == count - 1 and again.damage is None
    again.close()


def test_a_last_transaction_cut_short_is_not_damage_but_is_logged(tmp_path):
    path = tmp_path / "q.sqlite"
    wal = Path(str(path) + "-wal")
    kill_after_commit(KILLED_WRITER, str(path), "10", "100")
    size, frames = wal_frames(wal)
    last = frames[-1][0]
    garble(wal, last + 24, size)      # as a kill between a frame's header and its page would leave it
    file = DiskQueueFile(path)
    file.log = Said()
    stored = file.open()
    try:
        assert file.damage is None and file.moved_aside is None
        assert [s.items for s in stored] == list(range(9))   # the last one never fully written
        [warning] = file.log.messages("warning")
        assert "cut short by a crash" in warning
    finally:
        file.close()


def test_a_salvage_cut_short_is_finished_or_undone_at_the_next_open(tmp_path):
    path = tmp_path / "q.sqlite"
    rebuilt = tmp_path / "q.sqlite.salvage"
    fill(rebuilt, [logs_request(), logs_request()])
    # The damaged file moved aside, the rebuilt one not yet in its place: it is the queue.
    file = DiskQueueFile(path)
    assert len(file.open()) == 2 and not rebuilt.exists()
    file.close()
    # The damaged file still in place: the rebuilt one may be half written, and goes.
    fill(rebuilt, [logs_request()])
    file = DiskQueueFile(path)
    assert len(file.open()) == 2 and not rebuilt.exists()
    file.close()


def test_the_exporter_counts_each_entry_a_damaged_file_lost(tmp_path, component_log):
    storage = Storage(tmp_path)
    fill(storage.path, [traces_request(spans=2, attribute_bytes=3000) for _ in range(40)])
    size = storage.path.stat().st_size
    with open(storage.path, "r+b") as handle:
        handle.truncate(size // 2)
    transport = GatedTransport()
    h = storage.harness(transport=transport)

    async def run():
        async with h:
            transport.gate.set()
            kept = len(h.exporter.queue.pending)
            assert await until(lambda: len(transport.delivered) == kept)
            return kept

    kept = asyncio.run(asyncio.wait_for(run(), 10))
    [record] = records(component_log, "the persistent queue was corrupt: moved aside, readable entries kept")
    assert record.fields["entries_kept"] == kept and record.fields["entries_lost"] == 40 - kept
    assert h.skipped() == 40 - kept > 0


# --- a full disk -------------------------------------------------------------------------

class Disk:
    """Free space on a pretend disk, as ``DiskQueueFile(free=...)`` asks for it."""

    def __init__(self, free: int):
        self.left = free

    def __call__(self, directory) -> int:
        return self.left


def test_a_disk_short_of_room_refuses_before_it_is_full_and_takes_data_again_once_there_is_room(tmp_path):
    from relay.storage.disk_queue import RESERVE

    disk = Disk(100 * RESERVE)
    file = DiskQueueFile(tmp_path / "q.sqlite", free=disk)
    file.log = Said()
    file.open()
    try:
        file.put(Signal.LOGS, 1, payload(1, 10_000))
        file.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # the WAL's own length counts as room too
        disk.left = RESERVE + 10_000       # what is left would not hold the entry and the reserve
        with pytest.raises(QueueFullError) as refused:
            file.put(Signal.LOGS, 2, payload(2, 20_000))
        assert "its disk is full" in str(refused.value) and isinstance(refused.value, RetryableError)
        file.put(Signal.LOGS, 3, payload(3, 100))     # a small one still fits
        with pytest.raises(QueueFullError):
            file.put(Signal.LOGS, 4, payload(4, 20_000))
        assert len(file.log.messages("warning")) == 1  # said once, not per request
        assert file.needs_maintenance
        file.maintain()
        assert file.short is not None                # still no room for what was refused
        disk.left = 100 * RESERVE
        file.maintain()
        assert file.short is None and not file.needs_maintenance
        assert file.log.messages("info") == ["the disk under the persistent queue has room again"]
        file.put(Signal.LOGS, 5, payload(5, 20_000))
    finally:
        file.close()
    assert [r[2] for r in rows(file.path)] == [1, 3, 5]


class FullOnDelete:
    """A connection whose deletes fail as on a full disk, while ``full`` is set."""

    def __init__(self, db):
        self.db = db
        self.full = True

    def execute(self, sql, *args):
        if self.full and sql.startswith("DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_deletes_a_full_disk_refused_are_done_once_there_is_room(tmp_path):
    disk = Disk(100 * 1024 * 1024)
    file = DiskQueueFile(tmp_path / "q.sqlite", free=disk)
    file.open()
    keys = [file.put(Signal.LOGS, n, payload(n, 100)) for n in range(3)]
    real = file.db
    file.db = FullOnDelete(real)
    disk.left = 0
    try:
        for key in keys[:2]:
            file.remove(key)                 # delivered: no error, the delete waits for room
        assert file.pending == 1 and file.needs_maintenance
        assert file.maintain() == []         # still no room: tried, and kept for later
        assert len(real.execute("SELECT key FROM queue").fetchall()) == 3
        file.db.full = False
        disk.left = 100 * 1024 * 1024
        file.maintain()
        assert not file.needs_maintenance
        assert [key for key, _, _ in real.execute("SELECT key, signal, items FROM queue")] == keys[2:]
    finally:
        file.db = real
        file.close()


def test_a_file_that_a_full_disk_kept_from_opening_is_opened_later_and_its_entries_queued(tmp_path, monkeypatch):
    path = tmp_path / "q.sqlite"
    fill(path, [logs_request(), traces_request(spans=2)])
    real = DiskQueueFile._connect
    refusing = {"on": True}

    def connect(self, *args, **kwargs):
        if refusing["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DiskQueueFile, "_connect", connect)
    file = DiskQueueFile(path)
    file.log = Said()
    delivered = []

    async def deliver(request):
        delivered.append(request)

    queue = QueueSender(deliver, DiskStore(file, sizer("requests")), capacity=10, sizer_kind="requests",
                        consumers=1, report=lambda entry, error: None, skipped=lambda entry, reason: None,
                        left=lambda entries, persistent: None, maintain_interval=0.01)

    async def run():
        await queue.start()             # no exception: the relay serves
        assert not queue.pending and file.unavailable is not None
        with pytest.raises(QueueFullError) as refused:
            await queue.send(logs_request())
        assert "cannot open q.sqlite: database or disk is full" in str(refused.value)
        refusing["on"] = False
        assert await until(lambda: len(delivered) == 2)
        await queue.send(logs_request())
        assert await until(lambda: len(delivered) == 3)
        await queue.close()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert delivered == [logs_request(), traces_request(spans=2), logs_request()]
    assert [message for _, message, _ in file.log.lines] == [
        "the persistent queue cannot be opened: its data is refused with UNAVAILABLE until it can",
        "the persistent queue is open: it accepts data again"]
    assert rows(path) == []


def test_an_emptied_queue_gives_its_pages_back(tmp_path):
    path = tmp_path / "q.sqlite"
    file = DiskQueueFile(path)
    file.open()
    try:
        keys = [file.put(Signal.LOGS, n, payload(n, 20_000)) for n in range(100)]
        file.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = path.stat().st_size
        for key in keys:
            file.remove(key)
        assert grown > 1024 * 1024 and path.stat().st_size < 64 * 1024
        assert os.path.getsize(str(path) + "-wal") == 0
    finally:
        file.close()


def test_a_file_from_before_the_tally_gets_one_counting_what_it_holds(tmp_path):
    path = tmp_path / "q.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE queue (key INTEGER PRIMARY KEY AUTOINCREMENT, signal TEXT NOT NULL, "
               "items INTEGER NOT NULL, size INTEGER NOT NULL, crc INTEGER NOT NULL, payload BLOB NOT NULL)")
    for n in range(3):
        data = payload(n, 50)
        db.execute("INSERT INTO queue (signal, items, size, crc, payload) VALUES ('logs', ?, ?, ?, ?)",
                   (n, len(data), zlib.crc32(data), data))
    db.commit()
    db.close()
    file = DiskQueueFile(path)
    stored = file.open()
    try:
        assert [s.items for s in stored] == [0, 1, 2]
        file.remove(stored[0].key)
        file.put(Signal.LOGS, 3, payload(3, 50))
        assert file.db.execute("SELECT pending FROM tally").fetchall() == [(3,)]
    finally:
        file.close()
