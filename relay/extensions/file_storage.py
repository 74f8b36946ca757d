"""The ``file_storage`` extension: a directory where exporters keep their persistent queues.

An exporter names it in ``sending_queue.storage``; each exporter gets one
SQLite file in ``directory``. The directory is checked at start, by writing a
probe file, so an unwritable or missing directory (or a read-only file
system) stops the relay with a clear error instead of losing data later.
A full disk does not stop it: that passes, and exiting would only turn it into
a crash loop, so the relay serves and each queue refuses data until there is room.

The collector's ``timeout`` (its file lock wait) and ``compaction`` block are accepted
with its defaults and noted at start as having no effect: the queue files are SQLite,
which holds its own lock and gives space back once a queue is empty.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from relay.component import Settings
from relay.config.decode import Duration, advisory
from relay.errors import Problem
from relay.storage.directory import check_directory
from relay.storage.disk_queue import DiskQueueFile
from relay.telemetry import component_logger

TYPE = "file_storage"
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"directory": "/var/lib/genops-relay/queue", "create_directory": True}

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

_OWN_LOCK = ("a queue file's lock is SQLite's (exclusive locking mode), which another process opening it "
             "waits for up to SQLite's 5 s")
_OWN_COMPACTION = ("each queue file gives its free pages back once it is empty (VACUUM) and bounds its "
                   "write-ahead log, without a compaction directory")


@dataclass
class CompactionConfig:
    """The collector's bbolt compaction settings, with its defaults; the relay compacts on its own."""

    on_start: bool = False
    on_rebound: bool = False
    directory: str = ""
    max_transaction_size: int = 65536
    rebound_needed_threshold_mib: int = 100
    rebound_trigger_threshold_mib: int = 10
    check_interval: Duration = Duration(5.0)
    cleanup_on_start: bool = False

    def validate(self) -> list[Problem]:
        problems = []
        for key in ("max_transaction_size", "rebound_needed_threshold_mib", "rebound_trigger_threshold_mib"):
            if getattr(self, key) < 0:
                problems.append(Problem((key,), "must not be negative"))
        if self.check_interval < 0:
            problems.append(Problem(("check_interval",), "must not be negative"))
        return problems


@dataclass
class Config:
    # The collector's default, so that its configs keep their volumes.
    directory: str = "/var/lib/otelcol/file_storage"
    create_directory: bool = False
    # The collector's bbolt file lock wait (default 1s).
    timeout: Duration = advisory(_OWN_LOCK, default=Duration(1.0))
    compaction: CompactionConfig = advisory(_OWN_COMPACTION, default_factory=CompactionConfig)
    # Off, as in the collector: a killed process loses nothing committed either way;
    # on, each write is flushed to the device and survives power loss too.
    fsync: bool = False
    # Not a collector key: a bound on each queue file, so that a long outage fills this
    # budget rather than the node's disk. Past it, clients are refused as on a full disk.
    max_size_mib: int = 0

    def validate(self) -> list[Problem]:
        problems = []
        if not self.directory:
            problems.append(Problem(("directory",), "must name a directory"))
        if self.timeout < 0:
            problems.append(Problem(("timeout",), "must not be negative"))
        if self.max_size_mib < 0:
            problems.append(Problem(("max_size_mib",), "must not be negative (0 = no bound)"))
        return problems


class FileStorage:
    def __init__(self, id_, config: Config):
        self.id = id_
        self.config = config
        self.directory = Path(config.directory)
        self.log = component_logger(id_)

    async def start(self) -> None:
        full = check_directory(self.directory, self.config.create_directory, full_is_fine=True)
        if full is not None:
            self.log.warning("the file storage directory's disk is full: persistent queues refuse data with "
                             "UNAVAILABLE until there is room", fields={"directory": str(self.directory),
                                                                        "error": full})
        self.log.info("file storage ready", fields={"directory": str(self.directory)})

    async def shutdown(self) -> None:
        pass

    def queue_file(self, owner) -> DiskQueueFile:
        text = str(owner)
        name = _UNSAFE.sub("_", text.replace("/", "__"))
        if name != text.replace("/", "__") or text.count("/") > 1:
            # Replacing characters can map two ids to one name ("otlp/a:b", "otlp/a_b"; and,
            # names may hold "/", "otlp/a/b" and "otlp/a__b"), and two exporters must never share
            # (and replay) one queue: add the exact id's hash, after an "@" that no name left as
            # it was can contain.
            name += "@" + hashlib.sha256(text.encode()).hexdigest()[:12]
        return DiskQueueFile(self.directory / f"exporter_{name}.sqlite", fsync=self.config.fsync,
                             max_bytes=self.config.max_size_mib * 1024 * 1024)


def create(settings: Settings, config: Config) -> FileStorage:
    return FileStorage(settings.id, config)
