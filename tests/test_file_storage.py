"""The file_storage extension: its directory check at start, and how exporters reference it."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from relay.component import ComponentID, Settings
from relay.config import load
from relay.extensions import file_storage
from relay.pipeline.registry import default_registry
from relay.storage import directory
from tests.test_config import problems_of


def start(directory, create: bool = False) -> file_storage.FileStorage:
    extension = file_storage.create(Settings(ComponentID.parse("file_storage"), None), file_storage.Config(directory=str(directory), create_directory=create))
    asyncio.run(extension.start())
    return extension


# --- the directory ----------------------------------------------------------------------

def test_a_missing_directory_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "not" / "there"
    with pytest.raises(OSError) as caught:
        start(missing)
    assert str(caught.value) == (f"file_storage: directory {missing} does not exist "
                                 "(create it, or set create_directory: true)")
    assert not missing.exists()  # checked, not created behind the operator's back


def test_create_directory_creates_it_with_its_parents(tmp_path):
    wanted = tmp_path / "a" / "b" / "queues"
    extension = start(wanted, create=True)
    assert wanted.is_dir()
    assert list(wanted.iterdir()) == []  # the write probe cleaned up after itself
    assert extension.queue_file(ComponentID.parse("otlp/x")).path.parent == wanted


@pytest.mark.parametrize("create", [False, True], ids=["plain", "create_directory"])
def test_a_regular_file_in_the_way_is_not_a_directory(tmp_path, create):
    in_the_way = tmp_path / "queues"
    in_the_way.write_text("not a directory")
    with pytest.raises(OSError) as caught:
        start(in_the_way, create=create)
    assert str(caught.value) == f"file_storage: {in_the_way} is not a directory"
    assert in_the_way.read_text() == "not a directory"


# As root, no permission bit makes a directory unwritable and a read-only bind mount
# needs privileges the test run does not have: the "not writable" branch is not covered.


def no_room(monkeypatch):
    """The probe's flush fails as it does on a full disk (tests/e2e fills a real one)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(directory.os, "fsync", fsync)


def test_a_full_disk_starts_the_extension_and_says_so(tmp_path, monkeypatch, component_log):
    no_room(monkeypatch)
    start(tmp_path)   # no exception: exiting on a full disk is a crash loop, and room may come back
    [record] = [r for r in component_log.records if r.getMessage().startswith("the file storage directory's disk")]
    assert record.levelname == "WARNING" and record.fields["error"] == os.strerror(errno.ENOSPC)
    assert list(tmp_path.iterdir()) == []


def test_the_directory_check_still_refuses_a_full_disk_for_callers_that_do_not_opt_in(tmp_path, monkeypatch):
    no_room(monkeypatch)
    with pytest.raises(OSError) as caught:
        directory.check_directory(tmp_path, False)
    assert str(caught.value) == f"file_storage: directory {tmp_path} is not writable: No space left on device"


def test_each_exporter_gets_its_own_file_with_a_safe_name(tmp_path):
    extension = start(tmp_path, create=True)
    owners = ["otlp", "otlp/a", "otlp/..", "otlp/a_b", "otlp/a:b", "otlp/a*b", "otlp/caf_", "otlp/café",
              "otlp/a/b", "otlp/a__b", "otlp//b"]
    names = {owner: extension.queue_file(ComponentID.parse(owner)).path.name for owner in owners}
    # Plain ids keep plain names...
    assert names["otlp"] == "exporter_otlp.sqlite"
    assert names["otlp/a"] == "exporter_otlp__a.sqlite"
    assert names["otlp/a_b"] == "exporter_otlp__a_b.sqlite"
    # ...and ids that differ only in characters a file name cannot keep still get files of their own:
    # sharing one, two exporters would replay each other's requests to the wrong endpoint.
    assert len(set(names.values())) == len(owners), names
    for name in names.values():
        assert "/" not in name and name.isascii()
        assert (tmp_path / name).parent == tmp_path
    # Stable across restarts, or a restarted relay would not find its queue.
    assert extension.queue_file(ComponentID.parse("otlp/a:b")).path.name == names["otlp/a:b"]


# --- references from sending_queue.storage ----------------------------------------------

CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  otlp/down:
    endpoint: 127.0.0.1:4317
    sending_queue:
      storage: {storage}
extensions:
  file_storage:
    directory: /var/lib/relay
  health_check:
service:
  extensions: {extensions}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/down]
"""

WHERE = "exporters::otlp/down::sending_queue::storage"


@pytest.mark.parametrize("storage, extensions, problem", [
    ("file_storage/other", "[file_storage]",
     f'{WHERE}: references extension "file_storage/other", which is not configured under extensions'),
    ("file_storage", "[health_check]",
     f'{WHERE}: extension "file_storage" must also be listed in service::extensions'),
    ("health_check", "[health_check, file_storage]",
     f'{WHERE}: extension "health_check" is a health_check, not a file_storage'),
    ('"file_storage/"', "[file_storage]",
     f'{WHERE}: invalid component id "file_storage/": expected "type" or "type/name"'),
], ids=["not-configured", "not-enabled", "wrong-type", "invalid-id"])
def test_storage_reference_problems(storage, extensions, problem):
    assert problems_of(CONFIG.format(storage=storage, extensions=extensions)) == [problem]


def test_a_valid_storage_reference_loads():
    config = load(CONFIG.format(storage="file_storage", extensions="[file_storage]"), default_registry(), env={})
    exporter = config.components["exporters"][ComponentID.parse("otlp/down")]
    assert exporter.sending_queue.storage == "file_storage"
    assert ComponentID.parse("file_storage") in config.extensions


def test_a_disabled_queue_references_nothing():
    text = CONFIG.format(storage="file_storage/other", extensions="[]").replace(
        "      storage:", "      enabled: false\n      storage:")
    load(text, default_registry(), env={})  # no problem: the storage is never used


# --- the collector's other keys ----------------------------------------------------------

COLLECTOR_KEYS = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  otlp/down:
    endpoint: 127.0.0.1:4317
    sending_queue:
      storage: file_storage
extensions:
  file_storage:
    directory: /var/lib/relay
{settings}
service:
  extensions: [file_storage]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/down]
"""


def test_timeout_and_compaction_are_accepted_and_noted_as_having_no_effect():
    settings = """\
    timeout: 10s
    fsync: true
    compaction:
      on_start: true
      on_rebound: true
      directory: /var/lib/relay/compaction
      max_transaction_size: 1024
      rebound_needed_threshold_mib: 5
      rebound_trigger_threshold_mib: 3
      check_interval: 10s
      cleanup_on_start: true"""
    config = load(COLLECTOR_KEYS.format(settings=settings), default_registry(), env={})
    storage = config.components["extensions"][ComponentID.parse("file_storage")]
    assert (storage.timeout, storage.fsync) == (10.0, True)
    assert (storage.compaction.on_start, storage.compaction.on_rebound, storage.compaction.directory,
            storage.compaction.max_transaction_size, storage.compaction.rebound_needed_threshold_mib,
            storage.compaction.rebound_trigger_threshold_mib, storage.compaction.check_interval,
            storage.compaction.cleanup_on_start) == (True, True, "/var/lib/relay/compaction", 1024, 5, 3, 10.0, True)
    # fsync has an effect (each write is flushed); the other two do not, and the start says so once.
    assert [str(a) for a in config.advisories] == ["extensions::file_storage::timeout",
                                                   "extensions::file_storage::compaction"]


def test_the_collectors_defaults_apply_and_nothing_unset_is_noted():
    config = load(COLLECTOR_KEYS.format(settings=""), default_registry(), env={})
    storage = config.components["extensions"][ComponentID.parse("file_storage")]
    # extension/storage/filestorage: timeout 1s; compaction off, 65536 items, 100 / 10 MiB, every 5s.
    assert storage.timeout == 1.0 and storage.fsync is False
    assert (storage.compaction.on_start, storage.compaction.on_rebound, storage.compaction.max_transaction_size,
            storage.compaction.rebound_needed_threshold_mib, storage.compaction.rebound_trigger_threshold_mib,
            storage.compaction.check_interval, storage.compaction.cleanup_on_start) == (
        False, False, 65536, 100, 10, 5.0, False)
    assert config.advisories == []


@pytest.mark.parametrize("settings, problem", [
    ("    timeout: -1s", 'extensions::file_storage::timeout: invalid duration "-1s" (use e.g. "5s", "200ms", "1m")'),
    ("    compaction:\n      on_start: sometimes",
     "extensions::file_storage::compaction::on_start: expected a boolean, got string"),
    ("    compaction:\n      max_transaction_size: -1",
     "extensions::file_storage::compaction::max_transaction_size: must not be negative"),
    ("    compaction:\n      rebound_after: 1",
     "extensions::file_storage::compaction::rebound_after: unknown key (valid keys: check_interval, "
     "cleanup_on_start, directory, max_transaction_size, on_rebound, on_start, rebound_needed_threshold_mib, "
     "rebound_trigger_threshold_mib)"),
])
def test_bad_collector_keys_name_the_key(settings, problem):
    # The queue's reference to the extension that did not load is a problem of its own.
    assert problems_of(COLLECTOR_KEYS.format(settings=settings)) == [
        problem, 'exporters::otlp/down::sending_queue::storage: references extension "file_storage", which is not '
                 "configured under extensions"]
