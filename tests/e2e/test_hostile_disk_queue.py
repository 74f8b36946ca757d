"""Hostile conditions for the persistent queue, against a real relay process.

A disk that fills up, a start on a disk that is already full, a queue file cut
to half its length, a WAL damaged after kill -9. Each must leave the relay
serving; what the queue acknowledged must arrive, or be logged and counted as
lost; and once there is room again the queue must take data again, within a
bounded time.

The disk-full cases need a small file system of their own: a 20 MiB tmpfs,
mounted here when the test may (as root). Otherwise they skip, saying why;
under CI (the CI variable set) they fail instead, so a runner that cannot
mount does not quietly stop testing them.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from relay.signals import Signal
from tests.e2e.test_hostile_inputs import report
from tests.e2e.test_reliability import (
    RETRY_FAST,
    metric,
    relay_lines,
    relay_with,
    scrape,
    span_ids,
    wait_for,
)
from tests.support import RelayProcess, free_port, logs_request, traces_request

MIB = 1024 * 1024
QUEUED = RETRY_FAST + "    sending_queue:\n      storage: file_storage\n"
FILE = "exporter_otlp.sqlite"
SKIPPED = 'otelcol_exporter_queue_skipped_entries_total{exporter="otlp"}'
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


# --- a small disk ------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(tmp_path: Path, mib: int = 20):
    where = tmp_path / "disk"
    where.mkdir()
    reason = None
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
    elif shutil.which("mount") is None:
        reason = "no mount command"
    else:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=20, check=False)
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the disk-full cases must run")
        pytest.skip(reason)
    try:
        yield where
    finally:
        # Lazily, if a file on it is still open: the mount must not outlive the test.
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=20, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20, check=False)


def fill(directory: Path) -> Path:
    """Take every byte left on the disk under ``directory``; returns the file holding them."""
    filler = directory / "filler"
    limit = os.statvfs(directory).f_blocks * os.statvfs(directory).f_frsize
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (MIB, 4096, 1):
            block = b"\0" * chunk
            for _ in range(limit // chunk + 1):   # bounded: the disk ends long before
                try:
                    handle.write(block)
                except OSError:
                    break
            limit = chunk
    assert os.statvfs(directory).f_bavail == 0
    return filler


def queue_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith(FILE))


# --- talking to the relay ----------------------------------------------------------------

class Client:
    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.calls = {signal: self.channel.unary_unary(signal.method) for signal in Signal}

    def send(self, request, signal: Signal = Signal.TRACES) -> None:
        self.calls[signal](request.SerializeToString(), timeout=10)

    def send_until_taken(self, request, deadline: float) -> int:
        """Send ``request`` again while the relay answers UNAVAILABLE, as an SDK would; the attempts."""
        for attempt in range(1, 1000):
            try:
                self.send(request)
                return attempt
            except grpc.RpcError as error:
                if error.code() != UNAVAILABLE or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        raise AssertionError("never taken")

    def close(self) -> None:
        self.channel.close()


def log_lines(relay, message: str) -> list[dict]:
    return [line for line in relay_lines(relay) if line.get("msg") == message]


def split_relay(tmp_path: Path, sink_endpoint: str, storage: Path, name: str = "relay") -> RelayProcess:
    """Traces through a persistent queue on ``storage``; logs through a queue in memory."""
    port, health, metrics = free_port(), free_port(), free_port()
    config = (f"receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\n"
              f"exporters:\n  otlp:\n    endpoint: {sink_endpoint}\n    tls:\n      insecure: true\n{QUEUED}"
              f"  otlp/memory:\n    endpoint: {sink_endpoint}\n    tls:\n      insecure: true\n{RETRY_FAST}"
              f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
              f"  file_storage:\n    directory: {storage}\n"
              f"service:\n  extensions: [health_check, file_storage]\n  pipelines:\n"
              f"    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n"
              f"    logs:\n      receivers: [otlp]\n      exporters: [otlp/memory]\n"
              f"  telemetry:\n    logs:\n      level: info\n    metrics:\n      address: 127.0.0.1:{metrics}\n")
    workdir = tmp_path / name
    workdir.mkdir()
    relay = RelayProcess(config, workdir, health)
    relay.port, relay.metrics = port, metrics
    return relay


# --- defect 5: a full disk ---------------------------------------------------------------

def test_a_disk_the_queue_filled_takes_data_again_once_the_queue_drains(tmp_path, sink, request, capsys):
    with small_disk(tmp_path) as disk:
        sink.fail_with(UNAVAILABLE, "down")
        relay = relay_with(tmp_path, sink.endpoint, QUEUED, storage=disk).start()
        client = Client(relay.port)
        rng = random.Random(51)
        try:
            acked, refusal = [], None
            for _ in range(400):               # 100 KB each: the 20 MiB disk holds under 200
                big = traces_request(2, attribute_bytes=100_000, rng=rng)
                try:
                    client.send(big)
                except grpc.RpcError as error:
                    refusal = error
                    break
                acked += span_ids(big)
            assert refusal is not None and refusal.code() == UNAVAILABLE, refusal
            assert "persistent queue cannot grow" in refusal.details()
            full_at = queue_bytes(disk)
            # Whatever room the queue left, something else now takes: full to the last byte.
            filler = fill(disk)

            sink.fail_with(None)
            assert sink.wait_for(Signal.TRACES, len(acked), timeout=30)  # delivered from a full disk
            filler.unlink()                    # the room is back

            deadline = time.monotonic() + 15
            small = [traces_request(1, rng=rng) for _ in range(30)]
            attempts = [client.send_until_taken(r, deadline) for r in small]
            took = 15 - (deadline - time.monotonic())
            # The delivered entries are deleted and their pages given back.
            assert wait_for(lambda: queue_bytes(disk) < 2 * MIB, timeout=10), queue_bytes(disk)
            assert sink.wait_for(Signal.TRACES, len(acked) + 30, timeout=20)
            drained_to = queue_bytes(disk)
        finally:
            client.close()
            status = relay.stop()
    assert status == 0
    assert set(acked) | {s for r in small for s in span_ids(r)} <= set(sink.span_ids())
    assert log_lines(relay, "the disk under the persistent queue is full: new data is refused with "
                            "UNAVAILABLE until there is room")
    report(request, capsys, f"hostile disk queue: disk filled by {len(acked) // 2} requests "
                            f"({full_at / MIB:.1f} MiB of queue), then to the last byte; all delivered; "
                            f"30 of 30 small requests then taken in {took:.1f}s "
                            f"({sum(attempts) - 30} refused first), queue file down to {drained_to // 1024} KiB")


@pytest.mark.parametrize("waiting", [0, 5], ids=["no-queue-file", "queue-file-with-entries"])
def test_a_start_on_a_full_disk_serves_and_refuses_queued_data_until_there_is_room(tmp_path, sink, waiting,
                                                                                    request, capsys):
    with small_disk(tmp_path) as disk:
        kept = []
        if waiting:
            sink.fail_with(UNAVAILABLE, "down")
            first = relay_with(tmp_path, sink.endpoint, QUEUED, storage=disk, name="first").start()
            client = Client(first.port)
            for n in range(waiting):
                entry = traces_request(2, rng=random.Random(n))
                client.send(entry)
                kept += span_ids(entry)
            client.close()
            assert first.stop() == 0           # kept on disk for the next start
            sink.fail_with(None)
        filler = fill(disk)
        relay = split_relay(tmp_path, sink.endpoint, disk)
        relay.start()                          # healthy, or this raises with the log
        client = Client(relay.port)
        try:
            assert relay.health()[0] == 200
            client.send(logs_request(), Signal.LOGS)          # a pipeline without the disk works
            assert sink.wait_for(Signal.LOGS, 4)
            assert sink.wait_for(Signal.TRACES, len(kept))    # what waited on the full disk is delivered
            with pytest.raises(grpc.RpcError) as refused:
                client.send(traces_request(3))
            assert refused.value.code() == UNAVAILABLE
            why = refused.value.details()
            assert "persistent queue cannot grow" in why and ("full" in why), why

            filler.unlink()
            deadline = time.monotonic() + 15
            fresh = traces_request(3, rng=random.Random(99))
            attempts = client.send_until_taken(fresh, deadline)
            took = 15 - (deadline - time.monotonic())
            assert sink.wait_for(Signal.TRACES, len(kept) + 3)
        finally:
            client.close()
            status = relay.stop()
    assert status == 0
    assert set(kept) | set(span_ids(fresh)) <= set(sink.span_ids())
    said = [line for line in relay_lines(relay) if line.get("component") in ("otlp", "file_storage")
            and line.get("level") in ("warning", "error")]
    assert any("full" in str(line.get("error", "")) or "full" in line["msg"] for line in said), said
    report(request, capsys, f"hostile disk queue: start on a full disk with {waiting} entries waiting: served, "
                            f"{waiting} delivered, queued data refused (UNAVAILABLE: {why!r}); "
                            f"taken {took:.1f}s after room came back ({attempts} attempts)")


# --- defect 9: a damaged file ------------------------------------------------------------

def fill_queue_then_stop(tmp_path: Path, sink, queue_dir: Path, count: int, attribute_bytes: int,
                         stop_signal=signal.SIGTERM) -> list[list[bytes]]:
    """``count`` requests queued with the downstream down, then the relay stopped; their span ids."""
    sink.fail_with(UNAVAILABLE, "down")
    first = relay_with(tmp_path, sink.endpoint, QUEUED, storage=queue_dir, name="first").start()
    client = Client(first.port)
    rng = random.Random(count)
    sent = []
    try:
        for _ in range(count):
            entry = traces_request(3, attribute_bytes=attribute_bytes, rng=rng)
            client.send(entry)
            sent.append(span_ids(entry))
    finally:
        client.close()
        status = first.stop(stop_signal)
    assert status == (0 if stop_signal == signal.SIGTERM else -stop_signal)
    sink.fail_with(None)
    return sent


def restart_and_read_the_damage(tmp_path: Path, sink, queue_dir: Path):
    second = relay_with(tmp_path, sink.endpoint, QUEUED, storage=queue_dir, name="second").start()
    try:
        lines = log_lines(second, "the persistent queue was corrupt: moved aside, readable entries kept")
        assert len(lines) == 1, f"the damage was not reported; SQLite alone kept what it could, silently: {lines}"
        [line] = lines
        kept, lost = line["entries_kept"], line.get("entries_lost")
        assert isinstance(lost, int), line
        assert sink.wait_for(Signal.TRACES, 3 * kept, timeout=20)
        assert wait_for(lambda: metric(scrape(second.metrics), SKIPPED) == lost, timeout=5), (
            metric(scrape(second.metrics), SKIPPED), line)
    finally:
        assert second.stop() == 0
    return line, kept, lost


def sqlite_alone(path: Path, scratch: Path) -> int:
    """How many entries SQLite itself reads from a copy of the file and its WAL."""
    scratch.mkdir()
    for suffix in ("", "-wal"):
        if Path(str(path) + suffix).exists():
            shutil.copyfile(str(path) + suffix, str(scratch / FILE) + suffix)
    db = sqlite3.connect(scratch / FILE)
    try:
        return db.execute("SELECT count(*) FROM queue").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()


def test_a_queue_file_cut_to_half_delivers_the_entries_before_the_cut_and_counts_the_rest(tmp_path, sink,
                                                                                          request, capsys):
    queue_dir = tmp_path / "queue"
    queue_dir.mkdir()
    count = 40
    sent = fill_queue_then_stop(tmp_path, sink, queue_dir, count, attribute_bytes=8000)
    path = queue_dir / FILE
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    before = sqlite_alone(path, tmp_path / "scratch")

    line, kept, lost = restart_and_read_the_damage(tmp_path, sink, queue_dir)
    assert kept + lost == count, line
    assert kept >= count // 2 - 2, line
    # What survives a cut at the end is the oldest entries, every one of them.
    assert sorted(sink.span_ids()) == sorted(s for entry in sent[:kept] for s in entry)
    assert Path(line["moved_to"]).stat().st_size == size // 2     # kept as found, for whoever looks
    report(request, capsys, f"hostile disk queue: file cut to half ({size // 1024} -> {size // 2048} KiB): "
                            f"{kept} of {count} entries delivered, {lost} logged and counted as lost "
                            f"(SQLite alone reads {before})")


def wal_frames(wal: Path) -> tuple[int, list[tuple[int, int, int]]]:
    """(page size, [(offset, page number, commit size)]) of the frames carrying the header's salts."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    frames = []
    for offset in range(32, len(data) - 24 - page_size + 1, 24 + page_size):
        page, commit = struct.unpack(">II", data[offset:offset + 8])
        if data[offset + 8:offset + 16] == salts:
            frames.append((offset, page, commit))
    return page_size, frames


def test_a_wal_damaged_after_kill_9_keeps_the_entries_before_the_damage_and_counts_what_was_lost(
        tmp_path, sink, request, capsys):
    queue_dir = tmp_path / "queue"
    queue_dir.mkdir()
    count = 24                                # 20 KB each, 8 frames: the WAL holds them all
    sent = fill_queue_then_stop(tmp_path, sink, queue_dir, count, attribute_bytes=20_000,
                                stop_signal=signal.SIGKILL)
    path = queue_dir / FILE
    wal = Path(str(path) + "-wal")
    page_size, frames = wal_frames(wal)
    pages = [page for _, page, _ in frames]
    # A frame in the middle whose page no later frame writes again (an entry's overflow page):
    # its entry can only be lost, and committed frames follow it.
    middle = [(offset, page) for offset, page, commit in frames[len(frames) // 3:2 * len(frames) // 3]
              if pages.count(page) == 1 and not commit]
    offset, page = middle[0]
    data = bytearray(wal.read_bytes())
    start = offset + 24
    data[start:start + page_size] = bytes(b ^ 0x5A for b in data[start:start + page_size])
    wal.write_bytes(bytes(data))
    before = sqlite_alone(path, tmp_path / "scratch")
    assert 0 < before < count                 # SQLite alone stops at the damage, silently

    line, kept, lost = restart_and_read_the_damage(tmp_path, sink, queue_dir)
    assert "WAL" in line["damage"], line
    assert kept + lost == count and lost == 1, line
    delivered = set(sink.span_ids())
    requests = [set(entry) for entry in sent]
    assert all(entry <= delivered for entry in requests[:before])          # before the damage: all
    assert sum(not entry <= delivered for entry in requests) == 1          # the damaged one alone
    assert delivered <= set().union(*requests)
    report(request, capsys, f"hostile disk queue: WAL frame {frames.index((offset, page, 0)) + 1} of "
                            f"{len(frames)} damaged after kill -9: {kept} of {count} entries delivered "
                            f"(SQLite alone reads {before}), {lost} logged and counted as lost")
